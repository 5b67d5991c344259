package lists

import (
	"context"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stirpipe/stirpipe/schemas/blob"
	"github.com/stirpipe/stirpipe/schemas/internal/stagetest"
)

func TestMerge(t *testing.T) {
	// q is a part whose n_relevant is n, the relevant items of its shard (any number ≥ the
	// neighbours' hits: the labels here never equal the query's 7).
	q := func(n int64, ids []string, d []float32) Record {
		labels := make([]int64, len(ids))
		for i, id := range ids {
			labels[i] = int64(len(id) + i) // any value that travels with its id
		}
		return Record{QueryID: "q", QueryLabel: 7, QueryCategory: "mug", NRelevant: n, NeighborIDs: ids, NeighborLabels: labels, Distances: d}
	}
	for _, tc := range []struct {
		name         string
		k            int
		parts        []Record
		wantIDs      []string
		wantRelevant int64
		wantErr      string
	}{
		{"interleaved and cut at k", 3, []Record{q(2, []string{"a", "c"}, []float32{0.1, 0.3}), q(5, []string{"b", "d"}, []float32{0.2, 0.4})},
			[]string{"a", "b", "c"}, 7, ""},
		{"ties broken by id across parts", 4, []Record{q(0, []string{"z", "m"}, []float32{0.5, 0.5}), q(1, []string{"b", "y"}, []float32{0.5, 0.6})},
			[]string{"b", "m", "z", "y"}, 1, ""},
		{"empty parts", 2, []Record{q(3, nil, nil), q(0, []string{"x"}, []float32{1}), q(4, []string{}, []float32{})}, []string{"x"}, 7, ""},
		{"all empty", 2, []Record{q(0, nil, nil), q(0, nil, nil)}, []string{}, 0, ""},
		{"one part", 2, []Record{q(9, []string{"x", "y", "z"}, []float32{1, 2, 3})}, []string{"x", "y"}, 9, ""},
		{"neighbour in two parts", 3, []Record{q(0, []string{"a"}, []float32{0.1}), q(0, []string{"a"}, []float32{0.3})}, nil, 0,
			`neighbour "a" is in two parts`},
		{"other query", 3, []Record{q(0, []string{"a"}, []float32{0.1}), {QueryID: "r"}}, nil, 0, `part 1 is query "r"`},
		{"other label", 3, []Record{q(0, nil, nil), {QueryID: "q", QueryLabel: 8, QueryCategory: "mug"}}, nil, 0, "label 8"},
		{"pair scores", 3, []Record{{QueryID: "q", NeighborIDs: []string{"a"}, NeighborLabels: []int64{1}, Distances: []float32{1}, PairScores: []float32{0.2}}}, nil, 0,
			"no pair scores"},
		{"no parts", 3, nil, nil, 0, "no partial lists"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Merge(tc.k, tc.parts...)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Merge = %v, want an error mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.QueryID != "q" || got.QueryLabel != 7 || got.QueryCategory != "mug" || !slices.Equal(got.NeighborIDs, tc.wantIDs) || got.NRelevant != tc.wantRelevant {
				t.Fatalf("Merge = %+v, want neighbours %v and n_relevant %d", got, tc.wantIDs, tc.wantRelevant)
			}
			// Labels and distances travel with their ids.
			for j, id := range got.NeighborIDs {
				var found bool
				for _, p := range tc.parts {
					if i := slices.Index(p.NeighborIDs, id); i >= 0 {
						found = p.NeighborLabels[i] == got.NeighborLabels[j] && p.Distances[i] == got.Distances[j]
					}
				}
				if !found {
					t.Errorf("neighbour %s: label %d, distance %v do not come from its part", id, got.NeighborLabels[j], got.Distances[j])
				}
			}
		})
	}
}

// galleryItem is one gallery row in the sharded search simulation.
type galleryItem struct {
	id    string
	label int64
}

// topK ranks the given gallery items for a query by CompareNeighbors and keeps k; its
// n_relevant counts the items with the query's label, the query itself excluded.
func topK(query Record, items []galleryItem, dist func(q, g string) float32, k int) Record {
	type cand struct {
		galleryItem
		d float32
	}
	var cands []cand
	r := query
	r.NRelevant = 0
	for _, g := range items {
		if g.id != query.QueryID {
			cands = append(cands, cand{g, dist(query.QueryID, g.id)})
			if g.label == query.QueryLabel {
				r.NRelevant++
			}
		}
	}
	slices.SortFunc(cands, func(a, b cand) int { return CompareNeighbors(a.d, b.d, a.id, b.id) })
	r.NeighborIDs, r.NeighborLabels, r.Distances = []string{}, []int64{}, []float32{}
	for _, c := range cands[:min(k, len(cands))] {
		r.NeighborIDs = append(r.NeighborIDs, c.id)
		r.NeighborLabels = append(r.NeighborLabels, c.label)
		r.Distances = append(r.Distances, c.d)
	}
	return r
}

