package main

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"time"

	"github.com/stirpipe/stirpipe/models/imageio"
	"github.com/stirpipe/stirpipe/models/manifest"
	"github.com/stirpipe/stirpipe/models/stir"
	"github.com/stirpipe/stirpipe/schemas/catalog"
	"github.com/stirpipe/stirpipe/schemas/lists"
)

// scoreFunc scores n (query, candidate) pairs, as pairwise.Scorer.Score.
type scoreFunc func(query, candidate []float32, n int) ([]float32, error)

// pairSet is every head pair of a set of lists, with its images decoded and preprocessed
// up front, batched as the rerank stage batches them.
type pairSet struct {
	dec *decoded
	// Q and C are the image indices (into dec) of each pair's query and candidate.
	Q, C []int
	// Batches holds each forward pass's first pair, and the pair count last: batch b is
	// pairs Batches[b] … Batches[b+1]−1.
	Batches []int
	// Queries are the lists' query ids, and First each list's first pair.
	Queries []string
	First   []int
	Cost    decodeCost
	images  int
}

// Pairs is the number of pairs.
func (ps *pairSet) Pairs() int { return len(ps.Q) }

// NumBatches is the number of forward passes.
func (ps *pairSet) NumBatches() int { return len(ps.Batches) - 1 }

// NumImages is the number of distinct images the pairs use.
func (ps *pairSet) NumImages() int { return ps.images }

// preparePairs lists the first Head(len, topN) candidates of every list paired with its
// query, in list order, and decodes the catalog's images once (decodeAll). Batches pack
// whole queries greedily up to batchPairs pairs, as the rerank stage does (one query's
// pairs never straddle two passes).
func preparePairs(ctx context.Context, recs []lists.Record, catalogPath string, m *manifest.Manifest, lim imageio.Limits, topN, batchPairs int) (*pairSet, error) {
	cat, err := catalog.Load(ctx, catalogPath, catalog.Options{Root: filepath.Dir(catalogPath)})
	if err != nil {
		return nil, err
	}
	dec, err := decodeAll(ctx, catalogPath, m, lim)
	if err != nil {
		return nil, err
	}
	if dec.N != len(cat.Rows) {
		return nil, fmt.Errorf("decoded %d images but catalog %s has %d rows", dec.N, catalogPath, len(cat.Rows))
	}
	index := make(map[string]int, len(cat.Rows))
	for i, r := range cat.Rows {
		index[r.ID] = i
	}
	ps := &pairSet{dec: dec, Batches: []int{0}}
	used := map[int]bool{}
	inBatch := 0
	for _, rec := range recs {
		h := stir.Head(len(rec.NeighborIDs), topN)
		if inBatch > 0 && inBatch+h > batchPairs {
			ps.Batches = append(ps.Batches, len(ps.Q))
			inBatch = 0
		}
		ps.Queries = append(ps.Queries, rec.QueryID)
		ps.First = append(ps.First, len(ps.Q))
		q, ok := index[rec.QueryID]
		if !ok {
			return nil, fmt.Errorf("query %s of the lists is not in catalog %s", rec.QueryID, catalogPath)
		}
		for _, id := range rec.NeighborIDs[:h] {
			c, ok := index[id]
			if !ok {
				return nil, fmt.Errorf("candidate %s of query %s is not in catalog %s", id, rec.QueryID, catalogPath)
			}
			ps.Q, ps.C = append(ps.Q, q), append(ps.C, c)
			used[q], used[c] = true, true
		}
		if inBatch += h; inBatch >= batchPairs {
			ps.Batches = append(ps.Batches, len(ps.Q))
			inBatch = 0
		}
	}
	if inBatch > 0 {
		ps.Batches = append(ps.Batches, len(ps.Q))
	}
	if len(ps.Q) == 0 {
		return nil, fmt.Errorf("the %d lists have no head pairs", len(recs))
	}
	ps.images = len(used)
	ps.Cost = decodeCost{Images: dec.N, ReadMS: 1000 * dec.ReadS / float64(dec.N),
		DecodeMS: 1000 * dec.DecodeS / float64(dec.N), PreprocessMS: 1000 * dec.PrepS / float64(dec.N)}
	return ps, nil
}

