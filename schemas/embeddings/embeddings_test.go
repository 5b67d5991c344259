package embeddings

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/stirpipe/stirpipe/schemas/blob"
	"github.com/stirpipe/stirpipe/schemas/blob/blobtest"
	"github.com/stirpipe/stirpipe/schemas/catalog"
	"github.com/stirpipe/stirpipe/schemas/internal/stagetest"
)

const testBucket = "stir-embeddings-test"

func TestMain(m *testing.M) { blobtest.Main(m.Run, testBucket) }

func testProvenance(dim int) Provenance {
	return Provenance{
		ModelName:       "vit-tiny-triplet",
		ModelSHA256:     strings.Repeat("ab", 32),
		Dim:             dim,
		Normalized:      true,
		Distance:        "euclidean",
		Preprocess:      `{"resize":"shorter_side","resize_to":256,"filter":"bicubic","crop_size":224}`,
		CatalogURI:      "gs://data/sop/df.csv",
		CatalogSnapshot: strings.Repeat("0f", 32),
		Producer:        "embeddings_test",
	}
}

// makeRecords returns n records in a shuffled order, with every kind of optional value and
// awkward float values (−0, subnormals, extremes) in the embeddings.
func makeRecords(n, dim int, seed uint64) []Record {
	rng := rand.New(rand.NewPCG(seed, 7))
	special := []float32{float32(math.Copysign(0, -1)), math.SmallestNonzeroFloat32, -math.MaxFloat32, 1, 1e-38}
	recs := make([]Record, n)
	for i := range recs {
		row := catalog.Row{
			ID:        fmt.Sprintf("item-%06d", i),
			Line:      int64(i + 2),
			Label:     int64(i / 3),
			Path:      fmt.Sprintf("images/%d/%d.jpg", i/3, i),
			Split:     []string{"train", "validation"}[i%2],
			IsQuery:   i%2 == 1,
			IsGallery: i%4 != 1,
		}
		if i%3 != 0 {
			row.Category = []string{"bicycle", "chair", "mug"}[i%3]
		}
		if i%5 == 0 {
			row.Sequence = fmt.Sprintf("seq-%d", i/10)
		}
		if i%4 == 0 {
			// A box at the origin: zero coordinates must stay distinct from "no box".
			row.HasBox, row.X1, row.Y1, row.X2, row.Y2 = true, 0, 0, int64(10+i), int64(20+i)
		}
		emb := make([]float32, dim)
		for j := range emb {
			emb[j] = float32(rng.NormFloat64())
		}
		if i < len(special) {
			emb[0] = special[i]
		}
		recs[i] = Record{Row: row, Embedding: emb}
		if i%7 != 3 { // some rows without a fingerprint
			recs[i].Fingerprint = fmt.Sprintf("md5:%032x", i)
		}
	}
	rng.Shuffle(n, func(i, j int) { recs[i], recs[j] = recs[j], recs[i] })
	return recs
}

// writeOutput writes recs as n shards plus a manifest under dir and returns the records in
// the order a reader yields them (shard by shard, by id).
func writeOutput(t *testing.T, ctx context.Context, dir string, recs []Record, n int, prov Provenance) []Record {
	t.Helper()
	groups := make([][]Record, n)
	for _, r := range recs {
		s := stagetest.ShardOf(r.Row.ID, n)
		groups[s] = append(groups[s], r)
	}
	var infos []ShardInfo
	var want []Record
	for i, g := range groups {
		info, err := WriteShard(ctx, blob.Join(dir, ShardName(i, n)), g, prov)
		if err != nil {
			t.Fatalf("WriteShard %d: %v", i, err)
		}
		if info.File != ShardName(i, n) || info.Rows != int64(len(g)) || info.Bytes <= 0 || len(info.SHA256) != 64 {
			t.Fatalf("WriteShard %d: info %+v for %d records", i, info, len(g))
		}
		infos = append(infos, info)
		sorted := slices.Clone(g)
		slices.SortFunc(sorted, func(a, b Record) int { return strings.Compare(a.Row.ID, b.Row.ID) })
		want = append(want, sorted...)
	}
	slices.Reverse(infos) // the manifest sorts them
	if err := WriteManifest(ctx, dir, NewManifest(prov, infos)); err != nil {
		t.Fatalf("WriteManifest: %v", err)
	}
	return want
}

