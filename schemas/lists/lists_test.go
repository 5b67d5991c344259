package lists

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/stirpipe/stirpipe/schemas/blob"
	"github.com/stirpipe/stirpipe/schemas/blob/blobtest"
	"github.com/stirpipe/stirpipe/schemas/internal/pqfile"
	"github.com/stirpipe/stirpipe/schemas/internal/stagetest"
	"github.com/stirpipe/stirpipe/schemas/rejects"
)

const testBucket = "stir-neighbors-test"

func TestMain(m *testing.M) { blobtest.Main(m.Run, testBucket) }

// testProvenance returns a valid provenance of the given stage.
func testProvenance(stage string, k int) Provenance {
	p := Provenance{
		Stage:              stage,
		EmbeddingsURI:      "gs://runs/sop/embeddings",
		EmbeddingsSnapshot: strings.Repeat("5e", 32),
		CatalogURI:         "gs://data/sop/catalog.csv",
		CatalogSnapshot:    strings.Repeat("c4", 32),
		ModelName:          "vit-tiny-triplet",
		ModelSHA256:        strings.Repeat("ab", 32),
		K:                  k,
		Distance:           "euclidean",
		Engine:             "exact",
		ShardSize:          4096,
		Exclusions:         ExcludeSelf + "," + ExcludeSequence,
		Producer:           "neighbors_test",
	}
	if stage == StageReranked {
		p.PairModelName, p.PairModelSHA256, p.TopN = "stir-concat-siamese", strings.Repeat("cd", 32), 5
		p.InputURI, p.InputSnapshot = "gs://runs/sop/neighbors", strings.Repeat("1f", 32)
	}
	return p
}

// rerankEps is OML's eps of the head rescaling: 1000 float32 epsilons.
const rerankEps = 1000 * 1.1920929e-07

// rerank applies method §4 to r with the head scores (one per head neighbour, in the
// current order): the head is sorted by score (stably), its distances become the scores,
// rescaled below the tail's first distance when they would pass it.
func rerank(r *Record, scores []float32, topN int) {
	h := min(topN, len(r.NeighborIDs))
	perm := make([]int, h)
	for i := range perm {
		perm[i] = i
	}
	slices.SortStableFunc(perm, func(a, b int) int {
		switch {
		case scores[a] < scores[b]:
			return -1
		case scores[a] > scores[b]:
			return 1
		}
		return 0
	})
	ids, labels := slices.Clone(r.NeighborIDs[:h]), slices.Clone(r.NeighborLabels[:h])
	x1 := make([]float32, h)
	for i, p := range perm {
		r.NeighborIDs[i], r.NeighborLabels[i], x1[i] = ids[p], labels[p], scores[p]
	}
	r.PairScores = slices.Clone(x1)
	if tail := r.Distances[h:]; len(tail) > 0 && h > 0 && x1[h-1] > tail[0] {
		ratio := tail[0] / x1[h-1]
		for i := range x1 {
			x1[i] = x1[i]*ratio - rerankEps
		}
	}
	copy(r.Distances, x1)
}

// makeRecords returns n valid records of prov's stage in a shuffled order: lists of every
// length from 0 to prov.K (empty ones included), optional category and sequence, −0 and
// equal distances, n_relevant from exactly the neighbours' hits to more (and > 0 with an
// empty list), and in reranked files heads rescaled below zero.
func makeRecords(n int, prov Provenance, seed uint64) []Record {
	rng := rand.New(rand.NewPCG(seed, 11))
	recs := make([]Record, n)
	for i := range recs {
		r := Record{QueryID: fmt.Sprintf("q-%05d", i), QueryLabel: int64(i / 4)}
		if i%3 != 0 {
			r.QueryCategory = []string{"bicycle", "chair", "mug"}[i%3]
		}
		if i%5 == 0 {
			r.QuerySequence = fmt.Sprintf("seq-%d", i/10)
		}
		m := (i * 7) % (prov.K + 1) // 0 for i = 0: a query with an empty gallery
		if i == 1 {
			m = prov.K
		}
		gallery := rng.Perm(4 * (prov.K + 1))
		r.NeighborIDs = make([]string, m)
		r.NeighborLabels = make([]int64, m)
		r.Distances = make([]float32, m)
		var d float32
		for j := range m {
			r.NeighborIDs[j] = fmt.Sprintf("g-%05d", gallery[j])
			r.NeighborLabels[j] = int64(gallery[j] / 3)
			if j%4 != 3 { // every fourth distance ties with the previous one
				d += float32(rng.Float64()) / 4
			}
			r.Distances[j] = d
			if r.NeighborLabels[j] == r.QueryLabel {
				r.NRelevant++
			}
		}
		r.NRelevant += int64(i % 3) // relevant items beyond the list, or none
		if m > 0 && i%2 == 0 {
			r.Distances[0] = float32(math.Copysign(0, -1))
		}
		if prov.reranked() {
			h := min(prov.TopN, m)
			scores := make([]float32, h)
			for j := range scores {
				scores[j] = float32(rng.Float64())
			}
			if h > 0 && i%4 == 1 {
				scores[0] = 1 // the largest score possible
			}
			if m > h && i%3 == 1 {
				// A tail starting near zero pushes the rescaled head below zero.
				for j := range m {
					r.Distances[j] = float32(j) * 1e-6
				}
			}
			rerank(&r, scores, prov.TopN)
		}
		recs[i] = r
	}
	rng.Shuffle(n, func(i, j int) { recs[i], recs[j] = recs[j], recs[i] })
	return recs
}

