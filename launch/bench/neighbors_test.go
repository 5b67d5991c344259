package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stirpipe/stirpipe/models/knn"
	"github.com/stirpipe/stirpipe/models/ort"
	"github.com/stirpipe/stirpipe/schemas/catalog"
	"github.com/stirpipe/stirpipe/schemas/embeddings"
)

func TestRandomVectors(t *testing.T) {
	const n, d = 50, 24
	a, b, other := randomVectors(n, d, 7), randomVectors(n, d, 7), randomVectors(n, d, 8)
	if len(a) != n*d {
		t.Fatalf("len = %d, want %d", len(a), n*d)
	}
	if !slices.Equal(a, b) {
		t.Error("the same seed gave different vectors")
	}
	if slices.Equal(a, other) {
		t.Error("seeds 7 and 8 gave the same vectors")
	}
	for i := range n {
		var sq float64
		for _, v := range a[i*d : (i+1)*d] {
			sq += float64(v) * float64(v)
		}
		if math.Abs(math.Sqrt(sq)-1) > 1e-6 {
			t.Errorf("row %d has norm %v, want 1", i, math.Sqrt(sq))
		}
	}
}

func TestF32Encoding(t *testing.T) {
	x := []float32{1, -2.5, float32(math.Pi), 0}
	b := encodeF32(x)
	if len(b) != 16 {
		t.Fatalf("%d bytes, want 16", len(b))
	}
	if got := binary.LittleEndian.Uint32(b[4:]); got != math.Float32bits(-2.5) {
		t.Errorf("second value encoded as %#x, want little-endian %#x", got, math.Float32bits(-2.5))
	}
	if back := decodeF32(b); !slices.Equal(back, x) {
		t.Errorf("round trip gave %v, want %v", back, x)
	}
}

func TestRowIDs(t *testing.T) {
	ids := rowIDs(1001)
	if !slices.IsSorted(ids) {
		t.Error("ids are not in row order")
	}
	for _, row := range []int{0, 7, 1000} {
		got, err := parseRowID(ids[row])
		if err != nil || got != row {
			t.Errorf("parseRowID(%q) = %d, %v; want %d", ids[row], got, err, row)
		}
	}
	for _, bad := range []string{"", "x12", "i", "i-3", "i1a"} {
		if _, err := parseRowID(bad); err == nil {
			t.Errorf("parseRowID(%q) accepted", bad)
		}
	}
}

func TestPrepareVectors(t *testing.T) {
	ctx := context.Background()
	c := neighborsConfig{Rows: 103, Dim: 8, Seed: 3, Files: 4, Work: t.TempDir()}
	var log bytes.Buffer
	x, first, err := prepareVectors(ctx, c, &log)
	if err != nil {
		t.Fatal(err)
	}
	if first.Reused || first.EmbReused {
		t.Errorf("first call reused data: %+v", first)
	}
	raw, err := os.ReadFile(first.File)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(decodeF32(raw), randomVectors(c.Rows, c.Dim, c.Seed)) || !slices.Equal(x, decodeF32(raw)) {
		t.Error("X.f32 does not hold the seeded vectors")
	}
	x2, again, err := prepareVectors(ctx, c, &log)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Reused || !again.EmbReused || again.SHA256 != first.SHA256 || !slices.Equal(x, x2) {
		t.Errorf("second call: %+v, want everything reused with the same hash %s", again, first.SHA256)
	}

	r, err := embeddings.Open(ctx, first.Embeddings)
	if err != nil {
		t.Fatal(err)
	}
	if m := r.Manifest(); m.Rows != int64(c.Rows) || len(m.Shards) != c.Files || !m.Provenance.Normalized || m.Provenance.Dim != c.Dim {
		t.Errorf("manifest %+v: want %d rows in %d files, normalised, dim %d", m, c.Rows, c.Files, c.Dim)
	}
	row := 0
	err = r.Each(ctx, func(rec embeddings.Record) error {
		if rec.Row.ID != rowID(row) || rec.Row.Split != catalog.SplitValidation || !rec.Row.IsQuery || !rec.Row.IsGallery {
			t.Errorf("record %d: %+v, want id %s, a validation query and gallery row", row, rec.Row, rowID(row))
		}
		if !slices.Equal(rec.Embedding, x[row*c.Dim:(row+1)*c.Dim]) {
			t.Errorf("record %d: embedding differs from X.f32", row)
		}
		row++
		return nil
	})
	if err != nil || row != c.Rows {
		t.Fatalf("read %d records (%v), want %d", row, err, c.Rows)
	}

	// Other options regenerate.
	c.Seed = 4
	_, third, err := prepareVectors(ctx, c, &log)
	if err != nil {
		t.Fatal(err)
	}
	if third.Reused || third.SHA256 == first.SHA256 {
		t.Errorf("seed 4 reused seed 3's vectors: %+v", third)
	}
}

