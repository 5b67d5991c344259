// Package stir rewrites a query's neighbour list with pairwise scores, with the semantics
// of OML's PairwiseReranker (method.md §4): the first topN candidates are reordered by their
// STIR scores, which become their distances, rescaled when needed so the list stays sorted
// and keeps its length; the tail is untouched.
package stir

import (
	"fmt"
	"math"
	"sort"
)

// Eps is subtracted after rescaling the head so that it ends strictly below the tail:
// 1000 × float32 machine epsilon, as OML.
const Eps = float32(1000 * 1.1920929e-07)

// List is one query's neighbours, ascending by distance.
type List struct {
	IDs       []string
	Labels    []int64
	Distances []float32
}

// Result is a reranked list and the raw pair scores of its head, in the head's new order.
type Result struct {
	List
	Scores []float32
}

// Head returns how many candidates of a list of length n are rescored: min(topN, n).
func Head(n, topN int) int { return min(n, topN) }

// Apply reranks l with scores, the pairwise scores of its first Head(len, topN) candidates
// in their current order. Equal scores keep their current order (a stable sort), so the
// embedding distance breaks ties. The input is not modified.
func Apply(l List, scores []float32, topN int) (Result, error) {
	n := len(l.IDs)
	if len(l.Distances) != n || (l.Labels != nil && len(l.Labels) != n) {
		return Result{}, fmt.Errorf("rerank: list has %d ids, %d labels and %d distances", n, len(l.Labels), len(l.Distances))
	}
	if topN < 1 {
		return Result{}, fmt.Errorf("rerank: top_n must be ≥ 1, got %d", topN)
	}
	h := Head(n, topN)
	if len(scores) != h {
		return Result{}, fmt.Errorf("rerank: %d scores for a head of %d candidates", len(scores), h)
	}
	for i, s := range scores {
		if math.IsNaN(float64(s)) || math.IsInf(float64(s), 0) {
			return Result{}, fmt.Errorf("rerank: score %d (candidate %s) is %v", i, l.IDs[i], s)
		}
	}
	order := make([]int, h)
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return scores[order[a]] < scores[order[b]] })

	out := Result{List: List{IDs: make([]string, n), Distances: make([]float32, n)}, Scores: make([]float32, h)}
	if l.Labels != nil {
		out.Labels = make([]int64, n)
	}
	for i, j := range order {
		out.IDs[i] = l.IDs[j]
		out.Scores[i] = scores[j]
		out.Distances[i] = scores[j]
		if l.Labels != nil {
			out.Labels[i] = l.Labels[j]
		}
	}
	copy(out.IDs[h:], l.IDs[h:])
	copy(out.Distances[h:], l.Distances[h:])
	if l.Labels != nil {
		copy(out.Labels[h:], l.Labels[h:])
	}
	// Keep the head below the tail: scale it so its last value meets the first tail
	// distance, then step down by Eps (float32 arithmetic, as OML's torch code).
	if h < n && h > 0 && out.Distances[h-1] > l.Distances[h] {
		f := l.Distances[h] / out.Distances[h-1]
		for i := range h {
			out.Distances[i] = out.Distances[i]*f - Eps
		}
	}
	return out, nil
}