// equalRecords compares records exactly, embeddings bit for bit (so −0 ≠ +0).
func equalRecords(t *testing.T, got, want []Record) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].Row != want[i].Row {
			t.Fatalf("record %d: row\n got %+v\nwant %+v", i, got[i].Row, want[i].Row)
		}
		g, w := got[i].Embedding, want[i].Embedding
		if len(g) != len(w) {
			t.Fatalf("record %d (%s): embedding length %d, want %d", i, want[i].Row.ID, len(g), len(w))
		}
		for j := range w {
			if math.Float32bits(g[j]) != math.Float32bits(w[j]) {
				t.Fatalf("record %d (%s): embedding[%d] = %v, want %v", i, want[i].Row.ID, j, g[j], w[j])
			}
		}
	}
}

func TestShardName(t *testing.T) {
	for _, tc := range []struct {
		i, n int
		want string
	}{
		{0, 1, "part-00000-of-00001.parquet"},
		{3, 16, "part-00003-of-00016.parquet"},
		{99999, 100000, "part-99999-of-100000.parquet"},
	} {
		if got := ShardName(tc.i, tc.n); got != tc.want {
			t.Errorf("ShardName(%d, %d) = %q, want %q", tc.i, tc.n, got, tc.want)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name           string
		n, dim, shards int
	}{
		{"one record one shard", 1, 4, 1},
		{"empty shards among full ones", 5, 3, 8},
		{"D=384 four shards", 300, 384, 4},
		{"no records", 0, 8, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			prov := testProvenance(tc.dim)
			want := writeOutput(t, ctx, dir, makeRecords(tc.n, tc.dim, 1), tc.shards, prov)
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
		})
	}
}