// sorted returns a copy of recs sorted by query id.
func sorted(recs []Record) []Record {
	out := slices.Clone(recs)
	slices.SortFunc(out, func(a, b Record) int { return strings.Compare(a.QueryID, b.QueryID) })
	return out
}

// writeOutput writes recs as n shards of format ext plus a manifest under dir and returns
// the records in the order a reader yields them.
func writeOutput(t *testing.T, ctx context.Context, dir, ext string, recs []Record, n int, prov Provenance) []Record {
	t.Helper()
	groups := make([][]Record, n)
	for i, r := range sorted(recs) {
		groups[i*n/max(1, len(recs))] = append(groups[i*n/max(1, len(recs))], r)
	}
	var infos []ShardInfo
	var want []Record
	for i, g := range groups {
		name := ShardName(i, n, ext)
		info, err := WriteFile(ctx, blob.Join(dir, name), g, prov)
		if err != nil {
			t.Fatalf("write %s: %v", name, err)
		}
		if info.File != name || info.Rows != int64(len(g)) || info.Bytes <= 0 || len(info.SHA256) != 64 {
			t.Fatalf("write %s: info %+v for %d records", name, info, len(g))
		}
		infos = append(infos, info)
		want = append(want, g...)
	}
	slices.Reverse(infos) // the manifest sorts them
	if err := WriteManifest(ctx, dir, NewManifest(prov, infos)); err != nil {
		t.Fatalf("WriteManifest: %v", err)
	}
	return want
}

// equalFloats compares float slices bit for bit (so −0 ≠ +0), nil equal to empty.
func equalFloats(a, b []float32) bool {
	return slices.EqualFunc(a, b, func(x, y float32) bool { return math.Float32bits(x) == math.Float32bits(y) })
}

// equalRecords compares records exactly; a nil list equals an empty one.
func equalRecords(t *testing.T, got, want []Record) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.QueryID != w.QueryID || g.QueryLabel != w.QueryLabel || g.QueryCategory != w.QueryCategory || g.QuerySequence != w.QuerySequence || g.NRelevant != w.NRelevant ||
			!slices.Equal(g.NeighborIDs, w.NeighborIDs) || !slices.Equal(g.NeighborLabels, w.NeighborLabels) ||
			!equalFloats(g.Distances, w.Distances) || !equalFloats(g.PairScores, w.PairScores) {
			t.Fatalf("record %d:\n got %+v\nwant %+v", i, g, w)
		}
	}
}

func TestShardAndPartialNames(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{ShardName(0, 1, ExtParquet), "part-00000-of-00001.parquet"},
		{ShardName(3, 16, ExtArrow), "part-00003-of-00016.arrow"},
		{ShardName(3, 16, "arrow"), "part-00003-of-00016.arrow"},
		{PartialName(3, 10, 2, 4, ExtParquet), "tile-00003-of-00010.shard-00002-of-00004.parquet"},
		{PartialURI("gs://b/run", 0, 1, 0, 1, ExtArrow), "gs://b/run/_tmp/tile-00000-of-00001.shard-00000-of-00001.arrow"},
		{PartialURI(filepath.Join("out", "nn"), 1, 2, 1, 2, ExtParquet), filepath.Join("out", "nn", "_tmp", "tile-00001-of-00002.shard-00001-of-00002.parquet")},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	for _, ext := range []string{ExtParquet, ExtArrow} {
		for _, stage := range []string{StageNeighbors, StageReranked} {
			for _, tc := range []struct {
				name         string
				n, k, shards int
			}{
				{"one query", 1, 1, 1},
				{"empty shards among full ones", 3, 4, 6},
				{"k=100 three shards", 200, 100, 3},
				{"no queries", 0, 10, 2},
			} {
				t.Run(ext+"/"+stage+"/"+tc.name, func(t *testing.T) {
					dir := t.TempDir()
					prov := testProvenance(stage, tc.k)
					want := writeOutput(t, ctx, dir, ext, makeRecords(tc.n, prov, 1), tc.shards, prov)
					r, err := Open(ctx, dir)
					if err != nil {
						t.Fatal(err)
					}
					if r.Provenance() != prov || r.Manifest().Rows != int64(tc.n) || len(r.Manifest().Shards) != tc.shards {
						t.Fatalf("manifest %+v, want provenance %+v, %d rows, %d shards", r.Manifest(), prov, tc.n, tc.shards)
					}
					got, err := r.ReadAll(ctx)
					if err != nil {
						t.Fatal(err)
					}
					equalRecords(t, got, want)
					// Each shard alone, through ReadFile.
					var again []Record
					for _, s := range r.Manifest().Shards {
						recs, p, err := ReadFile(ctx, filepath.Join(dir, s.File))
						if err != nil {
							t.Fatal(err)
						}
						if p != prov {
							t.Fatalf("ReadFile %s: provenance %+v, want %+v", s.File, p, prov)
						}
						again = append(again, recs...)
					}
					equalRecords(t, again, want)
				})
			}
		}
	}
}

