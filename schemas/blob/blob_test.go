package blob_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stirpipe/stirpipe/schemas/blob"
	"github.com/stirpipe/stirpipe/schemas/blob/blobtest"
)

func TestMain(m *testing.M) { blobtest.Main(m.Run, "bucket") }

func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	for _, base := range []string{t.TempDir(), "gs://bucket/run"} {
		t.Run(base, func(t *testing.T) {
			uri := blob.Join(base, "a", "b.bin")
			want := []byte("hello, catalog")
			if err := blob.WriteFile(ctx, uri, want); err != nil {
				t.Fatal(err)
			}
			got, err := blob.ReadFile(ctx, uri)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("ReadFile = %q, %v; want %q", got, err, want)
			}
			if n, err := blob.Size(ctx, uri); err != nil || n != int64(len(want)) {
				t.Fatalf("Size = %d, %v", n, err)
			}
			before, err := blob.Stat(ctx, uri)
			if err != nil || before.Version == "" {
				t.Fatalf("Stat = %+v, %v", before, err)
			}
			if !blob.IsGCS(uri) { // a rewrite within the clock's resolution would keep the time
				old := time.Now().Add(-time.Hour)
				if err := os.Chtimes(uri, old, old); err != nil {
					t.Fatal(err)
				}
				before, _ = blob.Stat(ctx, uri)
			}
			if err := blob.WriteFile(ctx, uri, want); err != nil {
				t.Fatal(err)
			}
			if after, err := blob.Stat(ctx, uri); err != nil || after.Version == before.Version || after.Size != before.Size {
				t.Fatalf("Stat after a rewrite = %+v, %v; before %+v: want a new version", after, err, before)
			}
			files, err := blob.List(ctx, blob.Join(base, "a"))
			if err != nil || len(files) != 1 || files[0] != uri {
				t.Fatalf("List = %v, %v; want [%s]", files, err, uri)
			}
			if err := blob.Remove(ctx, uri); err != nil {
				t.Fatal(err)
			}
			if _, err := blob.ReadFile(ctx, uri); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("after Remove: err = %v, want not-exist", err)
			}
			if err := blob.Remove(ctx, uri); err != nil {
				t.Fatalf("Remove of a missing file: %v", err)
			}
		})
	}
}

func TestAbortLeavesNothing(t *testing.T) {
	ctx := context.Background()
	for _, base := range []string{t.TempDir(), "gs://bucket/abort"} {
		t.Run(base, func(t *testing.T) {
			uri := blob.Join(base, "out.parquet")
			w, err := blob.Create(ctx, uri)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write([]byte("half a file")); err != nil {
				t.Fatal(err)
			}
			w.Abort()
			files, err := blob.List(ctx, base)
			if err != nil {
				t.Fatal(err)
			}
			if len(files) != 0 {
				t.Fatalf("aborted write left %v", files)
			}
			if err := w.Commit(); err == nil {
				t.Fatal("Commit after Abort succeeded")
			}
		})
	}
}

func TestUncommittedLocalWriteIsHidden(t *testing.T) {
	dir := t.TempDir()
	uri := filepath.Join(dir, "x.json")
	w, err := blob.Create(context.Background(), uri)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	if _, err := w.Write([]byte("{}")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(uri); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("file visible before Commit: %v", err)
	}
}

func TestJoin(t *testing.T) {
	for _, c := range []struct{ base, want string }{
		{"gs://b/p/", "gs://b/p/x/y"},
		{"gs://b", "gs://b/x/y"},
		{"/tmp/o", "/tmp/o/x/y"},
	} {
		if got := blob.Join(c.base, "x", "y"); got != c.want {
			t.Errorf("blob.Join(%q) = %q, want %q", c.base, got, c.want)
		}
	}
}

func TestDir(t *testing.T) {
	for _, c := range []struct{ uri, want string }{
		{"gs://b/p/catalog.csv", "gs://b/p"},
		{"gs://b/runs/2026-12-07/", "gs://b/runs"},
		{"gs://b/x", "gs://b"},
		{"gs://b", "gs://b"},
		{"/tmp/o/catalog.csv", "/tmp/o"},
		{"catalog.csv", "."},
	} {
		if got := blob.Dir(c.uri); got != c.want {
			t.Errorf("blob.Dir(%q) = %q, want %q", c.uri, got, c.want)
		}
	}
}
