// Package stagetest holds the checks that the tests of every kind of stage file share.
package stagetest

import (
	"bytes"
	"context"
	"errors"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stirpipe/stirpipe/schemas/internal/pqfile"
)

// ShardOf assigns an id to one of n shards as the pipeline's sinks do: FNV-1a of the id.
func ShardOf(id string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(id))
	return int(h.Sum32() % uint32(n))
}

// DirFiles lists every file under dir, temporary ones included.
func DirFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, filepath.Base(p))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Deterministic checks that write gives the same bytes for recs in another order, leaves
// the caller's slice as it was (same ids as fresh, compared by id), and that manifests of
// the two files listed in either order are the same bytes. ext is the files' extension;
// manifest writes a manifest of the shards into a directory.
func Deterministic[R any](t *testing.T, ext string, recs, fresh []R, id func(R) string,
	write func(uri string, recs []R) (pqfile.Info, error), manifest func(dir string, shards []pqfile.Info) error) {
	t.Helper()
	dir := t.TempDir()
	a, err := write(filepath.Join(dir, "a"+ext), recs)
	if err != nil {
		t.Fatal(err)
	}
	shuffled := slices.Clone(recs)
	rand.New(rand.NewPCG(9, 9)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	b, err := write(filepath.Join(dir, "b"+ext), shuffled)
	if err != nil {
		t.Fatal(err)
	}
	da, _ := os.ReadFile(filepath.Join(dir, "a"+ext))
	db, _ := os.ReadFile(filepath.Join(dir, "b"+ext))
	if !bytes.Equal(da, db) || a.SHA256 != b.SHA256 || a.Bytes != b.Bytes || a.Bytes != int64(len(da)) {
		t.Fatalf("same records in another order gave different files: %+v vs %+v", a, b)
	}
	if !slices.EqualFunc(recs, fresh, func(x, y R) bool { return id(x) == id(y) }) {
		t.Fatal("the writer reordered the caller's slice")
	}
	a.File, b.File = "part-00000-of-00002"+ext, "part-00001-of-00002"+ext
	if err := manifest(filepath.Join(dir, "1"), []pqfile.Info{a, b}); err != nil {
		t.Fatal(err)
	}
	if err := manifest(filepath.Join(dir, "2"), []pqfile.Info{b, a}); err != nil {
		t.Fatal(err)
	}
	j1, _ := os.ReadFile(filepath.Join(dir, "1", pqfile.ManifestFile))
	j2, _ := os.ReadFile(filepath.Join(dir, "2", pqfile.ManifestFile))
	if !bytes.Equal(j1, j2) {
		t.Fatalf("manifests differ:\n%s\n%s", j1, j2)
	}
}

// EachStopsOnError checks that an iteration stops at its callback's first error, the
// at-th record, and returns that error.
func EachStopsOnError[R any](t *testing.T, each func(fn func(R) error) error, at int) {
	t.Helper()
	stop := errors.New("stop")
	calls := 0
	err := each(func(R) error {
		calls++
		if calls == at {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || calls != at {
		t.Fatalf("Each returned %v after %d calls, want the callback's error after %d", err, calls, at)
	}
}

// FailedWriteKeepsPrevious checks that a write interrupted after the format writer started
// (here: a cancelled context) leaves neither a temporary file nor a changed file under the
// final name: write first, then fail to write second over it.
func FailedWriteKeepsPrevious[R any](t *testing.T, uri string, first, second []R, write func(ctx context.Context, uri string, recs []R) (pqfile.Info, error)) {
	t.Helper()
	if _, err := write(context.Background(), uri, first); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(uri)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := write(ctx, uri, second); !errors.Is(err, context.Canceled) {
		t.Fatalf("write with a cancelled context: %v, want context.Canceled", err)
	}
	after, _ := os.ReadFile(uri)
	if !bytes.Equal(before, after) {
		t.Fatal("failed write changed the published file")
	}
	if files := DirFiles(t, filepath.Dir(uri)); !slices.Equal(files, []string{filepath.Base(uri)}) {
		t.Fatalf("files after failed write: %v", files)
	}
}
