package manifest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/stirpipe/stirpipe/schemas/blob"
)

// Open is Load for a local path or a gs:// URI. A remote model file is copied once into
// CacheDir under a name derived from its URI and object generation, so the workers of a
// Dataflow or Flink job, and later runs on the same machine, read the same local copy, and a
// rewritten object is fetched anew. The manifest itself is read on every call.
func Open(ctx context.Context, uri string) (*Manifest, error) {
	if !blob.IsGCS(uri) {
		return Load(uri)
	}
	if strings.EqualFold(path.Ext(uri), ".onnx") {
		uri = PathFor(uri)
	}
	data, err := blob.ReadFile(ctx, uri)
	if err != nil {
		return nil, fmt.Errorf("model manifest: %w (every ONNX file needs a manifest beside it, e.g. model.onnx → model.json)", err)
	}
	m, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("model manifest %s: %w", uri, err)
	}
	rel := path.Clean(m.Model)
	if path.IsAbs(rel) || rel == ".." || strings.HasPrefix(rel, "../") || strings.Contains(rel, "://") {
		return nil, fmt.Errorf("model manifest %s: model %q must be a relative path beside or below the manifest", uri, m.Model)
	}
	src := uri[:strings.LastIndex(uri, "/")+1] + rel
	if m.Model, err = fetch(ctx, src); err != nil {
		return nil, fmt.Errorf("model manifest %s: %w", uri, err)
	}
	return m, nil
}

// CheckModel returns an error when a worker's model file (hex SHA-256 got) is not the one the
// job was launched with (want; "" = unchecked): a model replaced mid-job would otherwise
// mix two models' outputs under one provenance.
func CheckModel(uri, want, got string) error {
	if want == "" || want == got {
		return nil
	}
	return fmt.Errorf("model %s changed since the job was launched (sha256 %.12s…, launched with %.12s…): rerun the job so that every worker uses one model", uri, got, want)
}

// CacheDir is where remote model files are copied: $STIR_CACHE_DIR/models, else the user
// cache directory's stirpipe/models, else the system temporary directory's.
func CacheDir() string {
	if d := os.Getenv("STIR_CACHE_DIR"); d != "" {
		return filepath.Join(d, "models")
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "stirpipe", "models")
	}
	return filepath.Join(os.TempDir(), "stirpipe", "models")
}

// keepVersions is how long a cached copy of an older version of a model outlives its last
// use: jobs still running with it may start more workers.
const keepVersions = 24 * time.Hour

// fetch returns the local copy of the object src, copying it first when this version of it
// is not in the cache: CacheDir/<hash of src>/<hash of version>/<name>. The copy appears
// atomically, so processes fetching at once each write a whole file and readers never see
// part of one. A new copy removes the other versions of src not used for keepVersions.
func fetch(ctx context.Context, src string) (string, error) {
	info, err := blob.Stat(ctx, src)
	if err != nil {
		return "", fmt.Errorf("model file: %w", err)
	}
	root := filepath.Join(CacheDir(), shortHash(src))
	dir := filepath.Join(root, shortHash(info.Version))
	dst := filepath.Join(dir, path.Base(src))
	if st, err := os.Stat(dst); err == nil && st.Size() == info.Size {
		now := time.Now()
		_ = os.Chtimes(dir, now, now) // last use, for pruning
		return dst, nil
	}
	r, err := blob.Open(ctx, src)
	if err != nil {
		return "", fmt.Errorf("model file: %w", err)
	}
	defer r.Close()
	w, err := blob.Create(ctx, dst)
	if err != nil {
		return "", fmt.Errorf("model cache (set STIR_CACHE_DIR to a writable directory): %w", err)
	}
	defer w.Abort()
	n, err := io.Copy(w, r)
	if err != nil {
		return "", fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	if n != info.Size {
		return "", fmt.Errorf("copy %s: got %d bytes, the object has %d (was it rewritten during the copy? run again)", src, n, info.Size)
	}
	if err := w.Commit(); err != nil {
		return "", err
	}
	prune(root, dir)
	return dst, nil
}

// prune removes the version folders under root, other than keep, unused for keepVersions.
// It is best effort: a folder that cannot be removed stays.
func prune(root, keep string) {
	entries, _ := os.ReadDir(root)
	for _, e := range entries {
		dir := filepath.Join(root, e.Name())
		if info, err := e.Info(); err == nil && dir != keep && time.Since(info.ModTime()) > keepVersions {
			_ = os.RemoveAll(dir)
		}
	}
}

func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:12])
}
