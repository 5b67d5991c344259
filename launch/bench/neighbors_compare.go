package main

// Comparing the engine's lists with FAISS's: ties within float32 rounding, and a float64 check of the rest.

import (
	"fmt"
	"math"
	"slices"

	"github.com/stirpipe/stirpipe/models/knn"
)

// idCompare compares the engine's lists with FAISS's, query by query.
type idCompare struct {
	Queries int `json:"queries"`
	K       int `json:"k"`
	// Identical lists; SameSet: the same ids in another order; Different: other ids.
	Identical int `json:"identical"`
	SameSet   int `json:"same_set_other_order"`
	Different int `json:"different_set"`
	// Swaps counts the positions where same-set lists differ; SwapsTied those whose two exact
	// distances round to the same float32 (the engine then orders by id), SwapsULP those
	// whose exact gap is within one float32 ulp of the distance, SwapsBound those within
	// FAISS's float32 error bound.
	Swaps      int     `json:"swapped_positions"`
	SwapsTied  int     `json:"swaps_equal_in_float32"`
	SwapsULP   int     `json:"swaps_within_1ulp"`
	SwapsBound int     `json:"swaps_within_faiss_bound"`
	MaxSwapGap float64 `json:"max_swap_gap"`
	// OnlyFAISS counts ids FAISS lists and the engine does not (as many the other way);
	// their gap is |exact d − the engine's exact K-th distance|.
	OnlyFAISS int     `json:"ids_only_in_faiss"`
	SetULP    int     `json:"set_diffs_within_1ulp"`
	SetBound  int     `json:"set_diffs_within_faiss_bound"`
	MaxSetGap float64 `json:"max_set_gap"`
	// EngineMissed counts FAISS-only ids whose exact distance, rounded to float32, is
	// below the engine's K-th: rows the engine should have listed (0 when it is exact).
	EngineMissed int `json:"engine_missed"`
	// Bound is the float32 error bound of one FAISS distance (D·2⁻²⁴·(|q||g| = 1) in the
	// inner product, divided by the distance at the K-th place, the largest there).
	Bound float64 `json:"faiss_float32_bound"`
	// Examples show a few differing queries.
	Examples []string `json:"examples,omitempty"`
	// Exact: a float64 brute force, ordered by (float32 distance, row), on the first
	// ExactChecked differing queries; ExactMatches of them equal the engine's lists.
	ExactChecked int `json:"exact_checked"`
	ExactMatches int `json:"exact_matches"`
	// differing are the rows whose lists differ, for exactCheck.
	differing []int
}

// allNearTies reports whether every difference is within FAISS's float32 rounding.
func (c *idCompare) allNearTies() bool {
	return c.SwapsBound == c.Swaps && c.SetBound == c.OnlyFAISS
}

// exactDist is the Euclidean distance of rows a and b of x in float64.
func exactDist(x []float32, dim, a, b int) float64 {
	p, q := x[a*dim:(a+1)*dim], x[b*dim:(b+1)*dim]
	var s float64
	for i := range p {
		d := float64(p[i]) - float64(q[i])
		s += d * d
	}
	return math.Sqrt(s)
}

// ulp32 is the spacing of float32 values at v.
func ulp32(v float64) float64 {
	f := float32(v)
	return float64(math.Nextafter32(f, float32(math.Inf(1))) - f)
}

// compareWithFAISS classifies every query's list against FAISS's (rows of x as ids).
func compareWithFAISS(x []float32, dim int, engine [][]knn.Neighbor, faiss [][]int, k int) idCompare {
	c := idCompare{Queries: len(engine), K: k}
	eps32 := math.Ldexp(1, -24)
	for q, list := range engine {
		e := make([]int, len(list))
		for j, nb := range list {
			e[j] = nb.Index
		}
		f := faiss[q]
		if slices.Equal(e, f) {
			c.Identical++
			continue
		}
		c.differing = append(c.differing, q)
		if len(c.Examples) < 3 {
			j := 0
			for j < len(e) && j < len(f) && e[j] == f[j] {
				j++
			}
			hi := min(j+3, len(e), len(f))
			c.Examples = append(c.Examples, fmt.Sprintf("query %d from position %d: FAISS %v, engine %v", q, j, f[j:hi], e[j:hi]))
		}
		dK := exactDist(x, dim, q, e[len(e)-1])
		bound := float64(dim) * eps32 / dK // one float32 dot product's error, in distance
		c.Bound = max(c.Bound, bound)
		se, sf := slices.Clone(e), slices.Clone(f)
		slices.Sort(se)
		slices.Sort(sf)
		if slices.Equal(se, sf) {
			c.SameSet++
			for j := range e {
				if e[j] == f[j] {
					continue
				}
				de, df := exactDist(x, dim, q, e[j]), exactDist(x, dim, q, f[j])
				gap := math.Abs(de - df)
				c.Swaps++
				c.MaxSwapGap = max(c.MaxSwapGap, gap)
				if float32(de) == float32(df) {
					c.SwapsTied++
				}
				if gap <= ulp32(max(de, df)) {
					c.SwapsULP++
				}
				if gap <= bound {
					c.SwapsBound++
				}
			}
			continue
		}
		c.Different++
		inEngine := make(map[int]bool, len(e))
		for _, r := range e {
			inEngine[r] = true
		}
		for _, r := range f {
			if inEngine[r] {
				continue
			}
			d := exactDist(x, dim, q, r)
			gap := math.Abs(d - dK)
			c.OnlyFAISS++
			c.MaxSetGap = max(c.MaxSetGap, gap)
			if float32(d) < float32(dK) {
				c.EngineMissed++ // a strictly nearer row at the engine's own precision
			}
			if gap <= ulp32(max(d, dK)) {
				c.SetULP++
			}
			if gap <= bound {
				c.SetBound++
			}
		}
	}
	return c
}

// exactCheck recomputes up to n of the differing queries by a float64 brute force over
// every row, ordered by (float32 distance, row) as the engine promises, and counts those
// equal to the engine's lists.
func (c *idCompare) exactCheck(x []float32, dim int, engine [][]knn.Neighbor, n int) {
	type cand struct {
		d   float32
		row int
	}
	rows := len(x) / dim
	all := make([]cand, 0, rows)
	for _, q := range c.differing[:min(n, len(c.differing))] {
		all = all[:0]
		for r := range rows {
			if r != q {
				all = append(all, cand{float32(exactDist(x, dim, q, r)), r})
			}
		}
		k := len(engine[q])
		slices.SortFunc(all, func(a, b cand) int {
			if a.d != b.d {
				if a.d < b.d {
					return -1
				}
				return 1
			}
			return a.row - b.row
		})
		ok := k == min(c.K, len(all))
		for j, nb := range engine[q] {
			if !ok || all[j].row != nb.Index || all[j].d != nb.Dist {
				ok = false
				break
			}
		}
		c.ExactChecked++
		if ok {
			c.ExactMatches++
		}
	}
}
