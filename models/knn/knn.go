// Package knn is the exact k-nearest-neighbour search of the retrieval stage (method.md §3):
// for every query embedding, the K gallery rows at the smallest Euclidean distance, ascending
// by (distance, gallery item id), with the query's own item and gallery rows of the query's
// sequence left out.
//
// ONNX Runtime computes inner products (graphs/scores.onnx, one Gemm: MLAS picks its
// AVX-512 kernels by itself, the CUDA provider uses cuBLAS); Go keeps the best K + 8
// candidates of each query behind a threshold test (a buffer that a quickselect cuts back
// to K + 8 when full, raising the threshold), over blocks of query rows × gallery rows
// small enough to stay in cache, each thread running its own single-threaded GEMMs.
// Exclusions are applied while selecting, so they never leave a query with fewer than K
// neighbours when more gallery rows remain. Selection uses
// d² = 2 − 2·ip for unit vectors and |q|² + |g|² − 2·ip otherwise; the kept candidates then
// get their exact distance (Σ(q−g)² in float64, rounded to float32), and a bound on the
// GEMM's rounding error proves that no other row can reach the K-th place, or else the
// query is searched again exactly. Results are therefore exact and do not depend on the
// blocking, the threads or the sharding: exact duplicates have equal distances and are
// ordered by id.
//
// A Beam transform calls it per (gallery shard, query tile): NewIndex validates a shard once,
// Engine.SearchIndex searches a tile of queries against it, Index.Results names the
// neighbours by item id, and Merge combines the lists of one query from every shard. When
// every item is both a query and a gallery item (Stanford Online Products),
// Engine.SearchSelf per shard and Engine.SearchPair per pair of shards compute each inner
// product once, half the work.
//
//	e, err := knn.NewEngine(knn.Options{K: 100, Normalized: true, ExcludeSelf: true, ExcludeSameSequence: true})
//	...
//	defer e.Close()
//	ix, err := knn.NewIndex(shard)
//	neighbours, err := e.SearchIndex(queries, ix)
package knn

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
)

// NormTolerance is how far from 1 a vector's L2 norm may be when Options.Normalized says
// the vectors are unit length.
const NormTolerance = 1e-3

// maxProblems bounds how many invalid items one validation error lists.
const maxProblems = 10

// Gallery is a shard of gallery items: row i has id IDs[i] and the vector
// Vectors[i·Dim : (i+1)·Dim]. IDs must be non-empty and strictly ascending (byte order), so
// that row order is id order and ties in distance go to the smaller row index.
type Gallery struct {
	// IDs are the item ids, strictly ascending.
	IDs []string
	// Labels are carried for Index.Results; nil or one per row. Search ignores them.
	Labels []int64
	// Sequences are the items' sequence values ("" = none); nil means none at all.
	Sequences []string
	// Vectors holds the embeddings, row-major, len(IDs)·Dim float32 values.
	Vectors []float32
	// Dim is the embedding dimension.
	Dim int
}

// Query is a tile of query items, laid out like Gallery. IDs need not be sorted.
type Query struct {
	// IDs are the query item ids, matched against gallery ids by ExcludeSelf.
	IDs []string
	// Sequences are the queries' sequence values ("" = none); nil means none at all.
	Sequences []string
	// Vectors holds the embeddings, row-major, len(IDs)·Dim float32 values.
	Vectors []float32
	// Dim is the embedding dimension; it must equal the gallery's.
	Dim int
}

// Neighbor is one gallery row found for a query.
type Neighbor struct {
	// Index is the gallery row.
	Index int
	// Dist is the Euclidean distance (not squared), computed exactly in float64 and
	// rounded to float32.
	Dist float32
}

// Result is a neighbour named by item id, for merging the lists of several shards.
type Result struct {
	// ID is the gallery item id.
	ID string
	// Label is the gallery item's label (0 when the gallery carries none).
	Label int64
	// Dist is the Euclidean distance.
	Dist float32
}

// Index is a validated gallery shard with what every search of it needs: squared norms,
// sequence codes. It keeps a reference to the gallery's slices, which must not change
// while it is in use. An Index is read-only and may serve concurrent searches.
type Index struct {
	g           Gallery
	n           int
	norm2       []float64        // |g|² per row
	maxNorm     float64          // largest |g|
	maxNorm2Dev float64          // largest ||g|² − 1|
	seq         []int32          // sequence code per row, -1 for none
	codes       map[string]int32 // sequence value → code
	// maxSeqRows is the largest number of rows sharing one non-empty sequence.
	maxSeqRows int
}

