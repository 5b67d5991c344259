package knn

import (
	"fmt"
	"math"
	"sort"
)

// Unusable says why a vector cannot be searched, or "" when it can: "non_finite",
// "zero_vector", or "not_unit_length" when normalized asks for unit vectors (within
// NormTolerance).
func Unusable(v []float32, normalized bool) string {
	var sq float64
	for _, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return "non_finite"
		}
		sq += float64(x) * float64(x)
	}
	switch {
	case sq == 0:
		return "zero_vector"
	case normalized && math.Abs(math.Sqrt(sq)-1) > NormTolerance:
		return "not_unit_length"
	}
	return ""
}

// SortByID puts the gallery's rows in item id order, as NewIndex requires. The vectors are
// permuted in place, cycle by cycle, with one row of scratch, so a shard's vectors are
// held once.
func (g *Gallery) SortByID() {
	n := len(g.IDs)
	order := make([]int, n) // order[i] is the row that goes to position i
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return g.IDs[order[a]] < g.IDs[order[b]] })
	ids := make([]string, n)
	for i, j := range order {
		ids[i] = g.IDs[j]
	}
	g.IDs = ids
	if g.Labels != nil {
		labels := make([]int64, n)
		for i, j := range order {
			labels[i] = g.Labels[j]
		}
		g.Labels = labels
	}
	if g.Sequences != nil {
		seqs := make([]string, n)
		for i, j := range order {
			seqs[i] = g.Sequences[j]
		}
		g.Sequences = seqs
	}
	d := g.Dim
	row := func(i int) []float32 { return g.Vectors[i*d : (i+1)*d] }
	tmp := make([]float32, d)
	for start := range order {
		if order[start] == start {
			continue
		}
		copy(tmp, row(start))
		i := start
		for order[i] != start {
			j := order[i]
			copy(row(i), row(j))
			order[i] = i
			i = j
		}
		copy(row(i), tmp)
		order[i] = i
	}
}

// Relevance counts, for any query, the gallery rows relevant to it: those of its label,
// less the rows that the search's exclusions remove (method.md §3), so that the count
// agrees with the lists. A gallery cut into shards sums the counts of its shards.
type Relevance struct {
	opts     Options
	perLabel map[int64]int64  // rows per label
	perSeq   map[string]int64 // rows per (label, sequence)
	ids      map[string]bool  // the rows' item ids
}

// NewRelevance counts the rows of a gallery, which must carry labels.
func NewRelevance(g Gallery, opts Options) *Relevance {
	r := &Relevance{opts: opts, perLabel: map[int64]int64{}, perSeq: map[string]int64{}, ids: make(map[string]bool, len(g.IDs))}
	for i, id := range g.IDs {
		r.perLabel[g.Labels[i]]++
		if g.Sequences != nil && g.Sequences[i] != "" {
			r.perSeq[seqKey(g.Labels[i], g.Sequences[i])]++
		}
		r.ids[id] = true
	}
	return r
}

// Count returns the number of gallery rows relevant to the query with this id, label and
// sequence ("" = none): same label, not itself (ExcludeSelf), not of its sequence
// (ExcludeSameSequence; the query itself is of its sequence).
func (r *Relevance) Count(id string, label int64, sequence string) int64 {
	n := r.perLabel[label]
	if r.opts.ExcludeSameSequence && sequence != "" {
		return n - r.perSeq[seqKey(label, sequence)]
	}
	if r.opts.ExcludeSelf && r.ids[id] {
		n--
	}
	return n
}

func seqKey(label int64, seq string) string { return fmt.Sprintf("%d\x00%s", label, seq) }