func TestTestRecordsCoverTheAwkwardCases(t *testing.T) {
	// The round trips above only mean something if the records hold what they claim to.
	prov := testProvenance(StageReranked, 10)
	var empty, full, negative, ties, exactHits, moreRelevant, relevantBeyondEmpty bool
	for _, r := range makeRecords(60, prov, 1) {
		n := len(r.NeighborIDs)
		empty = empty || n == 0
		full = full || n == prov.K
		for j, d := range r.Distances {
			negative = negative || d < 0
			ties = ties || j > 0 && d == r.Distances[j-1]
		}
		var hits int64
		for _, l := range r.NeighborLabels {
			if l == r.QueryLabel {
				hits++
			}
		}
		exactHits = exactHits || hits > 0 && r.NRelevant == hits
		moreRelevant = moreRelevant || hits > 0 && r.NRelevant > hits
		relevantBeyondEmpty = relevantBeyondEmpty || n == 0 && r.NRelevant > 0
	}
	if !empty || !full || !negative || !ties {
		t.Errorf("reranked test records: empty %t, full %t, negative %t, ties %t; want all", empty, full, negative, ties)
	}
	if !exactHits || !moreRelevant || !relevantBeyondEmpty {
		t.Errorf("reranked test records: n_relevant = hits > 0 %t, > hits > 0 %t, > 0 with an empty list %t; want all",
			exactHits, moreRelevant, relevantBeyondEmpty)
	}
	var negZero bool
	for _, r := range makeRecords(60, testProvenance(StageNeighbors, 10), 1) {
		negZero = negZero || len(r.Distances) > 0 && math.Signbit(float64(r.Distances[0]))
	}
	if !negZero {
		t.Error("neighbours test records have no −0 distance")
	}
}

func TestEmptyLists(t *testing.T) {
	// A query whose gallery is empty after exclusions has empty lists, nil or not.
	ctx := context.Background()
	for _, ext := range []string{ExtParquet, ExtArrow} {
		for _, stage := range []string{StageNeighbors, StageReranked} {
			prov := testProvenance(stage, 3)
			recs := []Record{
				{QueryID: "b", QueryLabel: 2},
				{QueryID: "a", QueryLabel: 1, QueryCategory: "mug", NRelevant: 2, NeighborIDs: []string{}, NeighborLabels: []int64{}, Distances: []float32{}, PairScores: []float32{}},
				{QueryID: "c", QueryLabel: 3, NRelevant: 1, NeighborIDs: []string{"x"}, NeighborLabels: []int64{3}, Distances: []float32{0.5}},
			}
			if stage == StageReranked {
				recs[1].PairScores = nil
				recs[2].PairScores = []float32{0.5}
			} else {
				recs[1].PairScores = nil
			}
			uri := filepath.Join(t.TempDir(), "f"+ext)
			if _, err := WriteFile(ctx, uri, recs, prov); err != nil {
				t.Fatalf("%s %s: %v", ext, stage, err)
			}
			got, _, err := ReadFile(ctx, uri)
			if err != nil {
				t.Fatal(err)
			}
			equalRecords(t, got, sorted(recs))
			for _, r := range got[:2] {
				if len(r.NeighborIDs)+len(r.NeighborLabels)+len(r.Distances)+len(r.PairScores) != 0 {
					t.Errorf("%s %s: query %s read back with lists %+v", ext, stage, r.QueryID, r)
				}
			}
		}
	}
}