// byQuery groups the scores of every pair (in pair order) by query, each sorted.
func (ps *pairSet) byQuery(scores []float32) map[string][]float32 {
	out := make(map[string][]float32, len(ps.Queries))
	for i, q := range ps.Queries {
		hi := len(ps.Q)
		if i+1 < len(ps.First) {
			hi = ps.First[i+1]
		}
		s := slices.Clone(scores[ps.First[i]:hi])
		slices.Sort(s)
		out[q] = s
	}
	return out
}

// pairLoopRun is one timed run of the plain loop over the pairs.
type pairLoopRun struct {
	Rep     int     `json:"rep"`
	Pairs   int     `json:"pairs"`
	Batches int     `json:"batches"`
	WallS   float64 `json:"wall_s"`
	Rate    float64 `json:"pairs_per_s"`
	// CPUS is the process's user+system CPU seconds during the run (all threads).
	CPUS  float64 `json:"cpu_s"`
	Load1 float64 `json:"load1_before"`
	// OthersCPUS is the CPU time the rest of the machine used during the run.
	OthersCPUS float64 `json:"others_cpu_s"`
}

// runPairLoop times one pass over every pair in the set's batches: copy the batch's
// pre-decoded query and candidate tensors into two buffers (as the stage fills its
// batch from its image cache), score. It returns the scores in pair order.
func runPairLoop(score scoreFunc, ps *pairSet) (pairLoopRun, []float32, error) {
	r := pairLoopRun{Pairs: ps.Pairs(), Batches: ps.NumBatches(), Load1: load1()}
	slot := ps.dec.Slot
	most := 0
	for b := 0; b+1 < len(ps.Batches); b++ {
		most = max(most, ps.Batches[b+1]-ps.Batches[b])
	}
	qbuf, cbuf := make([]float32, most*slot), make([]float32, most*slot)
	scores := make([]float32, 0, ps.Pairs())
	img := func(i int) []float32 { return ps.dec.Tensors[i*slot : (i+1)*slot] }
	busy0 := machineBusy()
	cpu0 := cpuSeconds()
	start := time.Now()
	for b := 0; b+1 < len(ps.Batches); b++ {
		lo, hi := ps.Batches[b], ps.Batches[b+1]
		n := hi - lo
		for i := lo; i < hi; i++ {
			copy(qbuf[(i-lo)*slot:], img(ps.Q[i]))
			copy(cbuf[(i-lo)*slot:], img(ps.C[i]))
		}
		s, err := score(qbuf[:n*slot], cbuf[:n*slot], n)
		if err != nil {
			return r, nil, fmt.Errorf("batch %d (pairs %d–%d): %w", b, lo, hi-1, err)
		}
		scores = append(scores, s...)
	}
	r.WallS = time.Since(start).Seconds()
	r.CPUS = cpuSeconds() - cpu0
	r.OthersCPUS = othersCPU(busy0, machineBusy(), r.CPUS)
	r.Rate = float64(r.Pairs) / r.WallS
	return r, scores, nil
}

// readPairScores reads a reranked directory's raw pair scores by query, each sorted.
func readPairScores(ctx context.Context, dir string) (map[string][]float32, error) {
	recs, err := readLists(ctx, dir)
	if err != nil {
		return nil, err
	}
	out := make(map[string][]float32, len(recs))
	for _, r := range recs {
		s := slices.Clone(r.PairScores)
		slices.Sort(s)
		out[r.QueryID] = s
	}
	return out, nil
}

// compareScores checks that two runs scored the same queries with as many pairs each, and
// returns the largest difference of their sorted scores.
func compareScores(a, b map[string][]float32) (float64, error) {
	if len(a) != len(b) {
		return 0, fmt.Errorf("%d queries against %d", len(a), len(b))
	}
	var worst float64
	for q, sa := range a {
		sb, ok := b[q]
		if !ok {
			return 0, fmt.Errorf("query %s scored only once", q)
		}
		if len(sa) != len(sb) {
			return 0, fmt.Errorf("query %s: %d pair scores against %d", q, len(sa), len(sb))
		}
		for i := range sa {
			worst = max(worst, math.Abs(float64(sa[i]-sb[i])))
		}
	}
	return worst, nil
}
