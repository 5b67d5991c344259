package metrics

import (
	"fmt"
	"math"
	"math/bits"
)

// Sum is an exact fixed-point sum of values in [0, 1]: Units + Frac·2⁻⁶⁴. Each value is
// truncated to a multiple of 2⁻⁶⁴ (an error below 5.5e-20 per value) and then added as
// an integer, so sums are associative and commutative: a merge in any order gives the
// same bits. It holds up to 2⁶⁴ values.
type Sum struct {
	// Units is the integer part.
	Units uint64 `json:"units"`
	// Frac is the fractional part in units of 2⁻⁶⁴.
	Frac uint64 `json:"frac"`
}

// Add adds v, clamped to [0, 1] (NaN adds nothing).
func (s *Sum) Add(v float64) {
	switch {
	case !(v > 0):
		return
	case v >= 1:
		s.Units++
		return
	}
	// v·2⁶⁴ is exact in float64 and below 2⁶⁴; the conversion truncates.
	s.Merge(Sum{Frac: uint64(math.Ldexp(v, 64))})
}

// Merge adds o to s.
func (s *Sum) Merge(o Sum) {
	var carry uint64
	s.Frac, carry = bits.Add64(s.Frac, o.Frac, 0)
	s.Units += o.Units + carry
}

// Float64 returns the sum, rounded to float64.
func (s Sum) Float64() float64 {
	return float64(s.Units) + math.Ldexp(float64(s.Frac), -64)
}

// Counts counts queries by the edge cases of method.md §5.
type Counts struct {
	// Queries counts every query; cmc and map means divide by it.
	Queries int64 `json:"queries"`
	// EmptyList counts queries with nothing retrieved (L = 0), whatever n.
	EmptyList int64 `json:"empty_list"`
	// NoRelevant counts queries with no relevant gallery item (n = 0), whatever L.
	NoRelevant int64 `json:"no_relevant"`
	// EmptyNoRelevant counts queries with L = 0 and n = 0; OML scores them 1.0 on every
	// metric and so does this package (they are included in every mean).
	EmptyNoRelevant int64 `json:"empty_no_relevant"`
	// UndefinedPrecision counts queries with L > 0 and n = 0: their precision is 0/0 and
	// they are left out of the precision means (OML's mean would be NaN).
	UndefinedPrecision int64 `json:"undefined_precision"`
	// ShortList counts queries whose list is shorter than the largest cutoff (empty lists
	// included); their metrics use k' = min(k, L).
	ShortList int64 `json:"short_list"`
}

// PrecisionQueries returns the number of queries in the precision means.
func (c Counts) PrecisionQueries() int64 { return c.Queries - c.UndefinedPrecision }

func (c *Counts) merge(o Counts) {
	c.Queries += o.Queries
	c.EmptyList += o.EmptyList
	c.NoRelevant += o.NoRelevant
	c.EmptyNoRelevant += o.EmptyNoRelevant
	c.UndefinedPrecision += o.UndefinedPrecision
	c.ShortList += o.ShortList
}

// Tally holds the counts and per-cutoff sums of one scope (OVERALL or a category).
type Tally struct {
	// Counts counts the queries of the scope.
	Counts Counts `json:"counts"`
	// CMC, Precision and MAP hold one Sum per cutoff of the accumulator's Options.
	CMC       []Sum `json:"cmc"`
	Precision []Sum `json:"precision"`
	MAP       []Sum `json:"map"`
}

func newTally(o Options) Tally {
	return Tally{
		CMC:       make([]Sum, len(o.CMC)),
		Precision: make([]Sum, len(o.Precision)),
		MAP:       make([]Sum, len(o.MAP)),
	}
}

func (t *Tally) add(c Case, short bool, cmc, prec, mAP []float64) {
	t.Counts.Queries++
	switch c {
	case CaseEmptyNoRelevant:
		t.Counts.EmptyList++
		t.Counts.NoRelevant++
		t.Counts.EmptyNoRelevant++
	case CaseEmptyWithRelevant:
		t.Counts.EmptyList++
	case CaseNoRelevant:
		t.Counts.NoRelevant++
		t.Counts.UndefinedPrecision++
	}
	if short {
		t.Counts.ShortList++
	}
	for i, v := range cmc {
		t.CMC[i].Add(v)
	}
	if c != CaseNoRelevant {
		for i, v := range prec {
			t.Precision[i].Add(v)
		}
	}
	for i, v := range mAP {
		t.MAP[i].Add(v)
	}
}

func (t *Tally) merge(o Tally) {
	t.Counts.merge(o.Counts)
	for i := range t.CMC {
		t.CMC[i].Merge(o.CMC[i])
	}
	for i := range t.Precision {
		t.Precision[i].Merge(o.Precision[i])
	}
	for i := range t.MAP {
		t.MAP[i].Merge(o.MAP[i])
	}
}

// shapeOK reports whether t has one Sum per cutoff of o.
func (t Tally) shapeOK(o Options) bool {
	return len(t.CMC) == len(o.CMC) && len(t.Precision) == len(o.Precision) && len(t.MAP) == len(o.MAP)
}

// scope turns sums into means.
func (t Tally) scope(o Options) Scope {
	s := Scope{Counts: t.Counts, Metrics: map[string]float64{}}
	mean := func(m Metric, sums []Sum, n int64) {
		if n == 0 {
			return // undefined: left out of the map
		}
		for i, k := range o.Ks(m) {
			s.Metrics[Key(m, k)] = sums[i].Float64() / float64(n)
		}
	}
	mean(MetricCMC, t.CMC, t.Counts.Queries)
	mean(MetricPrecision, t.Precision, t.Counts.PrecisionQueries())
	mean(MetricMAP, t.MAP, t.Counts.Queries)
	return s
}