func TestSeveralRowGroups(t *testing.T) {
	defer func(old int) { rowGroupBytes = old }(rowGroupBytes)
	rowGroupBytes = 64 << 10 // 1024 rows per group at dim 4
	ctx := context.Background()
	dir := t.TempDir()
	want := writeOutput(t, ctx, dir, makeRecords(5000, 4, 2), 1, testProvenance(4))
	f, err := file.OpenParquetFile(filepath.Join(dir, ShardName(0, 1)), false)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.NumRowGroups() != 5 {
		t.Fatalf("%d row groups, want 5 of ≤ %d rows", f.NumRowGroups(), rowGroupRows(4))
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

func TestEachStopsOnError(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	writeOutput(t, ctx, dir, makeRecords(50, 2, 3), 2, testProvenance(2))
	r, err := Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	stagetest.EachStopsOnError(t, func(fn func(Record) error) error { return r.Each(ctx, fn) }, 7)
}

func TestDeterministic(t *testing.T) {
	ctx := context.Background()
	prov := testProvenance(384)
	stagetest.Deterministic(t, ".parquet", makeRecords(400, 384, 4), makeRecords(400, 384, 4), func(r Record) string { return r.Row.ID },
		func(uri string, recs []Record) (ShardInfo, error) { return WriteShard(ctx, uri, recs, prov) },
		func(dir string, shards []ShardInfo) error { return WriteManifest(ctx, dir, NewManifest(prov, shards)) })
}

func TestWriteShardRejectsBadRecords(t *testing.T) {
	const dim = 4
	for _, tc := range []struct {
		name    string
		mutate  func(recs []Record, prov *Provenance)
		wantErr []string
	}{
		{"NaN", func(r []Record, _ *Provenance) { r[3].Embedding[2] = float32(math.NaN()) },
			[]string{"item-000003", "value 2 is NaN", "finite"}},
		{"+Inf", func(r []Record, _ *Provenance) { r[1].Embedding[0] = float32(math.Inf(1)) },
			[]string{"item-000001", "+Inf"}},
		{"short embedding", func(r []Record, _ *Provenance) { r[2].Embedding = r[2].Embedding[:3] },
			[]string{"item-000002", "has 3 values, want dim 4"}},
		{"long embedding", func(r []Record, _ *Provenance) { r[0].Embedding = append(r[0].Embedding, 1) },
			[]string{"item-000000", "has 5 values, want dim 4"}},
		{"empty id", func(r []Record, _ *Provenance) { r[4].Row.ID = "" },
			[]string{"empty item id", "catalog line 6"}},
		{"duplicate id", func(r []Record, _ *Provenance) { r[4].Row.ID = r[5].Row.ID },
			[]string{`item "item-000005"`, "duplicate"}},
		{"every problem at once", func(r []Record, _ *Provenance) {
			r[0].Embedding[0] = float32(math.NaN())
			r[1].Embedding = nil
		}, []string{"item-000000", "item-000001"}},
		{"no model name", func(_ []Record, p *Provenance) { p.ModelName = "" }, []string{"model name is empty"}},
		{"dim 0", func(_ []Record, p *Provenance) { p.Dim = 0 }, []string{"dim must be ≥ 1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			uri := filepath.Join(dir, ShardName(0, 1))
			recs := makeRecords(6, dim, 5)
			slices.SortFunc(recs, func(a, b Record) int { return strings.Compare(a.Row.ID, b.Row.ID) })
			prov := testProvenance(dim)
			tc.mutate(recs, &prov)
			_, err := WriteShard(context.Background(), uri, recs, prov)
			if err == nil {
				t.Fatal("WriteShard succeeded")
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

func TestFailedWriteKeepsPreviousFile(t *testing.T) {
	prov := testProvenance(8)
	stagetest.FailedWriteKeepsPrevious(t, filepath.Join(t.TempDir(), ShardName(0, 1)), makeRecords(10, 8, 6), makeRecords(20, 8, 7),
		func(ctx context.Context, uri string, recs []Record) (ShardInfo, error) {
			return WriteShard(ctx, uri, recs, prov)
		})
}

func TestFixedSizeListPreserved(t *testing.T) {
	// Read with plain pqarrow, not this package's reader: the stored Arrow schema must give
	// back fixed_size_list<float32>[D] and the whole schema as written.
	for _, dim := range []int{1, 384} {
		uri := filepath.Join(t.TempDir(), "s.parquet")
		prov := testProvenance(dim)
		if _, err := WriteShard(context.Background(), uri, makeRecords(3, dim, 8), prov); err != nil {
			t.Fatal(err)
		}
		f, err := file.OpenParquetFile(uri, false)
		if err != nil {
			t.Fatal(err)
		}
		fr, err := pqarrow.NewFileReader(f, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
		if err != nil {
			t.Fatal(err)
		}
		tbl, err := fr.ReadTable(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		typ, ok := tbl.Schema().Field(14).Type.(*arrow.FixedSizeListType)
		if !ok || typ.Len() != int32(dim) || typ.Elem().ID() != arrow.FLOAT32 {
			t.Errorf("dim %d: embedding column read back as %s, want fixed_size_list<float32>[%d]", dim, tbl.Schema().Field(14).Type, dim)
		}
		want := Schema(dim, prov)
		for i, wf := range want.Fields() {
			gf := tbl.Schema().Field(i)
			if gf.Name != wf.Name || !arrow.TypeEqual(gf.Type, wf.Type) || gf.Nullable != wf.Nullable {
				t.Errorf("dim %d: column %d is %v, want %v", dim, i, gf, wf)
			}
		}
		if v := f.MetaData().KeyValueMetadata().FindValue("stir.model.name"); v == nil || *v != prov.ModelName {
			t.Errorf("dim %d: key-value metadata stir.model.name = %v, want %q", dim, v, prov.ModelName)
		}
		tbl.Release()
		f.Close()
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		setup   func(t *testing.T, dir string)
		wantErr []string
	}{
		{"empty directory", func(t *testing.T, dir string) {}, []string{"embeddings output incomplete or not an embeddings directory", ManifestFile}},
		{"shards without manifest", func(t *testing.T, dir string) {
			if _, err := WriteShard(ctx, filepath.Join(dir, ShardName(0, 1)), makeRecords(3, 2, 1), testProvenance(2)); err != nil {
				t.Fatal(err)
			}
		}, []string{"embeddings output incomplete or not an embeddings directory"}},
		{"shard missing", func(t *testing.T, dir string) {
			writeOutput(t, ctx, dir, makeRecords(20, 2, 1), 2, testProvenance(2))
			os.Remove(filepath.Join(dir, ShardName(1, 2)))
		}, []string{ShardName(1, 2), "no such file"}},
		{"shard from another model", func(t *testing.T, dir string) {
			writeOutput(t, ctx, dir, makeRecords(20, 2, 1), 2, testProvenance(2))
			other := testProvenance(2)
			other.ModelSHA256 = strings.Repeat("cd", 32)
			rewriteShard(t, dir, 0, 2, other)
		}, []string{ShardName(0, 2), "stir.model.sha256", strings.Repeat("cd", 32)}},
		{"shard rewritten after the manifest", func(t *testing.T, dir string) {
			writeOutput(t, ctx, dir, makeRecords(20, 2, 1), 2, testProvenance(2))
			if _, err := WriteShard(ctx, filepath.Join(dir, ShardName(0, 2)), makeRecords(3, 2, 1), testProvenance(2)); err != nil {
				t.Fatal(err)
			}
		}, []string{ShardName(0, 2), "manifest says"}},
		{"wrong format", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, ManifestFile), []byte(`{"format":"stir.neighbours/v1","provenance":{"model_name":"m","dim":1,"distance":"euclidean"},"rows":0,"shards":[]}`), 0o644)
		}, []string{`format is "stir.neighbours/v1"`}},
		{"unknown manifest field", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, ManifestFile), []byte(`{"format":"stir.embeddings/v1","colour":1}`), 0o644)
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

// rewriteShard rewrites shard i of n of makeRecords(20, 2, 1) under another provenance.
func rewriteShard(t *testing.T, dir string, i, n int, prov Provenance) {
	t.Helper()
	var recs []Record
	for _, r := range makeRecords(20, 2, 1) {
		if stagetest.ShardOf(r.Row.ID, n) == i {
			recs = append(recs, r)
		}
	}
	if _, err := WriteShard(context.Background(), filepath.Join(dir, ShardName(i, n)), recs, prov); err != nil {
		t.Fatal(err)
	}
}

func TestManifestValidate(t *testing.T) {
	good := func() Manifest {
		return NewManifest(testProvenance(4), []ShardInfo{
			{File: ShardName(1, 2), Rows: 3, Bytes: 100, SHA256: strings.Repeat("a", 64)},
			{File: ShardName(0, 2), Rows: 2, Bytes: 90, SHA256: strings.Repeat("b", 64)},
		})
	}
	if m := good(); m.Rows != 5 || m.Shards[0].File != ShardName(0, 2) {
		t.Fatalf("NewManifest: %+v", m)
	}
	for _, tc := range []struct {
		name   string
		mutate func(m *Manifest)
		want   string
	}{
		{"rows", func(m *Manifest) { m.Rows = 4 }, "rows is 4 but the shards hold 5"},
		{"manifest as shard", func(m *Manifest) { m.Shards[0].File = ManifestFile }, "not a plain"},
		{"dim", func(m *Manifest) { m.Provenance.Dim = 0 }, "dim must be ≥ 1"},
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
	dir := "gs://" + testBucket + "/runs/" + t.Name()
	prov := testProvenance(16)
	want := writeOutput(t, ctx, dir, makeRecords(120, 16, 11), 3, prov)
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

	// A shard replaced after the manifest is caught by Open (size) or when read.
	if _, err := WriteShard(ctx, blob.Join(dir, ShardName(0, 3)), makeRecords(2, 16, 1), prov); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, dir); err == nil || !strings.Contains(err.Error(), "manifest says") {
		t.Fatalf("Open after a shard was replaced: %v", err)
	}
	if _, err := Open(ctx, "gs://"+testBucket+"/nothing-here"); err == nil || !strings.Contains(err.Error(), errIncomplete) {
		t.Fatalf("Open of an empty prefix: %v", err)
	}
}

func BenchmarkWriteShard384(b *testing.B) {
	const rows, dim = 10000, 384
	recs := makeRecords(rows, dim, 12)
	prov := testProvenance(dim)
	uri := filepath.Join(b.TempDir(), "bench.parquet")
	b.ResetTimer()
	var info ShardInfo
	for b.Loop() {
		var err error
		if info, err = WriteShard(context.Background(), uri, recs, prov); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(info.Bytes)/rows, "bytes/row")
}

func BenchmarkReadAll384(b *testing.B) {
	const rows, dim = 10000, 384
	ctx := context.Background()
	dir := b.TempDir()
	prov := testProvenance(dim)
	info, err := WriteShard(ctx, filepath.Join(dir, ShardName(0, 1)), makeRecords(rows, dim, 12), prov)
	if err != nil {
		b.Fatal(err)
	}
	if err := WriteManifest(ctx, dir, NewManifest(prov, []ShardInfo{info})); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		r, err := Open(ctx, dir)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := r.ReadAll(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "rows/s")
}

// TestRolesIn checks the role counts read from the role columns alone against the
// records, local and on gs:// (where the shard is read by ranged requests), with several
// row groups.
func TestRolesIn(t *testing.T) {
	ctx := context.Background()
	defer func(n int) { rowGroupBytes = n }(rowGroupBytes)
	rowGroupBytes = 4 << 10
	for _, dir := range []string{t.TempDir(), "gs://" + testBucket + "/roles/" + t.Name()} {
		recs := writeOutput(t, ctx, dir, makeRecords(6000, 16, 5), 3, testProvenance(16)) // 2 row groups a shard
		r, err := Open(ctx, dir)
		if err != nil {
			t.Fatal(err)
		}
		want := make([]Roles, 3)
		for _, rec := range recs {
			s := &want[stagetest.ShardOf(rec.Row.ID, 3)]
			if rec.Row.Queries() {
				s.Queries++
			}
			if rec.Row.InGallery() {
				s.Galleries++
			}
		}
		for i, sh := range r.Manifest().Shards {
			got, err := r.RolesIn(ctx, i)
			if err != nil {
				t.Fatal(err)
			}
			if got != want[i] || got.Queries == 0 || got.Galleries == 0 {
				t.Errorf("%s %s: roles %+v, want %+v", dir, sh.File, got, want[i])
			}
		}
	}
}

// TestReadFormatV1: an output written before image fingerprints is still read, by Open and
// by ReadFile, with no fingerprint on any record.
func TestReadFormatV1(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	prov := testProvenance(16)
	recs := makeRecords(40, 16, 5)
	info, err := writeShard(ctx, filepath.Join(dir, ShardName(0, 1)), recs, prov, FormatV1)
	if err != nil {
		t.Fatal(err)
	}
	m := NewManifest(prov, []ShardInfo{info})
	m.Format = FormatV1
	if err := WriteManifest(ctx, dir, m); err != nil {
		t.Fatal(err)
	}
	r, err := Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.ReadAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	err = ReadFile(ctx, filepath.Join(dir, ShardName(0, 1)), func(p Provenance) error { return nil }, func(rec Record) error {
		if rec.Fingerprint != "" {
			t.Errorf("%s: fingerprint %q from a v1 file", rec.Row.ID, rec.Fingerprint)
		}
		n++
		return nil
	})
	if err != nil || len(got) != len(recs) || n != len(recs) {
		t.Fatalf("read %d records with Open and %d with ReadFile (%v), want %d", len(got), n, err, len(recs))
	}
	for _, rec := range got {
		if rec.Fingerprint != "" || len(rec.Embedding) != 16 {
			t.Fatalf("%s: fingerprint %q, %d values", rec.Row.ID, rec.Fingerprint, len(rec.Embedding))
		}
	}
}
