package knn

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"

	ortgo "github.com/yalue/onnxruntime_go"
)

// SearchSelf searches every row of ix against ix itself, as when every catalog item is
// both a query and a gallery item (Stanford Online Products). Each inner product is
// computed once and offered to both of its rows, which halves the GEMM work; the result
// equals SearchIndex with the same rows as queries.
//
// Working memory is Threads × Len × 2·(K + 8) × 8 bytes of candidate buffers (≈ 105 MB
// per thread for 60,502 rows at K = 100), besides the results.
func (e *Engine) SearchSelf(ix *Index) ([][]Neighbor, error) {
	a, _, err := e.searchSymmetric(ix, ix)
	return a, err
}

// SearchPair searches the rows of a against b and the rows of b against a in one pass over
// their inner products: for two shards of a catalog whose items are all both queries and
// gallery items, SearchSelf on each shard and SearchPair on each pair of shards cover every
// (query, gallery) pair once, and Merge combines the lists of each item. Exclusions
// resolve ids and sequences across the two shards. a and b must be different indexes.
func (e *Engine) SearchPair(a, b *Index) (aInB, bInA [][]Neighbor, err error) {
	if a == b {
		return nil, nil, errors.New("knn: SearchPair needs two different indexes; use SearchSelf for one")
	}
	return e.searchSymmetric(a, b)
}

// settleGroup is how many rows a symmetric search settles together.
const settleGroup = 512

// symSide is one side of a symmetric search: its rows are queries against the other side.
type symSide struct {
	ix   *Index
	self []int32 // excluded row of the other side, per row
	seq  []int32 // excluded sequence code of the other side, per row
}

// symWorker is one thread's partial candidates: every row of a and b, merged at the end.
type symWorker struct {
	scores []float32
	selA   []selector
	selB   []selector // == selA for SearchSelf, else ownB
	ownB   []selector
}

