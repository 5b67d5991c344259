package rejects

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/parquet/file"

	"github.com/stirpipe/stirpipe/schemas/blob"
	"github.com/stirpipe/stirpipe/schemas/blob/blobtest"
	"github.com/stirpipe/stirpipe/schemas/catalog"
	"github.com/stirpipe/stirpipe/schemas/embeddings"
)

const testBucket = "stir-rejects-test"

func TestMain(m *testing.M) { blobtest.Main(m.Run, testBucket) }

// sample returns rejects in no particular order, with the same item rejected by two stages
// and two identical-looking rows that differ only in detail.
func sample() []Record {
	return []Record{
		{ItemID: "c", Path: "img/c.jpg", Stage: StageEmbed, Reason: "nonfinite", Detail: "NaN in output", Line: 4},
		{ItemID: "a", Path: "img/a.jpg", Stage: StagePreprocess, Reason: "bad_box", Detail: "box outside image", Line: 2},
		{ItemID: "a", Path: "img/a.jpg", Stage: StageDecode, Reason: ReasonCorrupt, Detail: "unexpected EOF", Line: 2},
		{ItemID: "", Path: "img/../../etc", Stage: StageCatalog, Reason: "unsafe_path", Detail: "escapes the root", Line: 7},
		{ItemID: "b", Path: "img/b.jpg", Stage: StageDecode, Reason: ReasonMissing, Detail: "no such file ✗", Line: 3},
		{ItemID: "b", Path: "img/b.jpg", Stage: StageDecode, Reason: ReasonMissing, Detail: "also missing", Line: 3},
	}
}

func sorted(recs []Record) []Record {
	out := slices.Clone(recs)
	slices.SortFunc(out, func(a, b Record) int { return compare(&a, &b) })
	return out
}

func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		dir  func(t *testing.T) string
	}{
		{"local", func(t *testing.T) string { return t.TempDir() }},
		{"gcs", func(t *testing.T) string { return "gs://" + testBucket + "/" + t.Name() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.dir(t)
			recs := sample()
			// Two shards, an empty one, and files the reader must ignore.
			if _, err := WriteShard(ctx, blob.Join(dir, "part-0.parquet"), recs[:3]); err != nil {
				t.Fatal(err)
			}
			if _, err := WriteShard(ctx, blob.Join(dir, "part-1.parquet"), recs[3:]); err != nil {
				t.Fatal(err)
			}
			if _, err := WriteShard(ctx, blob.Join(dir, "part-2.parquet"), nil); err != nil {
				t.Fatal(err)
			}
			for _, name := range []string{"_manifest.json", ".part-3.parquet.tmp-1", "sub/part-9.parquet"} {
				if err := blob.WriteFile(ctx, blob.Join(dir, name), []byte("not parquet")); err != nil {
					t.Fatal(err)
				}
			}
			got, err := ReadAll(ctx, dir)
			if err != nil {
				t.Fatal(err)
			}
			if want := sorted(recs); !slices.Equal(got, want) {
				t.Fatalf("ReadAll(dir):\n got %+v\nwant %+v", got, want)
			}
			one, err := ReadAll(ctx, blob.Join(dir, "part-1.parquet"))
			if err != nil {
				t.Fatal(err)
			}
			if want := sorted(recs[3:]); !slices.Equal(one, want) {
				t.Fatalf("ReadAll(file):\n got %+v\nwant %+v", one, want)
			}
		})
	}
}

func TestSortedByItemThenStage(t *testing.T) {
	got := sorted(sample())
	var keys []string
	for _, r := range got {
		keys = append(keys, r.ItemID+"/"+r.Stage+"/"+r.Detail)
	}
	want := []string{"/catalog/escapes the root", "a/decode/unexpected EOF", "a/preprocess/box outside image",
		"b/decode/also missing", "b/decode/no such file ✗", "c/embed/NaN in output"}
	if !slices.Equal(keys, want) {
		t.Fatalf("order %v, want %v", keys, want)
	}
}

