package catalog

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stirpipe/stirpipe/schemas/blob"
)

func TestLoad(t *testing.T) {
	ctx := context.Background()
	rows := sampleRows(30)
	csvData := []byte(sampleCSV(rows))
	pqData := sampleParquet(t, rows, 16)
	dir := t.TempDir()
	files := map[string][]byte{
		filepath.Join(dir, "cat.csv"):              csvData,
		filepath.Join(dir, "cat.parquet"):          pqData,
		filepath.Join(dir, "cat.txt"):              csvData,
		"gs://" + testBucket + "/cats/cat.CSV":     csvData,
		"gs://" + testBucket + "/cats/cat.parquet": pqData,
		"gs://" + testBucket + "/cats/bad.csv":     []byte(header + "1,../x.jpg,train,,,,,,,,\n"),
	}
	for uri, data := range files {
		if err := blob.WriteFile(ctx, uri, data); err != nil {
			t.Fatal(err)
		}
	}
	snapshot := func(b []byte) string { s := sha256.Sum256(b); return "sha256:" + hex.EncodeToString(s[:]) }
	tests := []struct {
		uri    string
		opts   Options
		format string
		data   []byte
	}{
		{filepath.Join(dir, "cat.csv"), Options{Root: dir}, FormatCSV, csvData},
		{filepath.Join(dir, "cat.parquet"), Options{}, FormatParquet, pqData},
		{filepath.Join(dir, "cat.txt"), Options{Format: FormatCSV}, FormatCSV, csvData},
		{"gs://" + testBucket + "/cats/cat.CSV", Options{Root: "gs://" + testBucket + "/ds"}, FormatCSV, csvData},
		{"gs://" + testBucket + "/cats/cat.parquet", Options{}, FormatParquet, pqData},
	}
	for _, tc := range tests {
		cat, err := Load(ctx, tc.uri, tc.opts)
		if err != nil {
			t.Errorf("Load(%s): %v", tc.uri, err)
			continue
		}
		if cat.URI != tc.uri || cat.Format != tc.format || len(cat.Rows) != len(rows) || cat.Snapshot != snapshot(tc.data) {
			t.Errorf("Load(%s) = URI %s, format %s, %d rows, snapshot %s", tc.uri, cat.URI, cat.Format, len(cat.Rows), cat.Snapshot)
		}
		for _, r := range cat.Rows {
			if tc.opts.Root == "" {
				break
			}
			if _, err := Resolve(tc.opts.Root, r.Path); err != nil {
				t.Errorf("row %d: %v", r.Line, err)
			}
		}
	}

	failures := []struct {
		uri  string
		opts Options
		want string
		kind error
	}{
		{filepath.Join(dir, "cat.txt"), Options{}, "cannot tell the format", nil},
		{filepath.Join(dir, "cat.csv"), Options{Format: "tsv"}, `format "tsv"`, nil},
		{filepath.Join(dir, "cat.csv"), Options{Root: "s3://b"}, "unsupported scheme", nil},
		{filepath.Join(dir, "nope.csv"), Options{}, "nope.csv", fs.ErrNotExist},
		{"gs://" + testBucket + "/cats/nope.parquet", Options{}, "nope.parquet", fs.ErrNotExist},
		{"gs://" + testBucket + "/cats/bad.csv", Options{}, `gs://catalog-test/cats/bad.csv line 2, column "path": unsafe image path`, ErrUnsafePath},
		{filepath.Join(dir, "cat.csv"), Options{Format: FormatParquet}, "not a readable Parquet file", ErrSyntax},
	}
	for _, tc := range failures {
		_, err := Load(ctx, tc.uri, tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) || (tc.kind != nil && !errors.Is(err, tc.kind)) {
			t.Errorf("Load(%s, %+v) error = %v, want %q / %v", tc.uri, tc.opts, err, tc.want, tc.kind)
		}
	}
	// A changed byte changes the snapshot.
	edited := append([]byte{}, csvData...)
	edited[len(edited)-2] = 'X'
	p := filepath.Join(dir, "edited.csv")
	if err := os.WriteFile(p, edited, 0o644); err != nil {
		t.Fatal(err)
	}
	a, _ := Load(ctx, filepath.Join(dir, "cat.csv"), Options{})
	b, err := Load(ctx, p, Options{})
	if err != nil || a.Snapshot == b.Snapshot {
		t.Errorf("snapshot unchanged after an edit (%v)", err)
	}
}