func TestSchema(t *testing.T) {
	// Read with plain pqarrow and arrow/ipc, not this package's reader: the files must carry
	// the documented schema and metadata.
	ctx := context.Background()
	for _, stage := range []string{StageNeighbors, StageReranked} {
		prov := testProvenance(stage, 8)
		want := Schema(prov)
		if got := want.HasField(colPairScores); got != (stage == StageReranked) {
			t.Errorf("%s: schema has pair_scores = %t", stage, got)
		}
		dir := t.TempDir()
		recs := makeRecords(20, prov, 3)
		pq, arr := filepath.Join(dir, "s.parquet"), filepath.Join(dir, "s.arrow")
		if _, err := WriteShard(ctx, pq, recs, prov); err != nil {
			t.Fatal(err)
		}
		if _, err := WriteIPCShard(ctx, arr, recs, prov); err != nil {
			t.Fatal(err)
		}

		f, err := file.OpenParquetFile(pq, false)
		if err != nil {
			t.Fatal(err)
		}
		fr, err := pqarrow.NewFileReader(f, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
		if err != nil {
			t.Fatal(err)
		}
		tbl, err := fr.ReadTable(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := pqfile.CheckFields(pq, tbl.Schema(), want); err != nil {
			t.Errorf("%s Parquet schema: %v", stage, err)
		}
		if tbl.NumRows() != 20 {
			t.Errorf("%s Parquet: %d rows", stage, tbl.NumRows())
		}
		tbl.Release()
		kv := f.MetaData().KeyValueMetadata()
		keys, values := prov.keyValues()
		for i, k := range keys {
			if v := kv.FindValue(k); v == nil || *v != values[i] {
				t.Errorf("%s Parquet metadata %s = %v, want %q", stage, k, v, values[i])
			}
		}
		f.Close()

		af, err := os.Open(arr)
		if err != nil {
			t.Fatal(err)
		}
		ir, err := ipc.NewFileReader(af)
		if err != nil {
			t.Fatal(err)
		}
		if err := pqfile.CheckFields(arr, ir.Schema(), want); err != nil {
			t.Errorf("%s IPC schema: %v", stage, err)
		}
		md := ir.Schema().Metadata()
		for i, k := range keys {
			if j := md.FindKey(k); j < 0 || md.Values()[j] != values[i] {
				t.Errorf("%s IPC metadata %s missing or not %q", stage, k, values[i])
			}
		}
		ir.Close()
		af.Close()
	}
}

func TestSeveralRowGroups(t *testing.T) {
	defer func(old int) { rowGroupBytes = old }(rowGroupBytes)
	rowGroupBytes = 64 << 10 // 16 rows per group at k = 100
	ctx := context.Background()
	prov := testProvenance(StageReranked, 100)
	recs := makeRecords(70, prov, 4)
	for _, ext := range []string{ExtParquet, ExtArrow} {
		dir := t.TempDir()
		want := writeOutput(t, ctx, dir, ext, recs, 1, prov)
		uri := filepath.Join(dir, ShardName(0, 1, ext))
		var groups int
		if ext == ExtParquet {
			f, err := file.OpenParquetFile(uri, false)
			if err != nil {
				t.Fatal(err)
			}
			groups = f.NumRowGroups()
			f.Close()
		} else {
			f, err := pqfile.OpenIPC(ctx, uri)
			if err != nil {
				t.Fatal(err)
			}
			f.Each(ctx, func(arrow.RecordBatch) error { groups++; return nil })
			f.Close()
		}
		if groups != 5 {
			t.Errorf("%s: %d row groups, want 5 of ≤ %d rows", ext, groups, rowGroupRows(100))
		}
		r, err := Open(ctx, dir)
		if err != nil {
			t.Fatal(err)
		}
		got, err := r.ReadAll(ctx)
		if err != nil {
			t.Fatal(err)
		}
		equalRecords(t, got, want)
	}
}

func TestDeterministic(t *testing.T) {
	ctx := context.Background()
	for _, ext := range []string{ExtParquet, ExtArrow} {
		for _, stage := range []string{StageNeighbors, StageReranked} {
			prov := testProvenance(stage, 50)
			t.Run(ext+" "+stage, func(t *testing.T) {
				stagetest.Deterministic(t, ext, makeRecords(300, prov, 5), makeRecords(300, prov, 5), func(r Record) string { return r.QueryID },
					func(uri string, recs []Record) (ShardInfo, error) { return WriteFile(ctx, uri, recs, prov) },
					func(dir string, shards []ShardInfo) error { return WriteManifest(ctx, dir, NewManifest(prov, shards)) })
			})
		}
	}
}

// validRecords returns three valid records sorted by id: q1 with 3 neighbours, 2 of them
// relevant, and n_relevant 2; q2 with 2 irrelevant ones and n_relevant 4; q3 with none and
// n_relevant 0. Reranked ones have pair scores for their head (top_n 2).
func validRecords(reranked bool) []Record {
	recs := []Record{
		{QueryID: "q1", QueryLabel: 1, NRelevant: 2, NeighborIDs: []string{"g1", "g2", "g3"}, NeighborLabels: []int64{1, 2, 1}, Distances: []float32{0.1, 0.2, 0.2}},
		{QueryID: "q2", QueryLabel: 2, QuerySequence: "s", NRelevant: 4, NeighborIDs: []string{"g3", "g1"}, NeighborLabels: []int64{1, 1}, Distances: []float32{0, 1.5}},
		{QueryID: "q3", QueryLabel: 3},
	}
	if reranked {
		recs[0].PairScores = []float32{0.1, 0.2}
		recs[1].PairScores = []float32{0, 1}
	}
	return recs
}

func TestWriteRejectsBadRecords(t *testing.T) {
	for _, tc := range []struct {
		name     string
		reranked bool
		mutate   func(recs []Record, prov *Provenance)
		wantErr  []string
	}{
		{"descending distances", false, func(r []Record, _ *Provenance) { r[0].Distances[2] = 0.15 },
			[]string{`query "q1"`, "distances[2] = 0.15 is less than distances[1] = 0.2", "ascending"}},
		{"NaN distance", false, func(r []Record, _ *Provenance) { r[1].Distances[1] = float32(math.NaN()) },
			[]string{`query "q2"`, "distances[1] is NaN", "finite"}},
		{"infinite distance", false, func(r []Record, _ *Provenance) { r[1].Distances[1] = float32(math.Inf(1)) },
			[]string{`query "q2"`, "distances[1] is +Inf"}},
		{"negative distance", false, func(r []Record, _ *Provenance) { r[1].Distances[0] = -0.5 },
			[]string{`query "q2"`, "distances[0] is -0.5, want ≥ 0"}},
		{"fewer labels", false, func(r []Record, _ *Provenance) { r[0].NeighborLabels = r[0].NeighborLabels[:2] },
			[]string{`query "q1"`, "3 neighbor ids, 2 labels and 3 distances"}},
		{"fewer distances", false, func(r []Record, _ *Provenance) { r[1].Distances = nil },
			[]string{`query "q2"`, "2 neighbor ids, 2 labels and 0 distances"}},
		{"more than k", false, func(_ []Record, p *Provenance) { p.K = 2 },
			[]string{`query "q1"`, "3 neighbours, more than k = 2"}},
		{"duplicate neighbour", false, func(r []Record, _ *Provenance) { r[0].NeighborIDs[2] = "g1" },
			[]string{`query "q1"`, `neighbour "g1" appears twice, at ranks 0 and 2`}},
		{"empty neighbour id", false, func(r []Record, _ *Provenance) { r[1].NeighborIDs[0] = "" },
			[]string{`query "q2"`, "neighbor_ids[0] is empty"}},
		{"self among neighbours", false, func(r []Record, _ *Provenance) { r[1].NeighborIDs[1] = "q2" },
			[]string{`query "q2"`, "its own neighbour at rank 1", `"self,sequence"`}},
		{"empty query id", false, func(r []Record, _ *Provenance) { r[2].QueryID = "" },
			[]string{"record 2: empty query id"}},
		{"duplicate query id", false, func(r []Record, _ *Provenance) { r[2].QueryID = "q1" },
			[]string{`query "q1": duplicate query id (records 0 and 2)`}},
		{"pair scores in a neighbours file", false, func(r []Record, _ *Provenance) { r[0].PairScores = []float32{0.1} },
			[]string{`query "q1"`, `1 pair scores in a "neighbors" file`}},
		{"too few pair scores", true, func(r []Record, _ *Provenance) { r[1].PairScores = r[1].PairScores[:1] },
			[]string{`query "q2"`, "1 pair scores, want min(top_n 2, 2 neighbours) = 2"}},
		{"pair scores beyond the head", true, func(r []Record, _ *Provenance) { r[0].PairScores = []float32{0.1, 0.2, 0.3} },
			[]string{`query "q1"`, "3 pair scores, want min(top_n 2, 3 neighbours) = 2"}},
		{"pair score above 1", true, func(r []Record, _ *Provenance) { r[1].PairScores[1] = 1.5 },
			[]string{`query "q2"`, "pair_scores[1] is 1.5, want a score in [0, 1]"}},
		{"pair scores out of order", true, func(r []Record, _ *Provenance) { r[0].PairScores = []float32{0.3, 0.2} },
			[]string{`query "q1"`, "pair_scores[1] = 0.2 is less than pair_scores[0] = 0.3"}},
		{"negative n_relevant", false, func(r []Record, _ *Provenance) { r[2].NRelevant = -1 },
			[]string{`query "q3"`, "n_relevant is -1, want ≥ 0 and ≥ the 0 neighbours with the query's label 3"}},
		{"n_relevant below the hits", true, func(r []Record, _ *Provenance) { r[0].NRelevant = 1 },
			[]string{`query "q1"`, "n_relevant is 1, want ≥ 0 and ≥ the 2 neighbours with the query's label 1"}},
		{"every problem at once", false, func(r []Record, _ *Provenance) {
			r[0].Distances[0] = 9
			r[1].NeighborIDs[0] = "g1"
		}, []string{`query "q1"`, `query "q2"`}},
		{"unknown stage", false, func(_ []Record, p *Provenance) { p.Stage = "sorted" }, []string{`stage is "sorted"`}},
		{"k 0", false, func(_ []Record, p *Provenance) { p.K = 0 }, []string{"k must be ≥ 1"}},
		{"unknown exclusion", false, func(_ []Record, p *Provenance) { p.Exclusions = "self,label" }, []string{`exclusions "self,label"`}},
		{"pair model in a neighbours file", false, func(_ []Record, p *Provenance) { p.TopN = 5 }, []string{"has no pair model or top_n"}},
		{"reranked without top_n", true, func(_ []Record, p *Provenance) { p.TopN = 0 }, []string{"top_n must be ≥ 1"}},
		{"reranked without pair model", true, func(_ []Record, p *Provenance) { p.PairModelName = "" }, []string{"without a pair model name"}},
		{"input in a neighbours file", false, func(_ []Record, p *Provenance) { p.InputURI = "gs://runs/nn" },
			[]string{`stage "neighbors" has no input neighbours output, got input_uri "gs://runs/nn"`}},
		{"reranked without input", true, func(_ []Record, p *Provenance) { p.InputURI = "" },
			[]string{"reranked file without the URI of the neighbours output"}},
		{"reranked with a bad input snapshot", true, func(_ []Record, p *Provenance) { p.InputSnapshot = "abc" },
			[]string{`input snapshot "abc" of a reranked file is not 64 hex digits`}},
	} {
		for _, ext := range []string{ExtParquet, ExtArrow} {
			t.Run(tc.name+ext, func(t *testing.T) {
				dir := t.TempDir()
				uri := filepath.Join(dir, ShardName(0, 1, ext))
				stage := StageNeighbors
				if tc.reranked {
					stage = StageReranked
				}
				prov := testProvenance(stage, 3)
				if tc.reranked {
					prov.TopN = 2
				}
				recs := validRecords(tc.reranked)
				if _, err := WriteFile(context.Background(), filepath.Join(t.TempDir(), "ok"+ext), recs, prov); err != nil {
					t.Fatalf("the unmutated records fail: %v", err)
				}
				tc.mutate(recs, &prov)
				_, err := WriteFile(context.Background(), uri, recs, prov)
				if err == nil {
					t.Fatal("write succeeded")
				}
				for _, s := range append(tc.wantErr, uri) {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not mention %q", err, s)
					}
				}
				if files := stagetest.DirFiles(t, dir); len(files) != 0 {
					t.Errorf("failed write left files %v", files)
				}
			})
		}
	}
}

func TestNegativeDistancesOnlyInRerankedFiles(t *testing.T) {
	// OML's rescaling can push a reranked head below zero; a neighbours file cannot.
	recs := validRecords(true)
	recs[1].Distances[0] = -rerankEps
	prov := testProvenance(StageReranked, 3)
	prov.TopN = 2
	uri := filepath.Join(t.TempDir(), "r.parquet")
	if _, err := WriteShard(context.Background(), uri, recs, prov); err != nil {
		t.Fatalf("reranked file with a head below zero: %v", err)
	}
	got, _, err := ReadFile(context.Background(), uri)
	if err != nil {
		t.Fatal(err)
	}
	equalRecords(t, got, recs)
}

func TestWrongExtension(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	prov := testProvenance(StageNeighbors, 3)
	for _, tc := range []struct {
		write func() error
		want  string
	}{
		{func() error { _, err := WriteShard(ctx, filepath.Join(dir, "a.arrow"), nil, prov); return err }, "ending in .parquet"},
		{func() error { _, err := WriteIPCShard(ctx, filepath.Join(dir, "a.parquet"), nil, prov); return err }, "ending in .arrow"},
		{func() error { _, err := WriteFile(ctx, filepath.Join(dir, "a.csv"), nil, prov); return err }, "ending in .parquet (Parquet) or .arrow (Arrow IPC)"},
		{func() error { _, _, err := ReadFile(ctx, filepath.Join(dir, "a.feather")); return err }, "ending in .parquet (Parquet) or .arrow (Arrow IPC)"},
	} {
		if err := tc.write(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want an error mentioning %q", err, tc.want)
		}
	}
	if files := stagetest.DirFiles(t, dir); len(files) != 0 {
		t.Errorf("files written: %v", files)
	}
}

func TestReadFileChecksRecords(t *testing.T) {
	// A file from another writer (here: pqfile directly, without this package's checks) with
	// a bad list is refused on read, naming the file, row and query.
	ctx := context.Background()
	prov := testProvenance(StageNeighbors, 3)
	for _, tc := range []struct {
		name   string
		mutate func(r []Record)
		want   string
	}{
		{"descending", func(r []Record) { r[1].Distances = []float32{1, 0.5} }, `row 1: query "q2": distances[1] = 0.5 is less than distances[0] = 1`},
		{"ragged", func(r []Record) { r[0].NeighborLabels = r[0].NeighborLabels[:1] }, `row 0: query "q1": 3 neighbor ids, 1 labels`},
		{"duplicate query", func(r []Record) { r[2].QueryID = "q2" }, `row 2: query "q2" after "q2", want rows sorted by unique query id`},
		{"n_relevant below the hits", func(r []Record) { r[0].NRelevant = 0 }, `row 0: query "q1": n_relevant is 0, want ≥ 0 and ≥ the 2 neighbours`},
	} {
		for _, ext := range []string{ExtParquet, ExtArrow} {
			uri := filepath.Join(t.TempDir(), "bad"+ext)
			recs := validRecords(false)
			tc.mutate(recs)
			spec := pqfile.Spec[Record]{Schema: Schema(prov), Compare: compare, Append: appendRecord, RowGroupRows: 2}
			write := pqfile.Write[Record]
			if ext == ExtArrow {
				write = pqfile.WriteIPC[Record]
			}
			if _, err := write(ctx, uri, recs, spec); err != nil {
				t.Fatal(err)
			}
			_, _, err := ReadFile(ctx, uri)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), uri) {
				t.Errorf("%s%s: ReadFile = %v, want an error naming the file and %q", tc.name, ext, err, tc.want)
			}
		}
	}
}