// searchFixture is a query tile and a gallery split into shards, with a distance that has
// many ties (so that tie-breaking at each shard's cut-off matters).
type searchFixture struct {
	queries []Record
	shards  [][]galleryItem
	all     []galleryItem
	dist    func(q, g string) float32
}

func newSearchFixture(nq, ng, nShards int, seed uint64) searchFixture {
	rng := rand.New(rand.NewPCG(seed, 3))
	f := searchFixture{shards: make([][]galleryItem, nShards)}
	for i := range ng {
		g := galleryItem{fmt.Sprintf("item-%04d", i), int64(i / 5)}
		f.all = append(f.all, g)
		f.shards[stagetest.ShardOf(g.id, nShards)] = append(f.shards[stagetest.ShardOf(g.id, nShards)], g)
	}
	for i := range nq {
		// Queries are gallery items too (SOP style), so self-exclusion matters.
		f.queries = append(f.queries, Record{QueryID: fmt.Sprintf("item-%04d", i*3), QueryLabel: int64(i * 3 / 5)})
	}
	salt := rng.Uint64()
	f.dist = func(q, g string) float32 {
		h := fnv.New64a()
		fmt.Fprint(h, q, "|", g, salt)
		return float32(h.Sum64()%16) / 8 // 16 distinct values: lots of ties
	}
	return f
}

func TestMergeMatchesGlobalTopK(t *testing.T) {
	for _, tc := range []struct{ nq, ng, shards, k int }{
		{10, 50, 4, 5},
		{10, 50, 7, 20},
		{5, 8, 3, 10}, // k larger than the gallery
		{3, 30, 1, 4},
	} {
		f := newSearchFixture(tc.nq, tc.ng, tc.shards, uint64(tc.k))
		for _, q := range f.queries {
			var parts []Record
			for _, s := range f.shards {
				parts = append(parts, topK(q, s, f.dist, tc.k))
			}
			rand.New(rand.NewPCG(1, uint64(tc.k))).Shuffle(len(parts), func(i, j int) { parts[i], parts[j] = parts[j], parts[i] })
			got, err := Merge(tc.k, parts...)
			if err != nil {
				t.Fatal(err)
			}
			if want := topK(q, f.all, f.dist, tc.k); !slices.Equal(got.NeighborIDs, want.NeighborIDs) || !equalFloats(got.Distances, want.Distances) ||
				!slices.Equal(got.NeighborLabels, want.NeighborLabels) || got.NRelevant != want.NRelevant {
				t.Fatalf("%+v query %s: merged %v %v n_relevant %d, global top-k %v %v n_relevant %d",
					tc, q.QueryID, got.NeighborIDs, got.Distances, got.NRelevant, want.NeighborIDs, want.Distances, want.NRelevant)
			}
		}
	}
}

// writePartials writes the partial files of one tile (every query of f against each gallery
// shard) under dir/_tmp and returns their URIs in a shuffled order.
func writePartials(t *testing.T, ctx context.Context, dir, ext string, f searchFixture, prov Provenance) []string {
	t.Helper()
	part := prov
	part.Stage = StagePartial
	var uris []string
	for s, items := range f.shards {
		var recs []Record
		for _, q := range f.queries {
			recs = append(recs, topK(q, items, f.dist, prov.K))
		}
		uri := PartialURI(dir, 0, 1, s, len(f.shards), ext)
		if _, err := WriteFile(ctx, uri, recs, part); err != nil {
			t.Fatal(err)
		}
		uris = append(uris, uri)
	}
	rand.New(rand.NewPCG(2, 2)).Shuffle(len(uris), func(i, j int) { uris[i], uris[j] = uris[j], uris[i] })
	return uris
}