func TestEmptyFileIsValid(t *testing.T) {
	ctx := context.Background()
	uri := filepath.Join(t.TempDir(), "part-0.parquet")
	info, err := WriteShard(ctx, uri, nil)
	if err != nil {
		t.Fatal(err)
	}
	if info.Rows != 0 || info.Bytes == 0 {
		t.Fatalf("info %+v", info)
	}
	// A plain Parquet reader accepts it and finds the schema and metadata.
	f, err := file.OpenParquetFile(uri, false)
	if err != nil {
		t.Fatalf("empty rejects file is not valid Parquet: %v", err)
	}
	defer f.Close()
	if f.NumRows() != 0 || f.MetaData().Schema.NumColumns() != 6 {
		t.Fatalf("%d rows, %d columns", f.NumRows(), f.MetaData().Schema.NumColumns())
	}
	if v := f.MetaData().KeyValueMetadata().FindValue(keyFormat); v == nil || *v != FormatV1 {
		t.Fatalf("metadata %s = %v", keyFormat, v)
	}
	got, err := ReadAll(ctx, uri)
	if err != nil || len(got) != 0 {
		t.Fatalf("ReadAll = %v, %v; want no records", got, err)
	}
}

func TestDeterministic(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	recs := sample()
	a, err := WriteShard(ctx, filepath.Join(dir, "a.parquet"), recs)
	if err != nil {
		t.Fatal(err)
	}
	rev := slices.Clone(recs)
	slices.Reverse(rev)
	b, err := WriteShard(ctx, filepath.Join(dir, "b.parquet"), rev)
	if err != nil {
		t.Fatal(err)
	}
	da, _ := os.ReadFile(filepath.Join(dir, "a.parquet"))
	db, _ := os.ReadFile(filepath.Join(dir, "b.parquet"))
	if !bytes.Equal(da, db) || a.SHA256 != b.SHA256 {
		t.Fatal("the same rejects in another order gave different files")
	}
	if !slices.Equal(recs, sample()) {
		t.Fatal("WriteShard reordered the caller's slice")
	}
}

func TestWriteShardErrors(t *testing.T) {
	dir := t.TempDir()
	uri := filepath.Join(dir, "part-0.parquet")
	recs := sample()
	recs[1].Stage = ""
	recs[4].Reason = ""
	_, err := WriteShard(context.Background(), uri, recs)
	if err == nil {
		t.Fatal("WriteShard accepted rejects without stage or reason")
	}
	for _, s := range []string{uri, `item "a"`, `item "b"`, "catalog line 3"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("failed write left %v", entries)
	}
}

func TestReadAllErrors(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	embeddingsFile := filepath.Join(dir, "emb", "part-00000-of-00001.parquet")
	_, err := embeddings.WriteShard(ctx, embeddingsFile,
		[]embeddings.Record{{Row: catalog.Row{ID: "a", Path: "a.jpg", Split: "train"}, Embedding: []float32{1}}},
		embeddings.Provenance{ModelName: "m", Dim: 1, Distance: "euclidean"})
	if err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "good.parquet")
	if _, err := WriteShard(ctx, good, sample()); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(good)
	corrupt := filepath.Join(dir, "bad", "c.parquet")
	os.MkdirAll(filepath.Dir(corrupt), 0o755)
	os.WriteFile(corrupt, data[:len(data)/2], 0o644)
	for _, tc := range []struct {
		uri, want string
	}{
		{filepath.Join(dir, "nothing"), "no *.parquet files"},
		{filepath.Join(dir, "missing.parquet"), "no such file"},
		{corrupt, "not a readable Parquet file"},
		{embeddingsFile, `metadata stir.format is "stir.embeddings/v2", want "stir.rejects/v1"`},
	} {
		_, err := ReadAll(ctx, tc.uri)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), filepath.Base(tc.uri)) {
			t.Errorf("ReadAll(%s) = %v, want an error naming the file and %q", tc.uri, err, tc.want)
		}
	}
}

func ExampleWriteShard() {
	dir, _ := os.MkdirTemp("", "rejects")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	info, err := WriteShard(ctx, filepath.Join(dir, "part-00000-of-00001.parquet"), []Record{
		{ItemID: "img-2", Path: "b.jpg", Stage: StageDecode, Reason: ReasonCorrupt, Detail: "unexpected EOF", Line: 3},
		{ItemID: "img-1", Path: "a.jpg", Stage: StageDecode, Reason: ReasonMissing, Detail: "no such file", Line: 2},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	recs, _ := ReadAll(ctx, dir)
	fmt.Println(info.File, info.Rows)
	for _, r := range recs {
		fmt.Println(r.ItemID, r.Stage, r.Reason, r.Line)
	}
	// Output:
	// part-00000-of-00001.parquet 2
	// img-1 decode missing 2
	// img-2 decode corrupt 3
}
