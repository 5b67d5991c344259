package pqfile

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

type pair struct {
	id string
	n  int64
}

func pairSpec() Spec[pair] {
	md := arrow.NewMetadata([]string{"k"}, []string{"v"})
	return Spec[pair]{
		Schema: arrow.NewSchema([]arrow.Field{
			{Name: "id", Type: arrow.BinaryTypes.String},
			{Name: "n", Type: arrow.PrimitiveTypes.Int64},
		}, &md),
		Compare: func(a, b *pair) int { return strings.Compare(a.id, b.id) },
		Append: func(b *array.RecordBuilder, p *pair) {
			b.Field(0).(*array.StringBuilder).Append(p.id)
			b.Field(1).(*array.Int64Builder).Append(p.n)
		},
		RowGroupRows: 2,
	}
}

// readIPC returns the rows of an IPC file and its batch count.
func readIPC(t *testing.T, uri string) ([]pair, int, map[string]string) {
	t.Helper()
	f, err := OpenIPC(context.Background(), uri)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []pair
	batches := 0
	err = f.Each(context.Background(), func(rec arrow.RecordBatch) error {
		batches++
		ids, err := Column[*array.String](rec, uri, "id")
		if err != nil {
			return err
		}
		ns, err := Column[*array.Int64](rec, uri, "n")
		if err != nil {
			return err
		}
		for i := range int(rec.NumRows()) {
			out = append(out, pair{strings.Clone(ids.Value(i)), ns.Value(i)})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out, batches, f.KeyValue()
}

func TestWriteIPC(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	in := []pair{{"c", 3}, {"a", 1}, {"e", 5}, {"b", 2}, {"d", 4}}
	a, err := WriteIPC(ctx, filepath.Join(dir, "a.arrow"), in, pairSpec())
	if err != nil {
		t.Fatal(err)
	}
	got, batches, kv := readIPC(t, filepath.Join(dir, "a.arrow"))
	want := []pair{{"a", 1}, {"b", 2}, {"c", 3}, {"d", 4}, {"e", 5}}
	if len(got) != len(want) || batches != 3 || kv["k"] != "v" || a.Rows != 5 {
		t.Fatalf("read %v in %d batches with metadata %v (info %+v), want %v in 3 batches", got, batches, kv, a, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("row %d: %v, want %v", i, got[i], want[i])
		}
	}
	if in[0].id != "c" {
		t.Fatal("WriteIPC reordered the caller's slice")
	}
	b, err := WriteIPC(ctx, filepath.Join(dir, "b.arrow"), []pair{{"e", 5}, {"d", 4}, {"c", 3}, {"b", 2}, {"a", 1}}, pairSpec())
	if err != nil {
		t.Fatal(err)
	}
	da, _ := os.ReadFile(filepath.Join(dir, "a.arrow"))
	db, _ := os.ReadFile(filepath.Join(dir, "b.arrow"))
	if !bytes.Equal(da, db) || a.SHA256 != b.SHA256 || a.Bytes != int64(len(da)) {
		t.Fatalf("same rows in another order gave different files: %+v, %+v", a, b)
	}
	// No rows: a valid file with the schema only.
	if _, err := WriteIPC(ctx, filepath.Join(dir, "empty.arrow"), nil, pairSpec()); err != nil {
		t.Fatal(err)
	}
	if got, batches, kv := readIPC(t, filepath.Join(dir, "empty.arrow")); len(got) != 0 || batches != 0 || kv["k"] != "v" {
		t.Fatalf("empty file: %v in %d batches, metadata %v", got, batches, kv)
	}
}

func TestCheckShards(t *testing.T) {
	sha := strings.Repeat("0a", 32)
	for _, tc := range []struct {
		name   string
		shards []Info
		rows   int64
		errHas string
	}{
		{"good", []Info{{"a.parquet", 2, 10, sha}, {"b.arrow", 3, 10, sha}}, 5, ""},
		{"none", nil, 0, ""},
		{"extension", []Info{{"a.csv", 1, 10, sha}}, 1, "not a plain *.parquet or *.arrow name"},
		{"hidden", []Info{{".a.parquet", 1, 10, sha}}, 1, "not a plain"},
		{"underscore", []Info{{"_tmp/a.parquet", 1, 10, sha}}, 1, "not a plain"},
		{"twice", []Info{{"a.parquet", 1, 10, sha}, {"a.parquet", 1, 10, sha}}, 2, "listed twice"},
		{"empty file", []Info{{"a.parquet", 0, 0, sha}}, 0, "bytes 0"},
		{"sha", []Info{{"a.parquet", 0, 1, "00"}}, 0, "64 hex digits"},
		{"total", []Info{{"a.parquet", 2, 10, sha}, {"b.arrow", 3, 10, sha}}, 6, "rows is 6 but the shards hold 5"},
		{"total of none", nil, 1, "rows is 1 but the shards hold 0"},
	} {
		err := CheckShards(tc.rows, tc.shards, ".parquet", ".arrow")
		if (err == nil) != (tc.errHas == "") || (err != nil && !strings.Contains(err.Error(), tc.errHas)) {
			t.Errorf("%s: CheckShards = %v, want an error containing %q", tc.name, err, tc.errHas)
		}
		if got := TotalRows(tc.shards); tc.errHas == "" && got != tc.rows {
			t.Errorf("%s: TotalRows = %d, want %d", tc.name, got, tc.rows)
		}
	}
}
