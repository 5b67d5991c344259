package embeddings

import (
	"context"
	"encoding/json"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stirpipe/stirpipe/schemas/internal/duckdbtest"
	"github.com/stirpipe/stirpipe/schemas/rejects"
)

// duckFile is what check.mjs prints for one file.
type duckFile struct {
	File       string            `json:"file"`
	Rows       int64             `json:"rows"`
	Columns    map[string]string `json:"columns"`
	KV         map[string]string `json:"kv"`
	IDs        []string          `json:"ids"`
	Embeddings [][]float64       `json:"embeddings"`
	Sums       []float64         `json:"sums"`
	Records    []map[string]any  `json:"records"`
}

// runDuckDB runs testdata/duckdb/check.mjs on files (see duckdbtest.Run for when it skips).
func runDuckDB(t *testing.T, args ...string) []duckFile {
	t.Helper()
	out := duckdbtest.Run(t, filepath.Join("testdata", "duckdb", "check.mjs"), args...)
	var files []duckFile
	if err := json.Unmarshal(out, &files); err != nil {
		t.Fatalf("decode check.mjs output: %v\n%.2000s", err, out)
	}
	return files
}

func TestDuckDBReadsShards(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	const dim = 384
	prov := testProvenance(dim)
	want := writeOutput(t, ctx, dir, makeRecords(40, dim, 21), 2, prov)
	files := runDuckDB(t, filepath.Join(dir, ShardName(0, 2)), filepath.Join(dir, ShardName(1, 2)))
	if len(files) != 2 {
		t.Fatalf("check.mjs reported %d files, want 2", len(files))
	}
	keys, values := prov.keyValues(FormatV2)
	var got []string
	for _, f := range files {
		if f.Columns["embedding"] != "FLOAT[]" || f.Columns["item_id"] != "VARCHAR" || f.Columns["x_1"] != "BIGINT" || f.Columns["is_query"] != "BOOLEAN" {
			t.Errorf("%s: DuckDB column types %v", f.File, f.Columns)
		}
		for i, k := range keys {
			if f.KV[k] != values[i] {
				t.Errorf("%s: DuckDB sees metadata %s = %q, want %q", f.File, k, f.KV[k], values[i])
			}
		}
		if f.Rows != int64(len(f.IDs)) || len(f.Embeddings) != len(f.IDs) || len(f.Records) != len(f.IDs) {
			t.Fatalf("%s: %d rows, %d ids, %d embeddings, %d records", f.File, f.Rows, len(f.IDs), len(f.Embeddings), len(f.Records))
		}
		got = append(got, f.IDs...)
	}
	if len(got) != len(want) {
		t.Fatalf("DuckDB read %d rows, want %d", len(got), len(want))
	}
	i := 0
	for _, f := range files {
		for j, id := range f.IDs {
			w := want[i]
			i++
			if id != w.Row.ID {
				t.Fatalf("%s row %d: DuckDB id %q, want %q (file order must be by id)", f.File, j, id, w.Row.ID)
			}
			for k, v := range f.Embeddings[j] {
				// A float32 is exact in a float64 and in JSON's shortest form.
				if float64(float32(v)) != v || math.Float32bits(float32(v)) != math.Float32bits(w.Embedding[k]) {
					t.Fatalf("%s: %s embedding[%d]: DuckDB %v, want %v", f.File, id, k, v, w.Embedding[k])
				}
			}
			checkDuckRow(t, f.Records[j], w)
		}
	}
}

// checkDuckRow compares DuckDB's view of one row's catalog columns with the record.
func checkDuckRow(t *testing.T, got map[string]any, w Record) {
	t.Helper()
	str := func(s string) any { return s }
	optStr := func(s string) any {
		if s == "" {
			return nil
		}
		return s
	}
	i64 := func(v int64) any { return strconv.FormatInt(v, 10) } // BIGINT comes as a JSON string
	box := func(v int64) any {
		if !w.Row.HasBox {
			return nil
		}
		return i64(v)
	}
	want := map[string]any{
		"item_id": str(w.Row.ID), "label": i64(w.Row.Label), "path": str(w.Row.Path),
		"split": str(w.Row.Split), "is_query": w.Row.IsQuery, "is_gallery": w.Row.IsGallery,
		"category": optStr(w.Row.Category), "sequence": optStr(w.Row.Sequence),
		"x_1": box(w.Row.X1), "y_1": box(w.Row.Y1), "x_2": box(w.Row.X2), "y_2": box(w.Row.Y2),
		"line": i64(w.Row.Line), "image_fingerprint": optStr(w.Fingerprint),
	}
	if len(got) != len(want) {
		t.Errorf("%s: DuckDB columns %v, want %v", w.Row.ID, got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: DuckDB %s = %#v, want %#v", w.Row.ID, k, got[k], v)
		}
	}
}

func TestDuckDBSumsOfLargeShard(t *testing.T) {
	// Several row groups: DuckDB must stitch them together in order.
	defer func(old int) { rowGroupBytes = old }(rowGroupBytes)
	rowGroupBytes = 1 << 20
	const rows, dim = 3000, 384
	uri := filepath.Join(t.TempDir(), ShardName(0, 1))
	recs := makeRecords(rows, dim, 22)
	if _, err := WriteShard(context.Background(), uri, recs, testProvenance(dim)); err != nil {
		t.Fatal(err)
	}
	files := runDuckDB(t, "--sums", uri)
	slices.SortFunc(recs, func(a, b Record) int { return strings.Compare(a.Row.ID, b.Row.ID) })
	f := files[0]
	if f.Rows != rows || len(f.IDs) != rows || len(f.Sums) != rows {
		t.Fatalf("DuckDB: %d rows, %d ids, %d sums; want %d", f.Rows, len(f.IDs), len(f.Sums), rows)
	}
	for i, r := range recs {
		var sum float64 // the same float64 additions in the same order as check.mjs
		for _, v := range r.Embedding {
			sum += float64(v)
		}
		if f.IDs[i] != r.Row.ID || f.Sums[i] != sum {
			t.Fatalf("row %d: DuckDB %s sum %v, want %s sum %v", i, f.IDs[i], f.Sums[i], r.Row.ID, sum)
		}
	}
}

func TestDuckDBReadsRejects(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.parquet")
	some := filepath.Join(dir, "some.parquet")
	recs := []rejects.Record{
		{ItemID: "b", Path: "x/b.jpg", Stage: rejects.StageDecode, Reason: rejects.ReasonCorrupt, Detail: "unexpected EOF", Line: 9},
		{ItemID: "a", Path: "x/a.jpg", Stage: rejects.StageDecode, Reason: rejects.ReasonMissing, Detail: "no such file", Line: 3},
	}
	if _, err := rejects.WriteShard(ctx, empty, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := rejects.WriteShard(ctx, some, recs); err != nil {
		t.Fatal(err)
	}
	files := runDuckDB(t, empty, some)
	if files[0].Rows != 0 || len(files[0].Records) != 0 || files[0].KV["stir.format"] != rejects.FormatV1 {
		t.Errorf("empty rejects file as DuckDB sees it: %+v", files[0])
	}
	if files[0].Columns["stage"] != "VARCHAR" || files[0].Columns["line"] != "BIGINT" {
		t.Errorf("empty rejects file: DuckDB column types %v", files[0].Columns)
	}
	got := files[1].Records
	if len(got) != 2 || got[0]["item_id"] != "a" || got[1]["item_id"] != "b" ||
		got[0]["reason"] != "missing" || got[1]["detail"] != "unexpected EOF" || got[1]["line"] != "9" {
		t.Errorf("rejects as DuckDB sees them: %v", got)
	}
}