func TestReadFileRefusesOtherFiles(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	rej := filepath.Join(dir, "rejects.parquet")
	if _, err := rejects.WriteShard(ctx, rej, nil); err != nil {
		t.Fatal(err)
	}
	// Metadata of a reranked file on the columns of a neighbours file.
	mixed := filepath.Join(dir, "mixed.arrow")
	keys, values := testProvenance(StageReranked, 3).keyValues()
	md := arrow.NewMetadata(keys, values)
	spec := pqfile.Spec[Record]{
		Schema:  arrow.NewSchema(Schema(testProvenance(StageNeighbors, 3)).Fields(), &md),
		Compare: compare, Append: appendRecord, RowGroupRows: 4,
	}
	if _, err := pqfile.WriteIPC(ctx, mixed, validRecords(false), spec); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(dir, "garbage.arrow")
	if err := os.WriteFile(garbage, []byte("PAR1 not arrow"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ uri, want string }{
		{rej, `stir.format is "stir.rejects/v1", want "stir.neighbors/v1" (not a neighbour file)`},
		{mixed, "8 columns, want 9"},
		{garbage, "not a readable Arrow IPC file"},
		{filepath.Join(dir, "missing.parquet"), "no such file"},
	} {
		if _, _, err := ReadFile(ctx, tc.uri); err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.uri) {
			t.Errorf("ReadFile(%s) = %v, want an error naming the file and %q", tc.uri, err, tc.want)
		}
	}
}

