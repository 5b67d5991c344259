package knn

import (
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
)

// TestSortByID: the in-place permutation puts every row, vector included, in id order.
func TestSortByID(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{0, 1, 2, 7, 100} {
		const d = 3
		var g Gallery
		g.Dim = d
		for _, i := range rng.Perm(n) {
			g.IDs = append(g.IDs, fmt.Sprintf("id-%03d", i))
			g.Labels = append(g.Labels, int64(i))
			g.Sequences = append(g.Sequences, fmt.Sprint("s", i))
			g.Vectors = append(g.Vectors, float32(i), float32(-i), float32(i)/2)
		}
		g.SortByID()
		for i := range n {
			want := []float32{float32(i), float32(-i), float32(i) / 2}
			if g.IDs[i] != fmt.Sprintf("id-%03d", i) || g.Labels[i] != int64(i) || g.Sequences[i] != fmt.Sprint("s", i) ||
				!reflect.DeepEqual(g.Vectors[i*d:(i+1)*d], want) {
				t.Fatalf("n=%d row %d: %s %d %s %v, want id-%03d with %v", n, i, g.IDs[i], g.Labels[i], g.Sequences[i], g.Vectors[i*d:(i+1)*d], i, want)
			}
		}
	}
}

// TestUnusable: the vectors a search refuses, and why.
func TestUnusable(t *testing.T) {
	for _, c := range []struct {
		v          []float32
		normalized bool
		want       string
	}{
		{[]float32{0.6, 0.8}, true, ""},
		{[]float32{3, 4}, false, ""},
		{[]float32{3, 4}, true, "not_unit_length"},
		{[]float32{0.6, 0.8 + 2e-3}, true, "not_unit_length"},
		{[]float32{0, 0}, false, "zero_vector"},
		{[]float32{float32(math.NaN()), 1}, false, "non_finite"},
		{[]float32{1, float32(math.Inf(-1))}, true, "non_finite"},
	} {
		if got := Unusable(c.v, c.normalized); got != c.want {
			t.Errorf("Unusable(%v, %v) = %q, want %q", c.v, c.normalized, got, c.want)
		}
	}
}

// TestRelevanceAgreesWithSearch: the relevant count of every query equals the number of
// same-label rows the search could return (k = the whole gallery), with and without the
// exclusions, in one shard and summed over two.
func TestRelevanceAgreesWithSearch(t *testing.T) {
	const n, d = 60, 4
	rng := rand.New(rand.NewPCG(9, 9))
	var g Gallery
	g.Dim = d
	for i := range n {
		g.IDs = append(g.IDs, fmt.Sprintf("g%03d", i))
		g.Labels = append(g.Labels, int64(i%7))
		g.Sequences = append(g.Sequences, []string{"", "a", "b"}[i%3])
		for range d {
			g.Vectors = append(g.Vectors, float32(rng.NormFloat64()))
		}
	}
	q := Query{Dim: d, IDs: g.IDs, Sequences: g.Sequences, Vectors: g.Vectors}
	half := func(lo, hi int) Gallery {
		return Gallery{Dim: d, IDs: g.IDs[lo:hi], Labels: g.Labels[lo:hi], Sequences: g.Sequences[lo:hi], Vectors: g.Vectors[lo*d : hi*d]}
	}
	for _, opts := range []Options{{K: n}, {K: n, ExcludeSelf: true}, {K: n, ExcludeSelf: true, ExcludeSameSequence: true}} {
		opts.Threads = 1
		e, err := NewEngine(opts)
		if err != nil {
			t.Fatal(err)
		}
		ix, err := NewIndex(g)
		if err != nil {
			t.Fatal(err)
		}
		lists, err := e.SearchIndex(q, ix)
		e.Close()
		if err != nil {
			t.Fatal(err)
		}
		one := NewRelevance(g, opts)
		a, b := NewRelevance(half(0, 25), opts), NewRelevance(half(25, n), opts)
		for i, list := range lists {
			var want int64
			for _, nb := range list {
				if g.Labels[nb.Index] == g.Labels[i] {
					want++
				}
			}
			id, label, seq := q.IDs[i], g.Labels[i], q.Sequences[i]
			if got := one.Count(id, label, seq); got != want {
				t.Fatalf("%+v, query %s: relevant %d, the search returns %d of its label", opts, id, got, want)
			}
			if got := a.Count(id, label, seq) + b.Count(id, label, seq); got != want {
				t.Fatalf("%+v, query %s: relevant over two shards %d, want %d", opts, id, got, want)
			}
		}
	}
}
