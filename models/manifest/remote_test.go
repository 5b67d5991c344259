package manifest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stirpipe/stirpipe/schemas/blob"
	"github.com/stirpipe/stirpipe/schemas/blob/blobtest"
)

func TestMain(m *testing.M) { blobtest.Main(m.Run, "bucket") }

// time0 marks a cached copy, to tell whether a later Open copied the file again.
var time0 = time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)

func put(t *testing.T, uri, data string) {
	t.Helper()
	if err := blob.WriteFile(context.Background(), uri, []byte(data)); err != nil {
		t.Fatal(err)
	}
}

// TestOpenRemote: a gs:// manifest's model is copied once per object version into the
// cache, by the manifest's or the ONNX file's URI; a rewritten object is copied anew, and
// copies of old versions go once unused for a day.
func TestOpenRemote(t *testing.T) {
	ctx := context.Background()
	t.Setenv("STIR_CACHE_DIR", t.TempDir())
	put(t, "gs://bucket/m/embedder.json", good)
	put(t, "gs://bucket/m/embedder.onnx", "graph v1")

	m, err := Open(ctx, "gs://bucket/m/embedder.json")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(m.Model, CacheDir()) || filepath.Base(m.Model) != "embedder.onnx" {
		t.Fatalf("model at %s, want a file named embedder.onnx under %s", m.Model, CacheDir())
	}
	if data, _ := os.ReadFile(m.Model); string(data) != "graph v1" {
		t.Fatalf("cached copy holds %q", data)
	}
	// Mark the copy: a second Open of the same version must reuse it, not copy again.
	if err := os.Chtimes(m.Model, time0, time0); err != nil {
		t.Fatal(err)
	}
	again, err := Open(ctx, "gs://bucket/m/embedder.onnx")
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(again.Model); again.Model != m.Model || err != nil || !st.ModTime().Equal(time0) {
		t.Fatalf("second open: %s (%v), want the untouched copy %s", again.Model, err, m.Model)
	}

	// A new version is copied anew; the old copy, unused for two days, is removed.
	twoDays := time.Now().Add(-48 * time.Hour)
	if err := os.Chtimes(filepath.Dir(m.Model), twoDays, twoDays); err != nil {
		t.Fatal(err)
	}
	put(t, "gs://bucket/m/embedder.onnx", "graph v2, longer")
	newer, err := Open(ctx, "gs://bucket/m/embedder.json")
	if err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(newer.Model); newer.Model == m.Model || string(data) != "graph v2, longer" {
		t.Fatalf("after a rewrite: %s holds %q", newer.Model, data)
	}
	if _, err := os.Stat(m.Model); !os.IsNotExist(err) {
		t.Errorf("the copy of the old version, unused for two days, is still there (%v)", err)
	}
	// A version used recently stays when the next one is copied.
	put(t, "gs://bucket/m/embedder.onnx", "graph v3")
	if _, err := Open(ctx, "gs://bucket/m/embedder.json"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(newer.Model); err != nil {
		t.Errorf("the copy of version 2, used a moment ago, was removed: %v", err)
	}
}

// TestOpenRemoteErrors: a missing manifest or model, a model path that leaves the
// manifest's folder, and a bad manifest stop with messages naming the problem.
func TestOpenRemoteErrors(t *testing.T) {
	ctx := context.Background()
	t.Setenv("STIR_CACHE_DIR", t.TempDir())
	put(t, "gs://bucket/e/nomodel.json", strings.Replace(good, `"embedder.onnx"`, `"absent.onnx"`, 1))
	put(t, "gs://bucket/e/escape.json", strings.Replace(good, `"embedder.onnx"`, `"../other/m.onnx"`, 1))
	put(t, "gs://bucket/e/absolute.json", strings.Replace(good, `"embedder.onnx"`, `"/etc/m.onnx"`, 1))
	put(t, "gs://bucket/e/bad.json", strings.Replace(good, `"dim": 384`, `"dim": 0`, 1))
	for _, c := range []struct{ uri, want string }{
		{"gs://bucket/e/missing.json", "file does not exist"},
		{"gs://bucket/e/nomodel.json", "gs://bucket/e/absent.onnx: file does not exist"},
		{"gs://bucket/e/escape.json", "beside or below the manifest"},
		{"gs://bucket/e/absolute.json", "beside or below the manifest"},
		{"gs://bucket/e/bad.json", "gs://bucket/e/bad.json"},
	} {
		if _, err := Open(ctx, c.uri); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Open(%s) = %v, want an error containing %q", c.uri, err, c.want)
		}
	}
}
