// Package metrics computes the retrieval metrics of the evaluation stage — cmc@k,
// precision@k and map@k — with the semantics of OML's oml/functional/metrics.py
// (method.md §5), averaged per query category and over all queries ("OVERALL").
//
// The input is one Query per query image: the relevance of its retrieved list (after the
// exclusions of method.md §3) and the number of relevant gallery items over the whole
// gallery. Evaluate gives one query's values; an Accumulator sums them in a form that is
// mergeable (a Beam CombineFn carries it), exact and independent of merge order, and its
// Report holds the means. Document is the metrics.json file; WriteTable prints a Report
// for people.
//
// Edge cases (L = retrieved length, n = relevant gallery items, k' = min(k, L)):
//
//	L = 0, n = 0  every metric 1.0, as OML; counted in Counts.EmptyNoRelevant
//	L = 0, n > 0  every metric 0.0, as OML; counted in Counts.EmptyList
//	L > 0, n = 0  cmc 0, map 0; precision is 0/0 (OML: NaN): the query is left out of
//	              the precision means only and counted in Counts.UndefinedPrecision
//	0 < L < k     computed with k' = L, as OML; counted in Counts.ShortList
//
// Where no query has an undefined precision every mean equals OML's; otherwise OML's
// precision mean is NaN and ours is the mean over the queries where it is defined.
// OML computes per-query values in float32; this package uses float64, so values agree
// with OML's to about 1e-7.
package metrics

import (
	"errors"
	"fmt"
	"math"
)

// Metric names a retrieval metric.
type Metric string

// The metrics of method.md §5.
const (
	// MetricCMC is cmc@k: 1 if one of the first k' retrieved items is relevant.
	MetricCMC Metric = "cmc"
	// MetricPrecision is OML's precision@k: hits in the first k' over min(n, k').
	MetricPrecision Metric = "precision"
	// MetricMAP is map@k: the mean, over the hits in the first k', of the precision at
	// each hit's rank.
	MetricMAP Metric = "map"
)

// Metrics lists the metrics in report order.
var Metrics = []Metric{MetricCMC, MetricPrecision, MetricMAP}

// Key names metric m at cutoff k in reports and metrics.json, e.g. "cmc@1".
func Key(m Metric, k int) string { return fmt.Sprintf("%s@%d", m, k) }

// Options holds the cutoffs k of each metric. Each list is strictly increasing and holds
// positive numbers; an empty list skips that metric (as an empty tuple does in OML), but
// at least one cutoff must be given.
type Options struct {
	// CMC holds the cutoffs of cmc@k.
	CMC []int `json:"cmc"`
	// Precision holds the cutoffs of precision@k.
	Precision []int `json:"precision"`
	// MAP holds the cutoffs of map@k.
	MAP []int `json:"map"`
}

// Ks returns the cutoffs of metric m (nil for an unknown metric).
func (o Options) Ks(m Metric) []int {
	switch m {
	case MetricCMC:
		return o.CMC
	case MetricPrecision:
		return o.Precision
	case MetricMAP:
		return o.MAP
	}
	return nil
}

// MaxK returns the largest cutoff: the retrieved lists should be at least this long
// (OML retrieves max(all ks) items; shorter lists are counted in Counts.ShortList).
func (o Options) MaxK() int {
	m := 0
	for _, ks := range [][]int{o.CMC, o.Precision, o.MAP} {
		if len(ks) > 0 && ks[len(ks)-1] > m {
			m = ks[len(ks)-1]
		}
	}
	return m
}

// Validate reports every problem with the cutoffs at once.
func (o Options) Validate() error {
	var errs []error
	total := 0
	for _, m := range Metrics {
		ks := o.Ks(m)
		total += len(ks)
		for i, k := range ks {
			if k < 1 {
				errs = append(errs, fmt.Errorf("metrics: %s cutoff %d at position %d: want k >= 1", m, k, i))
			} else if i > 0 && k <= ks[i-1] {
				errs = append(errs, fmt.Errorf("metrics: %s cutoffs %v: want strictly increasing (position %d)", m, ks, i))
			}
		}
	}
	if total == 0 {
		errs = append(errs, errors.New("metrics: no cutoffs: give at least one k for cmc, precision or map"))
	}
	return errors.Join(errs...)
}

// equal reports whether o and p hold the same cutoffs.
func (o Options) equal(p Options) bool {
	for _, m := range Metrics {
		a, b := o.Ks(m), p.Ks(m)
		if len(a) != len(b) {
			return false
		}
		for i := range a {
			if a[i] != b[i] {
				return false
			}
		}
	}
	return true
}

// Query is one query's retrieval outcome, the input of every metric.
type Query struct {
	// ID identifies the query in per-query outputs and errors.
	ID string
	// Label is the query's class label.
	Label int64
	// Category is the query's category; "" counts in OVERALL only.
	Category string
	// Relevant[i] tells whether the (i+1)-th retrieved gallery item has the query's label,
	// in ascending distance order, after the exclusions of method.md §3.
	Relevant []bool
	// NRelevant is n: the relevant gallery items over the WHOLE gallery after the same
	// exclusions, not only those retrieved. It is at least the number of true Relevant.
	NRelevant int
}