func TestReadFAISSIDs(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "ids.i64")
	want := [][]int{{4, 1, 2}, {0, 3, 9}}
	var b []byte
	for _, l := range want {
		for _, v := range l {
			b = binary.LittleEndian.AppendUint64(b, uint64(v))
		}
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := readFAISSIDs(p, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("got %v, want %v", got, want)
	}
	if _, err := readFAISSIDs(p, 2, 4); err == nil || !strings.Contains(err.Error(), "want 2×4") {
		t.Errorf("wrong shape: err = %v, want a size error", err)
	}
}

func TestLastJSONLine(t *testing.T) {
	out := []byte("warning: x\n{\"a\": 1}\nnoise\n  {\"b\": 2}  \n")
	if got := string(lastJSONLine(out)); got != `{"b": 2}` {
		t.Errorf("got %q", got)
	}
	if got := lastJSONLine([]byte("no json\n")); got != nil {
		t.Errorf("got %q, want nil", got)
	}
}

// selfLists runs the real engine's SearchSelf on x.
func selfLists(t *testing.T, x []float32, dim, k int) [][]knn.Neighbor {
	t.Helper()
	e, err := knn.NewEngine(knn.Options{K: k, Normalized: true, ExcludeSelf: true, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ix, err := knn.NewIndex(knn.Gallery{IDs: rowIDs(len(x) / dim), Vectors: x, Dim: dim})
	if err != nil {
		t.Fatal(err)
	}
	lists, err := e.SearchSelf(ix)
	if err != nil {
		t.Fatal(err)
	}
	return lists
}

func rowsOf(lists [][]knn.Neighbor) [][]int {
	out := make([][]int, len(lists))
	for i, l := range lists {
		for _, nb := range l {
			out[i] = append(out[i], nb.Index)
		}
	}
	return out
}

func TestCompareWithFAISS(t *testing.T) {
	const n, dim, k = 300, 16, 10
	x := randomVectors(n, dim, 11)
	// Row 1 duplicates row 0: every query other than these two finds them at equal distances.
	copy(x[dim:2*dim], x[:dim])
	engine := selfLists(t, x, dim, k)
	// A query whose list holds both duplicates, adjacent.
	q := -1
	for i := 2; i < n && q < 0; i++ {
		for j := 0; j+1 < k; j++ {
			if engine[i][j].Index == 0 && engine[i][j+1].Index == 1 {
				q = i
			}
		}
	}
	if q < 0 {
		t.Fatal("no query lists both duplicates; change the seed")
	}
	far := -1 // a row not in q's list and farther than its K-th
	for r := n - 1; r >= 0 && far < 0; r-- {
		if r != q && !slices.ContainsFunc(engine[q], func(nb knn.Neighbor) bool { return nb.Index == r }) {
			far = r
		}
	}

	tests := []struct {
		name   string
		faiss  func([][]int) // edits FAISS's lists (a copy of the engine's)
		check  func(c idCompare) bool
		ties   bool
		differ int
	}{
		{"identical", func([][]int) {}, func(c idCompare) bool { return c.Identical == n && c.Swaps == 0 }, true, 0},
		{"tie swapped", func(f [][]int) {
			j := slices.Index(f[q], 0)
			f[q][j], f[q][j+1] = f[q][j+1], f[q][j]
		}, func(c idCompare) bool {
			return c.SameSet == 1 && c.Swaps == 2 && c.SwapsTied == 2 && c.SwapsULP == 2 && c.MaxSwapGap == 0
		}, true, 1},
		{"far swap", func(f [][]int) {
			f[q][0], f[q][k-1] = f[q][k-1], f[q][0]
		}, func(c idCompare) bool {
			return c.SameSet == 1 && c.Swaps == 2 && c.SwapsBound == 0 && c.MaxSwapGap > 1e-3
		}, false, 1},
		{"far row listed", func(f [][]int) { f[q][k-1] = far }, func(c idCompare) bool {
			return c.Different == 1 && c.OnlyFAISS == 1 && c.SetBound == 0 && c.EngineMissed == 0 && c.MaxSetGap > 0
		}, false, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := rowsOf(engine)
			tt.faiss(f)
			c := compareWithFAISS(x, dim, engine, f, k)
			if c.Identical+c.SameSet+c.Different != n || len(c.differing) != tt.differ {
				t.Errorf("counts %d+%d+%d, %d differing; want %d queries, %d differing", c.Identical, c.SameSet, c.Different, len(c.differing), n, tt.differ)
			}
			if !tt.check(c) {
				t.Errorf("comparison %+v does not match the edit", c)
			}
			if c.allNearTies() != tt.ties {
				t.Errorf("allNearTies = %v, want %v (%+v)", c.allNearTies(), tt.ties, c)
			}
		})
	}

	// A list missing the engine's K-th row for a nearer one FAISS found: the engine missed it.
	f := rowsOf(engine)
	lists := slices.Clone(engine)
	lists[q] = slices.Clone(engine[q])
	lists[q][k-1] = knn.Neighbor{Index: far, Dist: float32(exactDist(x, dim, q, far))}
	c := compareWithFAISS(x, dim, lists, f, k)
	if c.EngineMissed != 1 {
		t.Errorf("engine list with a far row: EngineMissed = %d, want 1", c.EngineMissed)
	}
}

func TestExactCheck(t *testing.T) {
	const n, dim, k = 200, 8, 5
	x := randomVectors(n, dim, 5)
	engine := selfLists(t, x, dim, k)
	c := idCompare{K: k, differing: []int{0, 1, 2, 3}}
	c.exactCheck(x, dim, engine, 3)
	if c.ExactChecked != 3 || c.ExactMatches != 3 {
		t.Errorf("checked %d, matched %d; want 3 and 3", c.ExactChecked, c.ExactMatches)
	}
	bad := slices.Clone(engine)
	bad[1] = slices.Clone(engine[1])
	bad[1][0], bad[1][1] = bad[1][1], bad[1][0]
	c = idCompare{K: k, differing: []int{0, 1, 2}}
	c.exactCheck(x, dim, bad, 10)
	if c.ExactChecked != 3 || c.ExactMatches != 2 {
		t.Errorf("with one list out of order: checked %d, matched %d; want 3 and 2", c.ExactChecked, c.ExactMatches)
	}
}

// TestNeighborsBudget: the stage's memory budget is one shard's vectors and a fixed allowance.
func TestNeighborsBudget(t *testing.T) {
	if got := (neighborsConfig{ShardSize: 20000, Dim: 384}).budgetBytes(); got != 20000*384*4+300_000_000 {
		t.Errorf("budget = %d, want shard bytes + 300 MB", got)
	}
}

// TestBenchNeighborsEndToEnd runs the whole benchmark on a small data set: the engine,
// FAISS (when Debian's python3-faiss is installed), and the stage as a child process.
func TestBenchNeighborsEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the stir program")
	}
	lib, err := ort.LibraryPath("")
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	c := neighborsConfig{Rows: 1200, Dim: 32, K: 10, Seed: 2, Threads: 2, Reps: 2, IndexReps: 1, Files: 4,
		ShardSize: 500, Work: work, Library: lib, Python: "/usr/bin/python3", Script: "/work/shared/anchors/faiss_flat.py",
		OpenBLAS: filepath.Join(repoRoot(t), ".local/openblas"), Stage: true, ExactCheck: 5, JSON: filepath.Join(work, "r.json")}
	c.FAISS = exec.Command(c.Python, "-c", "import faiss").Run() == nil && fileExists(c.Script)
	if !c.FAISS {
		t.Log("python3-faiss or the reference script is missing: FAISS not compared")
	}
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	res, err := benchNeighbors(context.Background(), c, &log)
	if err != nil {
		t.Fatalf("%v\nlog:\n%s", err, log.String())
	}
	if len(res.Self) != 2 || len(res.Index) != 1 || res.IndexEqualsSelf == nil || !*res.IndexEqualsSelf {
		t.Errorf("%d SearchSelf and %d SearchIndex runs, index equals self %v; want 2, 1, true", len(res.Self), len(res.Index), res.IndexEqualsSelf)
	}
	st := res.Stage
	if st == nil || st.WallS <= 0 || st.PeakRSSKiB <= 0 || st.Compared != c.Rows || st.IDsDiffer != 0 || st.DistsDiffer != 0 || st.MissingLists != 0 {
		t.Errorf("stage %+v: want a timed run whose %d lists all equal the engine's", st, c.Rows)
	}
	if c.FAISS {
		v := res.VsFAISS
		if res.FAISS.Result.WallMedS <= 0 || res.Summary.Ratio <= 0 || v == nil {
			t.Fatalf("FAISS %+v, ratio %v: want a timing and a comparison", res.FAISS, res.Summary.Ratio)
		}
		if v.Identical+v.SameSet+v.Different != c.Rows || v.EngineMissed != 0 || !v.allNearTies() || v.ExactMatches != v.ExactChecked {
			t.Errorf("vs FAISS %+v: want every query classified, only near-ties, the engine exact", v)
		}
	}
	var out bytes.Buffer
	printNeighborsReport(&out, res)
	checkReport(t, out.String(), "engine SearchSelf", "engine SearchIndex, one-sided", "neighbours stage", "peak RSS (VmHWM)", "budget", "load average at start")
	back := jsonRoundTrip(t, c.JSON, res)
	if back.Summary.SelfWall != res.Summary.SelfWall || back.Stage == nil || back.Stage.PeakRSSKiB != st.PeakRSSKiB {
		t.Errorf("results JSON round trip lost data: %+v", back.Summary)
	}
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
