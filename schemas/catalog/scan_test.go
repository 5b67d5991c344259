package catalog

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stirpipe/stirpipe/schemas/blob"
)

// TestScanPiecesGiveLoadsRows checks that the pieces of a scanned catalog hold exactly the
// rows Load gives, with the same lines, for CSV (with a byte order mark, blank lines and
// quoted line breaks) and Parquet (several row groups), local and on gs://.
func TestScanPiecesGiveLoadsRows(t *testing.T) {
	ctx := context.Background()
	rows := sampleRows(40)
	csvText := sampleCSV(rows)
	// A quoted line break moves every later line, and blank lines are skipped.
	csvText = strings.Replace(csvText, `"a, b"`, "\"a,\nb\"", 7)
	csvText = strings.Replace(csvText, "\nimg/004", "\n\n\nimg/004", 1)
	csvData := append(append([]byte{}, utf8BOM...), csvText...)
	// Windows line ends, and no line end after the last row.
	crlf := []byte(strings.TrimSuffix(strings.ReplaceAll(csvText, "\n", "\r\n"), "\r\n"))
	dir := t.TempDir()
	files := map[string][]byte{
		filepath.Join(dir, "cat.csv"):              csvData,
		filepath.Join(dir, "crlf.csv"):             crlf,
		filepath.Join(dir, "cat.parquet"):          sampleParquet(t, rows, 6),
		"gs://" + testBucket + "/scan/cat.csv":     csvData,
		"gs://" + testBucket + "/scan/cat.parquet": sampleParquet(t, rows, 6),
	}
	for uri, data := range files {
		if err := blob.WriteFile(ctx, uri, data); err != nil {
			t.Fatal(err)
		}
		want, err := Load(ctx, uri, Options{})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			per     int64
			regroup int
		}{{1, 0}, {7, 0}, {40, 0}, {1000, 0}, {1, 3}, {7, 2}, {6, 100}} {
			per := c.per
			s, err := ScanFile(ctx, uri, Options{}, per)
			if err != nil {
				t.Fatalf("%s: %v", uri, err)
			}
			if before := len(s.Pieces); c.regroup > 0 {
				s.Regroup(c.regroup)
				if want := min(c.regroup, before); len(s.Pieces) != want {
					t.Errorf("%s: %d pieces regrouped into %d, want %d", uri, before, len(s.Pieces), want)
				}
				per = s.Rows // a merged piece holds what it holds
			}
			if s.Snapshot != want.Snapshot || s.Rows != int64(len(want.Rows)) || s.HasIDs != want.HasIDs || s.Format != want.Format {
				t.Errorf("%s: scan %s, %d rows, ids %v, %s; Load %s, %d rows, ids %v, %s", uri, s.Snapshot, s.Rows, s.HasIDs, s.Format,
					want.Snapshot, len(want.Rows), want.HasIDs, want.Format)
			}
			var got []Row
			for i, p := range s.Pieces {
				if p.Rows > per && s.Format == FormatCSV {
					t.Errorf("%s: piece %d holds %d rows, want ≤ %d", uri, i, p.Rows, per)
				}
				if err := s.ReadPiece(ctx, i, func(r Row) { got = append(got, r) }); err != nil {
					t.Fatalf("%s piece %d: %v", uri, i, err)
				}
			}
			if !reflect.DeepEqual(got, want.Rows) {
				t.Errorf("%s, %d rows a piece, regrouped into %d: the pieces' rows differ from Load's", uri, c.per, c.regroup)
				for i := range min(len(got), len(want.Rows)) {
					if !reflect.DeepEqual(got[i], want.Rows[i]) {
						t.Fatalf("first difference, row %d:\n got %+v\nwant %+v", i, got[i], want.Rows[i])
					}
				}
			}
		}
	}
}

// TestScanRefuses checks that a scan reports a bad catalog as Load does, and that a piece
// of a file that changed since the scan is refused.
func TestScanRefuses(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.csv")
	text := header + "1,a.jpg,validation,True,True,,,,,,\n1,a.jpg,validation,True,True,,,,,,\n2,../x.jpg,train,,,,,,,,\n"
	if err := os.WriteFile(bad, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	_, want := Load(ctx, bad, Options{})
	_, got := ScanFile(ctx, bad, Options{}, 10)
	if want == nil || got == nil || got.Error() != want.Error() {
		t.Errorf("scan: %v\nLoad: %v", got, want)
	}
	if !errors.Is(got, ErrDuplicateID) || !errors.Is(got, ErrUnsafePath) {
		t.Errorf("scan error does not wrap its problems: %v", got)
	}

	good := filepath.Join(dir, "good.csv")
	if err := os.WriteFile(good, []byte(sampleCSV(sampleRows(9))), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := ScanFile(ctx, good, Options{}, 4)
	if err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(good, later, later); err != nil {
		t.Fatal(err)
	}
	err = s.ReadPiece(ctx, 1, func(Row) {})
	if err == nil || !strings.Contains(err.Error(), "changed since the job was launched") {
		t.Errorf("a changed catalog: %v", err)
	}
}