// Case classifies a query by its list length L and its relevant count n.
type Case uint8

// The cases of method.md §5.
const (
	// CaseRegular: L > 0 and n > 0.
	CaseRegular Case = iota
	// CaseEmptyNoRelevant: L = 0 and n = 0; every metric is 1.
	CaseEmptyNoRelevant
	// CaseEmptyWithRelevant: L = 0 and n > 0; every metric is 0.
	CaseEmptyWithRelevant
	// CaseNoRelevant: L > 0 and n = 0; cmc and map are 0, precision is undefined.
	CaseNoRelevant
)

// String names the case.
func (c Case) String() string {
	switch c {
	case CaseRegular:
		return "regular"
	case CaseEmptyNoRelevant:
		return "empty_no_relevant"
	case CaseEmptyWithRelevant:
		return "empty_with_relevant"
	case CaseNoRelevant:
		return "no_relevant"
	}
	return fmt.Sprintf("Case(%d)", uint8(c))
}

// QueryResult holds one query's metric values.
type QueryResult struct {
	// ID, Label and Category are copied from the Query.
	ID       string
	Label    int64
	Category string
	// Retrieved is L, the length of the retrieved list.
	Retrieved int
	// NRelevant is n.
	NRelevant int
	// Case is the edge case the query falls in.
	Case Case
	// CMC, Precision and MAP hold the values at the cutoffs of Options, in the same order.
	// Precision is NaN where it is undefined (CaseNoRelevant).
	CMC, Precision, MAP []float64
}

// Evaluate computes the metrics of one query at every cutoff of o.
func (o Options) Evaluate(q Query) (QueryResult, error) {
	if err := o.Validate(); err != nil {
		return QueryResult{}, err
	}
	if err := q.check(); err != nil {
		return QueryResult{}, err
	}
	r := QueryResult{
		ID: q.ID, Label: q.Label, Category: q.Category,
		Retrieved: len(q.Relevant), NRelevant: q.NRelevant,
		CMC:       make([]float64, len(o.CMC)),
		Precision: make([]float64, len(o.Precision)),
		MAP:       make([]float64, len(o.MAP)),
	}
	r.Case = o.eval(q.Relevant, q.NRelevant, r.CMC, r.Precision, r.MAP)
	return r, nil
}

// check validates a query's own consistency.
func (q Query) check() error {
	if q.NRelevant < 0 {
		return fmt.Errorf("metrics: query %q: NRelevant = %d, want >= 0", q.ID, q.NRelevant)
	}
	hits := 0
	for _, g := range q.Relevant {
		if g {
			hits++
		}
	}
	if hits > q.NRelevant {
		return fmt.Errorf("metrics: query %q: %d relevant items among the %d retrieved but NRelevant = %d; "+
			"NRelevant must count every relevant gallery item after exclusions", q.ID, hits, len(q.Relevant), q.NRelevant)
	}
	return nil
}

// eval writes the values at o's cutoffs into cmc, prec and mAP (lengths as in o) in one
// pass over the first min(MaxK, L) items. o must be valid and q checked.
func (o Options) eval(rel []bool, n int, cmc, prec, mAP []float64) Case {
	l := len(rel)
	if l == 0 {
		v, c := 0.0, CaseEmptyWithRelevant
		if n == 0 {
			v, c = 1, CaseEmptyNoRelevant
		}
		fill(cmc, v)
		fill(prec, v)
		fill(mAP, v)
		return c
	}
	if n == 0 {
		// No relevant item exists, so none is retrieved: cmc 0, map 0 (OML divides a zero
		// sum by +inf), precision 0/min(0, k') is undefined.
		fill(cmc, 0)
		fill(prec, math.NaN())
		fill(mAP, 0)
		return CaseNoRelevant
	}
	last := min(o.MaxK(), l)
	var ic, ip, im int // next cutoff of each metric
	hits := 0          // hits in the first i items
	ap := 0.0          // Σ_{j≤i, g_j} hits(j)/j
	for i := 1; i <= last; i++ {
		if rel[i-1] {
			hits++
			ap += float64(hits) / float64(i)
		}
		// A cutoff k is reached at i = k' = min(k, L).
		for ic < len(o.CMC) && min(o.CMC[ic], l) == i {
			cmc[ic] = b2f(hits > 0)
			ic++
		}
		for ip < len(o.Precision) && min(o.Precision[ip], l) == i {
			prec[ip] = float64(hits) / float64(min(n, i))
			ip++
		}
		for im < len(o.MAP) && min(o.MAP[im], l) == i {
			if hits > 0 {
				mAP[im] = ap / float64(hits)
			} else {
				mAP[im] = 0
			}
			im++
		}
	}
	return CaseRegular
}

func fill(xs []float64, v float64) {
	for i := range xs {
		xs[i] = v
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