// searchSymmetric runs the block loop of SearchSelf (a == b) and SearchPair.
func (e *Engine) searchSymmetric(a, b *Index) (aInB, bInA [][]Neighbor, err error) {
	if a == nil || b == nil {
		return nil, nil, errors.New("knn: nil index")
	}
	if a.g.Dim != b.g.Dim {
		return nil, nil, fmt.Errorf("knn: index dimensions differ: %d and %d", a.g.Dim, b.g.Dim)
	}
	self := a == b
	if e.opts.Normalized {
		var bad problems
		checkUnit(&bad, "gallery", a.g.IDs, a.norm2)
		if !self {
			checkUnit(&bad, "gallery", b.g.IDs, b.norm2)
		}
		if err := bad.err(); err != nil {
			return nil, nil, fmt.Errorf("knn: Normalized is set but %w (normalise the embeddings or unset Normalized)", err)
		}
	}
	sa, sb := e.symSide(a, b, self), e.symSide(b, a, self)
	aInB, bInA = make([][]Neighbor, a.n), make([][]Neighbor, b.n)
	if a.n == 0 || b.n == 0 {
		for i := range aInB {
			aInB[i] = []Neighbor{}
		}
		for i := range bInA {
			bInA[i] = []Neighbor{}
		}
		return aInB, bInA, nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.session == nil {
		return nil, nil, errors.New("knn: engine is closed")
	}
	tile := tileRows(e.opts.TileRows, a.n, e.threads)
	chunk := e.opts.ChunkRows
	if chunk == 0 || chunk > b.n {
		chunk = b.n
	}
	ntiles := (a.n + tile - 1) / tile
	threads := min(e.threads, ntiles)
	workers := make([]*symWorker, threads)
	for w := range workers {
		workers[w] = e.symWorker(w, sa, sb, self, tile*chunk)
	}
	if threads > 1 {
		// The rows of b get candidates from every thread: share their thresholds.
		if cap(e.shared) < b.n {
			e.shared = make([]atomic.Uint32, b.n)
		}
		e.shared = e.shared[:b.n]
		inf := math.Float32bits(float32(math.Inf(-1)))
		for j := range e.shared {
			e.shared[j].Store(inf)
		}
		for _, wk := range workers {
			for j := range wk.selB {
				wk.selB[j].pub = &e.shared[j]
			}
		}
	}
	err = eachTile(workers, ntiles, func(wk *symWorker, t int) error {
		return e.symTile(wk, sa, sb, self, t*tile, min((t+1)*tile, a.n), chunk)
	})
	if err != nil {
		return nil, nil, err
	}
	// Merge the partial candidates into worker 0's and settle every row, threads in parallel.
	k := min(e.opts.K, b.n)
	backA := make([]Neighbor, 0, a.n*k)
	var backB []Neighbor
	if !self {
		backB = make([]Neighbor, 0, b.n*min(e.opts.K, a.n))
	}
	// settle merges the partial candidates of rows [lo, hi) into worker 0's and settles
	// them, a group of rows at a time (exactBatch buckets each group's candidates).
	settle := func(part func(*symWorker) []selector, q, g *Index, back []Neighbor, out [][]Neighbor, lo, hi int, bs *batchScratch) {
		per := min(e.opts.K, g.n)
		rows := part(workers[0])
		for g0 := lo; g0 < hi; g0 += settleGroup {
			g1 := min(g0+settleGroup, hi)
			for i := g0; i < g1; i++ {
				for _, wk := range workers[1:] {
					rows[i].merge(&part(wk)[i])
				}
			}
			exactBatch(rows[g0:g1], func(i int) []float32 { return q.row(g0 + i) }, g, bs)
			for i := g0; i < g1; i++ {
				out[i] = rows[i].settle(q.row(i), g, e.opts.Normalized, e.opts.K, back[i*per:i*per:(i+1)*per])
			}
		}
	}
	var sw sync.WaitGroup
	for w := range threads {
		sw.Add(1)
		go func() {
			defer sw.Done()
			var bs batchScratch
			lo, hi := a.n*w/threads, a.n*(w+1)/threads
			settle(func(wk *symWorker) []selector { return wk.selA }, a, b, backA, aInB, lo, hi, &bs)
			if !self {
				lo, hi = b.n*w/threads, b.n*(w+1)/threads
				settle(func(wk *symWorker) []selector { return wk.selB }, b, a, backB, bInA, lo, hi, &bs)
			}
		}()
	}
	sw.Wait()
	if self {
		bInA = aInB
	}
	return aInB, bInA, nil
}

// symSide resolves the exclusions of q's rows as queries against g.
func (e *Engine) symSide(q, g *Index, self bool) symSide {
	s := symSide{ix: q, self: make([]int32, q.n), seq: make([]int32, q.n)}
	for i := range q.n {
		s.self[i], s.seq[i] = -1, -1
		switch {
		case self && e.opts.ExcludeSelf:
			s.self[i] = int32(i)
		case e.opts.ExcludeSelf:
			s.self[i] = g.find(q.g.IDs[i])
		}
		if !e.opts.ExcludeSameSequence || q.seq[i] < 0 {
			continue
		}
		if self {
			s.seq[i] = q.seq[i]
		} else if c, ok := g.codes[q.g.Sequences[i]]; ok {
			s.seq[i] = c
		}
	}
	return s
}

// symWorker returns worker w's state, reset for a search of sa's rows against sb's.
// Buffers are kept in the engine for the next search.
func (e *Engine) symWorker(w int, sa, sb symSide, self bool, scoreLen int) *symWorker {
	for len(e.symWorkers) <= w {
		e.symWorkers = append(e.symWorkers, &symWorker{})
	}
	wk := e.symWorkers[w]
	if len(wk.scores) < scoreLen {
		wk.scores = make([]float32, scoreLen)
	}
	reset := func(sel []selector, s symSide) []selector {
		if cap(sel) < s.ix.n {
			sel = make([]selector, s.ix.n)
		}
		sel = sel[:s.ix.n]
		for i := range sel {
			sel[i].reset(e.opts.K+extraCandidates, s.self[i], s.seq[i], s.ix.norm2[i])
		}
		return sel
	}
	wk.selA = reset(wk.selA, sa)
	if self {
		wk.selB = wk.selA
	} else {
		wk.ownB = reset(wk.ownB, sb)
		wk.selB = wk.ownB
	}
	return wk
}

// symTile computes the blocks of a's rows [t0, t1) against b and offers every score to
// both of its rows. For SearchSelf only b rows ≥ t0 are computed: pairs inside the
// diagonal square [t0, t1)² go to the row selectors alone (both orders are in the block),
// pairs with b rows ≥ t1 go both ways, and pairs with b rows < t0 were offered by earlier
// tiles.
func (e *Engine) symTile(wk *symWorker, sa, sb symSide, self bool, t0, t1, chunk int) error {
	a, b := sa.ix, sb.ix
	d := a.g.Dim
	rows := t1 - t0
	qt, err := ortgo.NewTensor(ortgo.NewShape(int64(rows), int64(d)), a.g.Vectors[t0*d:t1*d])
	if err != nil {
		return fmt.Errorf("knn: query tensor: %w", err)
	}
	defer qt.Destroy()
	start := 0
	if self {
		start = t0
	}
	unit := e.opts.Normalized
	for c0 := start; c0 < b.n; c0 += chunk {
		c1 := min(c0+chunk, b.n)
		width := c1 - c0
		scores := wk.scores[:rows*width]
		if err := e.gemm(qt, b.g.Vectors[c0*d:c1*d], width, d, scores, rows); err != nil {
			return err
		}
		// Columns [c0, split) are offered to the rows only (the diagonal square).
		split := c0
		if self {
			split = min(max(c0, t1), c1)
		}
		rowOnly, both := split-c0, c1-split
		for i := range rows {
			ai := t0 + i
			row := scores[i*width : (i+1)*width]
			sel := &wk.selA[ai]
			if unit {
				if rowOnly > 0 {
					sel.scanUnit(row[:rowOnly], int32(c0), b.seq)
				}
				if both > 0 {
					scanUnitBoth(row[rowOnly:], sel, int32(split), b.seq,
						wk.selB[split:c1], int32(ai), a.seq)
				}
			} else {
				if rowOnly > 0 {
					sel.scanGeneral(row[:rowOnly], b.norm2[c0:split], int32(c0), b.seq)
				}
				if both > 0 {
					scanGeneralBoth(row[rowOnly:], sel, b.norm2[split:c1], int32(split), b.seq,
						wk.selB[split:c1], a.norm2[ai], int32(ai), a.seq)
				}
			}
		}
	}
	return nil
}
