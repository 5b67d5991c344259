package rerank

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/stirpipe/stirpipe/schemas/neighbors"
)

// TestBatchesPackWholeQueries drives the DoFn without a model: images come from its cache,
// and the scorer records each forward pass's size and scores a pair as 100·query + candidate
// (each image's tensor holds its number), so every list's scores show which pairs it got.
func TestBatchesPackWholeQueries(t *testing.T) {
	tests := []struct {
		name        string
		topN, batch int
		lens        []int // list lengths, one query each
		want        []int // pairs per forward pass
	}{
		{"full batches", 5, 10, []int{8, 8, 8, 8}, []int{10, 10}},
		// A query that does not fit waits for the next pass, which fills up in turn.
		{"leftover carried over", 5, 12, []int{8, 8, 8, 8, 8, 8}, []int{10, 10, 10}},
		{"odd heads", 3, 4, []int{2, 10, 0, 10, 1}, []int{2, 3, 4}},
		{"query larger than a batch", 5, 3, []int{6, 6}, []int{5, 5}},
		{"last pass partial", 5, 10, []int{6, 6, 6}, []int{10, 5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const slot = 2
			fn := &rerankFn{Config: Config{TopN: tt.topN, BatchPairs: tt.batch, CacheImages: 1000}, slot: slot}
			var passes []int
			fn.score = func(q, c []float32, n int) ([]float32, error) {
				if len(q) != n*slot || len(c) != n*slot {
					return nil, fmt.Errorf("%d pairs in buffers of %d and %d floats", n, len(q), len(c))
				}
				passes = append(passes, n)
				out := make([]float32, n)
				for i := range out {
					out[i] = 100*q[i*slot] + c[i*slot]
				}
				return out, nil
			}
			ctx := context.Background()
			// Image i's tensor is {i, i}; query j is image 10·(j+1), its candidates 1, 2, ….
			fn.cache = newTensorCache(1000)
			img := func(i int) string { return fmt.Sprintf("img%d", i) }
			for i := range 100 {
				fn.cache.put(img(i), []float32{float32(i), float32(i)})
			}
			var recs []neighbors.Record
			for j, n := range tt.lens {
				r := neighbors.Record{QueryID: img(10 * (j + 1))}
				for k := range n {
					r.NeighborIDs = append(r.NeighborIDs, img(k+1))
					r.Distances = append(r.Distances, float32(k+1))
				}
				recs = append(recs, r)
			}
			var out []neighbors.Record
			emit := func(r neighbors.Record) { out = append(out, r) }
			for _, r := range recs {
				if err := fn.ProcessElement(ctx, r, emit, nil); err != nil {
					t.Fatal(err)
				}
			}
			if err := fn.FinishBundle(ctx, emit, nil); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(passes, tt.want) {
				t.Errorf("forward passes of %v pairs, want %v", passes, tt.want)
			}
			if len(out) != len(recs) {
				t.Fatalf("%d lists out of %d", len(out), len(recs))
			}
			for j, r := range out {
				if r.QueryID != recs[j].QueryID {
					t.Fatalf("list %d is query %s, want %s (input order)", j, r.QueryID, recs[j].QueryID)
				}
				h := min(tt.topN, tt.lens[j])
				var want []float32
				for k := range h {
					want = append(want, float32(100*10*(j+1)+k+1))
				}
				got := slices.Clone(r.PairScores)
				slices.Sort(got)
				if !slices.Equal(got, want) {
					t.Errorf("query %s: pair scores %v, want %v", r.QueryID, got, want)
				}
			}
		})
	}
}
