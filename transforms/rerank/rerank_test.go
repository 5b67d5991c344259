package rerank

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/stirpipe/stirpipe/schemas/catalog"
	"github.com/stirpipe/stirpipe/schemas/lists"
	"github.com/stirpipe/stirpipe/schemas/rejects"
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
			var recs []lists.Record
			for j, n := range tt.lens {
				r := lists.Record{QueryID: img(10 * (j + 1))}
				for k := range n {
					r.NeighborIDs = append(r.NeighborIDs, img(k+1))
					r.Distances = append(r.Distances, float32(k+1))
				}
				recs = append(recs, r)
			}
			var out []lists.Record
			emit := func(r lists.Record) { out = append(out, r) }
			for _, r := range recs {
				if err := fn.ProcessElement(ctx, r.QueryID, iter([]lists.Record{r}), iter[ItemRow](nil), iter[Scored](nil), emit, nil); err != nil {
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

// TestTensorCache checks the bounded LRU: least recently used out first, a repeated put
// updates the entry instead of adding one.
func TestTensorCache(t *testing.T) {
	c := newTensorCache(2)
	c.put("a", []float32{1})
	c.put("b", []float32{2})
	c.put("a", []float32{3}) // update; a is now the most recent
	if c.order.Len() != 2 || len(c.items) != 2 {
		t.Fatalf("cache holds %d/%d entries after a repeated put, want 2", c.order.Len(), len(c.items))
	}
	c.put("c", []float32{4}) // evicts b
	if _, ok := c.get("b"); ok {
		t.Error("b was not evicted")
	}
	if v, ok := c.get("a"); !ok || v[0] != 3 {
		t.Errorf("a = %v, %v; want [3], true", v, ok)
	}
	if v, ok := c.get("c"); !ok || v[0] != 4 {
		t.Errorf("c = %v, %v; want [4], true", v, ok)
	}
}

// iter is a Beam-style iterator over xs.
func iter[T any](xs []T) func(*T) bool {
	return func(x *T) bool {
		if len(xs) == 0 {
			return false
		}
		*x, xs = xs[0], xs[1:]
		return true
	}
}

// TestUnknownItemKeepsList: a head candidate the catalog does not hold (no row routed to
// the query) keeps the query's original list and is rejected with its reason.
func TestUnknownItemKeepsList(t *testing.T) {
	fn := &rerankFn{Config: Config{Catalog: "cat.csv", TopN: 2, BatchPairs: 4, CacheImages: 10}, slot: 1}
	fn.score = func(q, c []float32, n int) ([]float32, error) { return make([]float32, n), nil }
	fn.cache = newTensorCache(10)
	fn.cache.put("q", []float32{1})
	fn.cache.put("a", []float32{2})
	rec := lists.Record{QueryID: "q", NeighborIDs: []string{"a", "gone", "b"}, Distances: []float32{0.1, 0.2, 0.3}}
	items := []ItemRow{
		{ID: "q", Found: true, Row: catalog.Row{ID: "q", Path: "q.jpg", Line: 7}},
		{ID: "a", Found: true},
		{ID: "gone"},
	}
	var out []lists.Record
	var rejs []rejects.Record
	err := fn.ProcessElement(context.Background(), "q", iter([]lists.Record{rec}), iter(items), iter[Scored](nil),
		func(r lists.Record) { out = append(out, r) }, func(r rejects.Record) { rejs = append(rejs, r) })
	if err == nil {
		err = fn.FinishBundle(context.Background(), func(r lists.Record) { out = append(out, r) }, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 || !slices.Equal(out[0].NeighborIDs, rec.NeighborIDs) || !slices.Equal(out[0].Distances, rec.Distances) || out[0].PairScores != nil {
		t.Errorf("lists out %+v, want the original list once", out)
	}
	if len(rejs) != 1 || rejs[0].Reason != "unknown_item" || rejs[0].ItemID != "q" || rejs[0].Path != "q.jpg" || rejs[0].Line != 7 {
		t.Errorf("rejects %+v, want one unknown_item reject of q.jpg line 7", rejs)
	}
}

// TestRouteRows: a row goes to every query that asked for it; an item without a row goes
// out as not found.
func TestRouteRows(t *testing.T) {
	type routed struct {
		query string
		item  ItemRow
	}
	var got []routed
	emit := func(q string, it ItemRow) { got = append(got, routed{q, it}) }
	row := catalog.Row{ID: "x", Path: "x.jpg"}
	routeRows("x", iter([]string{"q1", "q2"}), iter([]catalog.Row{row}), emit)
	routeRows("y", iter([]string{"q3"}), iter[catalog.Row](nil), emit)
	want := []routed{{"q1", ItemRow{"x", true, row}}, {"q2", ItemRow{"x", true, row}}, {"q3", ItemRow{ID: "y"}}}
	if !slices.Equal(got, want) {
		t.Errorf("routed %+v, want %+v", got, want)
	}
}