func TestMergeFiles(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct{ base, ext string }{
		{"", ExtParquet},
		{"", ExtArrow},
		{"gs://" + testBucket + "/merge", ExtParquet},
	} {
		dir := tc.base + "/" + tc.ext[1:]
		if tc.base == "" {
			dir = t.TempDir()
		}
		f := newSearchFixture(12, 60, 4, 9)
		prov := testProvenance(StageNeighbors, 7)
		partials := writePartials(t, ctx, dir, tc.ext, f, prov)
		name := ShardName(0, 1, tc.ext)
		info, err := MergeFiles(ctx, blob.Join(dir, name), partials, prov)
		if err != nil {
			t.Fatal(err)
		}
		if err := WriteManifest(ctx, dir, NewManifest(prov, []ShardInfo{info})); err != nil {
			t.Fatal(err)
		}
		// The reader ignores _tmp/, which is still there.
		r, err := Open(ctx, dir)
		if err != nil {
			t.Fatal(err)
		}
		got, err := r.ReadAll(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var want []Record
		for _, q := range f.queries {
			want = append(want, topK(q, f.all, f.dist, prov.K))
		}
		equalRecords(t, got, sorted(want))

		if err := RemoveTmp(ctx, dir); err != nil {
			t.Fatal(err)
		}
		left, err := blob.List(ctx, blob.Join(dir, TmpDir)+"/")
		if err != nil || len(left) != 0 {
			t.Fatalf("after RemoveTmp: %v %v", left, err)
		}
		if tc.base == "" {
			if _, err := os.Stat(filepath.Join(dir, TmpDir)); !os.IsNotExist(err) {
				t.Fatalf("local %s still there: %v", TmpDir, err)
			}
		}
		all, err := blob.List(ctx, strings.TrimSuffix(dir, "/")+"/")
		if err != nil || len(all) != 2 {
			t.Fatalf("files after RemoveTmp: %v %v, want the shard and the manifest", all, err)
		}
		if err := RemoveTmp(ctx, dir); err != nil {
			t.Fatalf("RemoveTmp twice: %v", err)
		}
		if _, err := Open(ctx, dir); err != nil {
			t.Fatal(err)
		}
	}
}

func TestMergeFilesErrors(t *testing.T) {
	ctx := context.Background()
	prov := testProvenance(StageNeighbors, 5)
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, dir string, partials []string) ([]string, Provenance)
		want  string
	}{
		{"partial missing a query", func(t *testing.T, dir string, partials []string) ([]string, Provenance) {
			recs, p, err := ReadFile(ctx, partials[1])
			if err != nil {
				t.Fatal(err)
			}
			if _, err := WriteFile(ctx, partials[1], recs[1:], p); err != nil {
				t.Fatal(err)
			}
			return partials, prov
		}, "is only in the first"},
		{"neighbours file among partials", func(t *testing.T, dir string, partials []string) ([]string, Provenance) {
			recs, _, err := ReadFile(ctx, partials[0])
			if err != nil {
				t.Fatal(err)
			}
			if _, err := WriteFile(ctx, partials[0], recs, prov); err != nil {
				t.Fatal(err)
			}
			return partials, prov
		}, `stir.stage is "neighbors", want "partial"`},
		{"partials of another k", func(t *testing.T, dir string, partials []string) ([]string, Provenance) {
			p := prov
			p.K = 6
			return partials, p
		}, `stir.neighbors.k is "5", want "6"`},
		{"reranked output", func(t *testing.T, dir string, partials []string) ([]string, Provenance) {
			return partials, testProvenance(StageReranked, 5)
		}, `stage is "reranked", want "neighbors"`},
		{"partial removed", func(t *testing.T, dir string, partials []string) ([]string, Provenance) {
			if err := RemovePartials(ctx, partials[2:3]); err != nil {
				t.Fatal(err)
			}
			return partials, prov
		}, "no such file"},
		{"no partials", func(t *testing.T, dir string, partials []string) ([]string, Provenance) {
			return nil, prov
		}, "no partial files"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			partials := writePartials(t, ctx, dir, ExtParquet, newSearchFixture(6, 30, 3, 4), prov)
			partials, p := tc.setup(t, dir, partials)
			out := filepath.Join(dir, ShardName(0, 1, ExtParquet))
			if _, err := MergeFiles(ctx, out, partials, p); err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), out) {
				t.Fatalf("MergeFiles = %v, want an error naming %s and %q", err, out, tc.want)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Fatalf("failed merge wrote %s", out)
			}
		})
	}
}