// NewIndex validates g and prepares it for search. Every problem is reported at once
// (up to a few per kind), naming the row and item id: vector length, non-finite values,
// squared norms that overflow float32, ids that are empty or not strictly ascending, and
// Labels or Sequences of the wrong length.
func NewIndex(g Gallery) (*Index, error) {
	n := len(g.IDs)
	var errs []error
	if g.Dim < 1 {
		return nil, fmt.Errorf("knn: gallery dimension must be ≥ 1, got %d", g.Dim)
	}
	if len(g.Vectors) != n*g.Dim {
		errs = append(errs, fmt.Errorf("gallery has %d ids and %d floats, want %d·%d = %d floats (dimension %d)",
			n, len(g.Vectors), n, g.Dim, n*g.Dim, g.Dim))
	}
	if g.Labels != nil && len(g.Labels) != n {
		errs = append(errs, fmt.Errorf("gallery has %d ids but %d labels", n, len(g.Labels)))
	}
	if g.Sequences != nil && len(g.Sequences) != n {
		errs = append(errs, fmt.Errorf("gallery has %d ids but %d sequences", n, len(g.Sequences)))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("knn: invalid gallery: %w", errors.Join(errs...))
	}
	var order problems
	for i, id := range g.IDs {
		switch {
		case id == "":
			order.add(fmt.Errorf("gallery row %d: empty item id", i))
		case i > 0 && id <= g.IDs[i-1]:
			order.add(fmt.Errorf("gallery row %d: item id %q is not greater than the previous row's %q: ids must be unique and sorted ascending",
				i, id, g.IDs[i-1]))
		}
	}
	norm2, vecErr := checkVectors("gallery", g.IDs, g.Vectors, g.Dim)
	if err := errors.Join(order.err(), vecErr); err != nil {
		return nil, fmt.Errorf("knn: invalid gallery: %w", err)
	}
	ix := &Index{g: g, n: n, norm2: norm2, seq: make([]int32, n), codes: map[string]int32{}}
	for _, s := range norm2 {
		ix.maxNorm = max(ix.maxNorm, math.Sqrt(s))
		ix.maxNorm2Dev = max(ix.maxNorm2Dev, math.Abs(s-1))
	}
	var counts []int
	for i := range ix.seq {
		ix.seq[i] = -1
		if g.Sequences == nil || g.Sequences[i] == "" {
			continue
		}
		c, ok := ix.codes[g.Sequences[i]]
		if !ok {
			c = int32(len(counts))
			ix.codes[g.Sequences[i]] = c
			counts = append(counts, 0)
		}
		ix.seq[i] = c
		counts[c]++
	}
	if len(counts) > 0 {
		ix.maxSeqRows = slices.Max(counts)
	}
	return ix, nil
}

// Len returns the number of gallery rows.
func (ix *Index) Len() int { return ix.n }

// Dim returns the embedding dimension.
func (ix *Index) Dim() int { return ix.g.Dim }

// Gallery returns the gallery the index was built from.
func (ix *Index) Gallery() Gallery { return ix.g }

// MaxSequenceRows returns the largest number of gallery rows that share one non-empty
// sequence value: the most rows ExcludeSameSequence can remove for one query.
func (ix *Index) MaxSequenceRows() int { return ix.maxSeqRows }

// row returns gallery vector i.
func (ix *Index) row(i int) []float32 { return ix.g.Vectors[i*ix.g.Dim : (i+1)*ix.g.Dim] }

// find returns the row of item id, or -1.
func (ix *Index) find(id string) int32 {
	i := sort.SearchStrings(ix.g.IDs, id)
	if i < ix.n && ix.g.IDs[i] == id {
		return int32(i)
	}
	return -1
}

// Results names the neighbours of one query by gallery item id and label.
func (ix *Index) Results(ns []Neighbor) []Result {
	out := make([]Result, len(ns))
	for i, nb := range ns {
		out[i] = Result{ID: ix.g.IDs[nb.Index], Dist: nb.Dist}
		if ix.g.Labels != nil {
			out[i].Label = ix.g.Labels[nb.Index]
		}
	}
	return out
}

// Merge combines the neighbour lists of one query from several gallery shards into the
// global top k, ascending by (distance, id). An id found in several lists is kept once, at
// its smallest distance. k ≤ 0 keeps everything.
func Merge(k int, lists ...[]Result) []Result {
	total := 0
	for _, l := range lists {
		total += len(l)
	}
	all := make([]Result, 0, total)
	for _, l := range lists {
		all = append(all, l...)
	}
	slices.SortFunc(all, compareResults)
	out := all[:0]
	var seen map[string]bool
	if len(lists) > 1 {
		seen = make(map[string]bool, len(all))
	}
	for _, r := range all {
		if k > 0 && len(out) == k {
			break
		}
		if seen != nil {
			if seen[r.ID] {
				continue
			}
			seen[r.ID] = true
		}
		out = append(out, r)
	}
	return slices.Clip(out)
}

// compareResults orders by distance, then id.
func compareResults(a, b Result) int {
	if c := cmp.Compare(a.Dist, b.Dist); c != 0 {
		return c
	}
	return strings.Compare(a.ID, b.ID)
}

// checkVectors checks that every vector is finite with a squared norm that fits float32,
// and returns the squared norms.
func checkVectors(what string, ids []string, v []float32, dim int) ([]float64, error) {
	n := len(ids)
	norm2 := make([]float64, n)
	var bad problems
	for i := range n {
		var s float64
		row := v[i*dim : (i+1)*dim]
		for j, x := range row {
			f := float64(x)
			if math.IsNaN(f) || math.IsInf(f, 0) {
				bad.add(fmt.Errorf("%s row %d (item %q): component %d is %v", what, i, ids[i], j, x))
				s = math.NaN()
				break
			}
			s += f * f
		}
		if s > math.MaxFloat32 {
			bad.add(fmt.Errorf("%s row %d (item %q): squared norm %.3g overflows float32", what, i, ids[i], s))
		}
		norm2[i] = s
	}
	return norm2, bad.err()
}

// problems collects validation errors, keeping the first maxProblems.
type problems struct {
	errs    []error
	dropped int
}

func (p *problems) add(err error) {
	if len(p.errs) < maxProblems {
		p.errs = append(p.errs, err)
	} else {
		p.dropped++
	}
}

func (p *problems) err() error {
	if p.dropped > 0 {
		return errors.Join(append(p.errs, fmt.Errorf("… and %d more", p.dropped))...)
	}
	return errors.Join(p.errs...)
}