func TestEachStopsOnError(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	prov := testProvenance(StageNeighbors, 5)
	writeOutput(t, ctx, dir, ExtParquet, makeRecords(30, prov, 3), 2, prov)
	r, err := Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	stagetest.EachStopsOnError(t, func(fn func(Record) error) error { return r.Each(ctx, fn) }, 20)
}

func TestFailedWriteKeepsPreviousFile(t *testing.T) {
	prov := testProvenance(StageNeighbors, 8)
	for _, ext := range []string{ExtParquet, ExtArrow} {
		t.Run(ext, func(t *testing.T) {
			stagetest.FailedWriteKeepsPrevious(t, filepath.Join(t.TempDir(), ShardName(0, 1, ext)), makeRecords(10, prov, 6), makeRecords(20, prov, 7),
				func(ctx context.Context, uri string, recs []Record) (ShardInfo, error) {
					return WriteFile(ctx, uri, recs, prov)
				})
		})
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	prov := testProvenance(StageNeighbors, 4)
	recs := makeRecords(20, prov, 1)
	for _, tc := range []struct {
		name    string
		setup   func(t *testing.T, dir string)
		wantErr []string
	}{
		{"empty directory", func(t *testing.T, dir string) {}, []string{errIncomplete, ManifestFile}},
		{"shards without manifest", func(t *testing.T, dir string) {
			if _, err := WriteShard(ctx, filepath.Join(dir, ShardName(0, 1, ExtParquet)), recs, prov); err != nil {
				t.Fatal(err)
			}
		}, []string{errIncomplete}},
		{"shard missing", func(t *testing.T, dir string) {
			writeOutput(t, ctx, dir, ExtArrow, recs, 2, prov)
			os.Remove(filepath.Join(dir, ShardName(1, 2, ExtArrow)))
		}, []string{ShardName(1, 2, ExtArrow), "no such file"}},
		{"shard from other embeddings", func(t *testing.T, dir string) {
			writeOutput(t, ctx, dir, ExtParquet, recs, 2, prov)
			other := prov
			other.EmbeddingsSnapshot = strings.Repeat("77", 32)
			if _, err := WriteShard(ctx, filepath.Join(dir, ShardName(0, 2, ExtParquet)), sorted(recs)[:10], other); err != nil {
				t.Fatal(err)
			}
		}, []string{ShardName(0, 2, ExtParquet), "stir.embeddings.snapshot", strings.Repeat("77", 32)}},
		{"shard from another catalog", func(t *testing.T, dir string) {
			writeOutput(t, ctx, dir, ExtArrow, recs, 2, prov)
			other := prov
			other.CatalogURI = "gs://data/other.csv"
			if _, err := WriteIPCShard(ctx, filepath.Join(dir, ShardName(1, 2, ExtArrow)), sorted(recs)[10:], other); err != nil {
				t.Fatal(err)
			}
		}, []string{ShardName(1, 2, ExtArrow), `stir.catalog.uri is "gs://data/other.csv", want "gs://data/sop/catalog.csv"`}},
		{"shard rewritten after the manifest", func(t *testing.T, dir string) {
			writeOutput(t, ctx, dir, ExtArrow, recs, 2, prov)
			if _, err := WriteIPCShard(ctx, filepath.Join(dir, ShardName(0, 2, ExtArrow)), sorted(recs)[:3], prov); err != nil {
				t.Fatal(err)
			}
		}, []string{ShardName(0, 2, ExtArrow), "manifest says"}},
		{"wrong format", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, ManifestFile), []byte(`{"format":"stir.embeddings/v1","provenance":{"stage":"neighbors","model_name":"m","k":1,"distance":"euclidean"},"rows":0,"shards":[]}`), 0o644)
		}, []string{`format is "stir.embeddings/v1"`}},
		{"partial stage", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, ManifestFile), []byte(`{"format":"stir.neighbors/v1","provenance":{"stage":"partial","model_name":"m","k":1,"distance":"euclidean"},"rows":0,"shards":[]}`), 0o644)
		}, []string{"partial files are merged, never listed"}},
		{"unknown manifest field", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, ManifestFile), []byte(`{"format":"stir.neighbors/v1","colour":1}`), 0o644)
		}, []string{`unknown field "colour"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.setup(t, dir)
			_, err := Open(ctx, dir)
			if err == nil {
				t.Fatal("Open succeeded")
			}
			for _, s := range tc.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
}

func TestManifestValidate(t *testing.T) {
	good := func() Manifest {
		return NewManifest(testProvenance(StageReranked, 10), []ShardInfo{
			{File: ShardName(1, 2, ExtArrow), Rows: 3, Bytes: 100, SHA256: strings.Repeat("a", 64)},
			{File: ShardName(0, 2, ExtArrow), Rows: 2, Bytes: 90, SHA256: strings.Repeat("b", 64)},
		})
	}
	if m := good(); m.Rows != 5 || m.Shards[0].File != ShardName(0, 2, ExtArrow) {
		t.Fatalf("NewManifest: %+v", m)
	}
	for _, tc := range []struct {
		name   string
		mutate func(m *Manifest)
		want   string
	}{
		{"rows", func(m *Manifest) { m.Rows = 4 }, "rows is 4 but the shards hold 5"},
		{"partial in _tmp", func(m *Manifest) { m.Shards[0].File = TmpDir + "/" + PartialName(0, 1, 0, 1, ExtArrow) }, "not a plain"},
		{"other extension", func(m *Manifest) { m.Shards[0].File = "part-0.csv" }, "not a plain *.parquet or *.arrow name"},
		{"k", func(m *Manifest) { m.Provenance.K = 0 }, "k must be ≥ 1"},
		{"format", func(m *Manifest) { m.Format = "v0" }, `format is "v0"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := good()
			tc.mutate(&m)
			err := WriteManifest(context.Background(), t.TempDir(), m)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("WriteManifest = %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}

func TestGCSRoundTrip(t *testing.T) {
	ctx := context.Background()
	for _, ext := range []string{ExtParquet, ExtArrow} {
		dir := "gs://" + testBucket + "/runs/" + t.Name() + "/" + ext[1:]
		prov := testProvenance(StageReranked, 20)
		want := writeOutput(t, ctx, dir, ext, makeRecords(90, prov, 11), 3, prov)
		objs, err := blob.List(ctx, dir+"/")
		if err != nil {
			t.Fatal(err)
		}
		if len(objs) != 4 {
			t.Fatalf("objects under %s: %v, want 3 shards and the manifest", dir, objs)
		}
		r, err := Open(ctx, dir)
		if err != nil {
			t.Fatal(err)
		}
		got, err := r.ReadAll(ctx)
		if err != nil {
			t.Fatal(err)
		}
		equalRecords(t, got, want)

		// A shard replaced after the manifest is caught by Open (size).
		if _, err := WriteFile(ctx, blob.Join(dir, ShardName(0, 3, ext)), want[:2], prov); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(ctx, dir); err == nil || !strings.Contains(err.Error(), "manifest says") {
			t.Fatalf("Open after a shard was replaced: %v", err)
		}
	}
	if _, err := Open(ctx, "gs://"+testBucket+"/nothing-here"); err == nil || !strings.Contains(err.Error(), errIncomplete) {
		t.Fatalf("Open of an empty prefix: %v", err)
	}
}

func TestManifestSHA256(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	prov := testProvenance(StageNeighbors, 3)
	writeOutput(t, ctx, dir, ExtParquet, validRecords(false), 1, prov)
	data, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	got, err := ManifestSHA256(ctx, dir)
	if err != nil || got != hex.EncodeToString(sum[:]) {
		t.Fatalf("ManifestSHA256 = %q, %v; want %x", got, err, sum)
	}
	if _, err := ManifestSHA256(ctx, t.TempDir()); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("ManifestSHA256 of an empty directory: %v, want fs.ErrNotExist", err)
	}
}