// TestMergeFilesSameBytes: the streaming merge writes the very bytes that WriteFile makes
// of the merged records, over several row groups, in both formats.
func TestMergeFilesSameBytes(t *testing.T) {
	ctx := context.Background()
	defer func(b int) { rowGroupBytes = b }(rowGroupBytes)
	rowGroupBytes = 4000 // a few rows per row group
	prov := testProvenance(StageNeighbors, 7)
	for _, ext := range []string{ExtParquet, ExtArrow} {
		dir := t.TempDir()
		f := newSearchFixture(40, 90, 3, 5)
		partials := writePartials(t, ctx, dir, ext, f, prov)
		streamed := filepath.Join(dir, ShardName(0, 2, ext))
		info, err := MergeFiles(ctx, streamed, partials, prov)
		if err != nil {
			t.Fatal(err)
		}
		var merged []Record
		for _, q := range f.queries {
			var parts []Record
			for _, uri := range partials {
				recs, _, err := ReadFile(ctx, uri)
				if err != nil {
					t.Fatal(err)
				}
				i := slices.IndexFunc(recs, func(r Record) bool { return r.QueryID == q.QueryID })
				parts = append(parts, recs[i])
			}
			m, err := Merge(prov.K, parts...)
			if err != nil {
				t.Fatal(err)
			}
			merged = append(merged, m)
		}
		whole := filepath.Join(dir, ShardName(1, 2, ext))
		want, err := WriteFile(ctx, whole, merged, prov)
		if err != nil {
			t.Fatal(err)
		}
		a, errA := os.ReadFile(streamed)
		b, errB := os.ReadFile(whole)
		if errA != nil || errB != nil || !slices.Equal(a, b) {
			t.Fatalf("%s: merged file (%d bytes) differs from WriteFile's (%d bytes): %v %v", ext, len(a), len(b), errA, errB)
		}
		if info.Rows != int64(len(merged)) || info.Bytes != want.Bytes || info.SHA256 != want.SHA256 {
			t.Fatalf("%s: info %+v, WriteFile's %+v", ext, info, want)
		}
	}
}

func TestWriteSortedOrder(t *testing.T) {
	ctx := context.Background()
	prov := testProvenance(StageNeighbors, 3)
	recs := []Record{{QueryID: "b", QueryLabel: 1}, {QueryID: "a", QueryLabel: 1}}
	for _, tc := range []struct {
		name string
		recs []Record
		want string
	}{
		{"out of order", recs, `query "a" after "b"`},
		{"duplicate", []Record{recs[0], recs[0]}, `query "b" after "b"`},
		{"invalid", []Record{{QueryID: "a", NeighborIDs: []string{"x"}}}, "want equal lengths"},
	} {
		uri := filepath.Join(t.TempDir(), ShardName(0, 1, ExtParquet))
		_, err := writeSorted(ctx, uri, func(yield func(*Record) error) error {
			for i := range tc.recs {
				if err := yield(&tc.recs[i]); err != nil {
					return err
				}
			}
			return nil
		}, prov)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: writeSorted = %v, want an error mentioning %q", tc.name, err, tc.want)
		}
		if _, err := os.Stat(uri); !os.IsNotExist(err) {
			t.Errorf("%s: a failed write left %s", tc.name, uri)
		}
	}
}

// TestMergeWithEarlier: a tile's partials where some queries' lists for the last shard
// come from an earlier file (the shard's partial holds only their relevance count) merge
// into the same global top k; an earlier list of a query outside the tile is an error.
func TestMergeWithEarlier(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	f := newSearchFixture(12, 60, 3, 5)
	prov := testProvenance(StageNeighbors, 6)
	part := prov
	part.Stage = StagePartial
	last := len(f.shards) - 1
	var partials []string
	var earlier []Record
	for s, items := range f.shards {
		var recs []Record
		for i, q := range f.queries {
			r := topK(q, items, f.dist, prov.K)
			if s == last && i%2 == 0 {
				e := r
				earlier = append(earlier, e)
				r.NeighborIDs, r.NeighborLabels, r.Distances = nil, nil, nil
			}
			recs = append(recs, r)
		}
		uri := PartialURI(dir, 0, 1, s, len(f.shards), ExtParquet)
		if _, err := WriteFile(ctx, uri, recs, part); err != nil {
			t.Fatal(err)
		}
		partials = append(partials, uri)
	}
	early := PartialURI(dir, 0, 1, len(f.shards), len(f.shards), ExtParquet)
	if _, err := WriteFile(ctx, early, earlier, part); err != nil {
		t.Fatal(err)
	}
	out := blob.Join(dir, ShardName(0, 1, ExtParquet))
	if _, err := MergeWithEarlier(ctx, out, partials, early, prov); err != nil {
		t.Fatal(err)
	}
	got, _, err := ReadFile(ctx, out)
	if err != nil {
		t.Fatal(err)
	}
	var want []Record
	for _, q := range f.queries {
		want = append(want, topK(q, f.all, f.dist, prov.K))
	}
	equalRecords(t, got, sorted(want))

	stray := append(earlier, Record{QueryID: "zz-not-in-tile", QueryLabel: 1})
	if _, err := WriteFile(ctx, early, stray, part); err != nil {
		t.Fatal(err)
	}
	if _, err := MergeWithEarlier(ctx, out, partials, early, prov); err == nil || !strings.Contains(err.Error(), "zz-not-in-tile") {
		t.Errorf("an earlier list of a query outside the tile: %v, want an error naming it", err)
	}
}