// Accumulator sums per-query metrics per category and overall. It is mergeable (a Beam
// CombineFn's accumulator: CreateAccumulator = NewAccumulator, AddInput = Add,
// MergeAccumulators = Merge, ExtractOutput = Report), has only exported plain fields so
// JSON and Beam's schema coder carry it, and its result does not depend on the order of
// Add and Merge calls (the sums are exact integers, see Sum).
type Accumulator struct {
	// KS holds the cutoffs; every Tally has one Sum per cutoff.
	KS Options `json:"ks"`
	// Overall sums every query.
	Overall Tally `json:"overall"`
	// Categories sums the queries of each non-empty category.
	Categories map[string]Tally `json:"categories,omitempty"`
}

// NewAccumulator returns an empty accumulator for the cutoffs o.
func NewAccumulator(o Options) (*Accumulator, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o = Options{CMC: clone(o.CMC), Precision: clone(o.Precision), MAP: clone(o.MAP)}
	return &Accumulator{KS: o, Overall: newTally(o)}, nil
}

func clone(ks []int) []int { return append([]int{}, ks...) }

// maxStack is the number of cutoffs Add evaluates without allocating.
const maxStack = 48

// Add evaluates q and adds it to OVERALL and to its category. An invalid query leaves
// the accumulator unchanged.
func (a *Accumulator) Add(q Query) error {
	if err := q.check(); err != nil {
		return err
	}
	if err := a.KS.Validate(); err != nil {
		return fmt.Errorf("metrics: accumulator: %w", err)
	}
	if !a.Overall.shapeOK(a.KS) {
		return fmt.Errorf("metrics: accumulator holds sums for %d/%d/%d cutoffs, want %d/%d/%d (%+v): build it with NewAccumulator",
			len(a.Overall.CMC), len(a.Overall.Precision), len(a.Overall.MAP), len(a.KS.CMC), len(a.KS.Precision), len(a.KS.MAP), a.KS)
	}
	nc, np, nm := len(a.KS.CMC), len(a.KS.Precision), len(a.KS.MAP)
	var stack [maxStack]float64
	buf := stack[:]
	if nc+np+nm > maxStack {
		buf = make([]float64, nc+np+nm)
	}
	cmc, prec, mAP := buf[:nc], buf[nc:nc+np], buf[nc+np:nc+np+nm]
	c := a.KS.eval(q.Relevant, q.NRelevant, cmc, prec, mAP)
	return a.add(q.Category, c, len(q.Relevant) < a.KS.MaxK(), cmc, prec, mAP)
}

// add adds one evaluated query.
func (a *Accumulator) add(category string, c Case, short bool, cmc, prec, mAP []float64) error {
	var t Tally
	if category != "" {
		var ok bool
		if t, ok = a.Categories[category]; !ok {
			t = newTally(a.KS)
		} else if !t.shapeOK(a.KS) {
			return fmt.Errorf("metrics: category %q holds sums that do not match the cutoffs %+v: build the accumulator with NewAccumulator", category, a.KS)
		}
	}
	a.Overall.add(c, short, cmc, prec, mAP)
	if category != "" {
		t.add(c, short, cmc, prec, mAP)
		if a.Categories == nil {
			a.Categories = map[string]Tally{}
		}
		a.Categories[category] = t
	}
	return nil
}

// Merge adds b's sums to a; b is not changed.
func (a *Accumulator) Merge(b *Accumulator) error {
	if !a.KS.equal(b.KS) {
		return fmt.Errorf("metrics: cannot merge accumulators with different cutoffs %+v and %+v", a.KS, b.KS)
	}
	if !a.Overall.shapeOK(a.KS) || !b.Overall.shapeOK(b.KS) {
		return fmt.Errorf("metrics: cannot merge accumulators whose sums do not match their cutoffs %+v: build them with NewAccumulator", a.KS)
	}
	for _, acc := range []*Accumulator{a, b} {
		for name, t := range acc.Categories {
			if !t.shapeOK(acc.KS) {
				return fmt.Errorf("metrics: cannot merge: category %q holds sums that do not match the cutoffs %+v", name, acc.KS)
			}
		}
	}
	a.Overall.merge(b.Overall)
	for name, bt := range b.Categories {
		if a.Categories == nil {
			a.Categories = map[string]Tally{}
		}
		t, ok := a.Categories[name]
		if !ok {
			t = newTally(a.KS)
		}
		t.merge(bt)
		a.Categories[name] = t
	}
	return nil
}

// Report returns the means of every metric per category and overall.
func (a *Accumulator) Report() Report {
	o := Options{CMC: clone(a.KS.CMC), Precision: clone(a.KS.Precision), MAP: clone(a.KS.MAP)}
	r := Report{KS: o, Overall: a.Overall.scope(o)}
	if len(a.Categories) > 0 {
		r.Categories = make(map[string]Scope, len(a.Categories))
		for name, t := range a.Categories {
			r.Categories[name] = t.scope(o)
		}
	}
	return r
}

// Compute evaluates every query and returns the per-query values and their Report.
func Compute(queries []Query, o Options) ([]QueryResult, Report, error) {
	acc, err := NewAccumulator(o)
	if err != nil {
		return nil, Report{}, err
	}
	results := make([]QueryResult, len(queries))
	maxK := acc.KS.MaxK()
	for i, q := range queries {
		r, err := acc.KS.Evaluate(q)
		if err != nil {
			return nil, Report{}, fmt.Errorf("query %d: %w", i, err)
		}
		results[i] = r
		if err := acc.add(q.Category, r.Case, r.Retrieved < maxK, r.CMC, r.Precision, r.MAP); err != nil {
			return nil, Report{}, fmt.Errorf("query %d: %w", i, err)
		}
	}
	return results, acc.Report(), nil
}
