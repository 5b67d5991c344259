package ort

import (
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// ModelInfo is what is learnt about an ONNX file before a session loads it.
type ModelInfo struct {
	// SHA256 is the file's hex SHA-256.
	SHA256 string
	// Inputs and Outputs are the graph's, as Inspect reports them.
	Inputs, Outputs []TensorInfo
}

type describeKey struct {
	path  string
	size  int64
	mtime time.Time
}

var described = struct {
	sync.Mutex
	m map[describeKey]ModelInfo
}{m: map[describeKey]ModelInfo{}}

// Describe hashes and inspects an ONNX file once per process and version of the file (path,
// size, modification time): a job's preflight and the workers that share its process (local
// runners) then read and parse a large model once. The hash is also remembered across
// processes (see HashCacheDir). Init must have succeeded.
func Describe(path string) (ModelInfo, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return ModelInfo{}, fmt.Errorf("ONNX model path %s: %w", path, err)
	}
	st, err := os.Stat(abs)
	if err != nil {
		return ModelInfo{}, fmt.Errorf("ONNX model: %w", err)
	}
	key := describeKey{abs, st.Size(), st.ModTime()}
	described.Lock()
	info, ok := described.m[key]
	described.Unlock()
	if !ok {
		if info.SHA256, err = cachedSHA256(abs, st); err != nil {
			return ModelInfo{}, err
		}
		if info.Inputs, info.Outputs, err = Inspect(abs); err != nil {
			return ModelInfo{}, err
		}
		described.Lock()
		described.m[key] = info
		described.Unlock()
	}
	return ModelInfo{SHA256: info.SHA256, Inputs: cloneInfos(info.Inputs), Outputs: cloneInfos(info.Outputs)}, nil
}

// HashCacheDir is where model hashes are remembered between runs: $STIR_CACHE_DIR/sha256,
// else the user cache directory's stirpipe/sha256 ("" when there is none). An entry is
// named after the file's path, size, modification and change times and inode, so any
// write to the file, even one that restores its modification time, misses the cache.
// Hashing a ViT-S/16 file takes ≈ 0.25 s of every run otherwise. Entries unused for a
// month are removed.
func HashCacheDir() string {
	if d := os.Getenv("STIR_CACHE_DIR"); d != "" {
		return filepath.Join(d, "sha256")
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "stirpipe", "sha256")
	}
	return ""
}

// cachedSHA256 returns the hex SHA-256 of the file abs (whose Stat is st), from the hash
// cache when it holds this version of the file, else by reading it (and remembering it).
// The cache is best effort: when it cannot be read or written, the file is hashed.
func cachedSHA256(abs string, st os.FileInfo) (string, error) {
	id, ok := fileVersion(abs, st)
	dir := HashCacheDir()
	if !ok || dir == "" {
		return FileSHA256(abs)
	}
	entry := filepath.Join(dir, id)
	if b, err := os.ReadFile(entry); err == nil && isHexSHA256(string(b)) {
		now := time.Now()
		_ = os.Chtimes(entry, now, now) // last use, for pruning
		return string(b), nil
	}
	sum, err := FileSHA256(abs)
	if err != nil {
		return "", err
	}
	pruneHashCache(dir)
	if os.MkdirAll(dir, 0o755) == nil {
		if f, err := os.CreateTemp(dir, ".tmp-*"); err == nil {
			_, werr := f.WriteString(sum)
			if cerr := f.Close(); werr == nil && cerr == nil {
				werr = os.Rename(f.Name(), entry)
			}
			if werr != nil {
				os.Remove(f.Name())
			}
		}
	}
	return sum, nil
}

// hashCacheKeep is how long an unused hash cache entry is kept (entries of files that were
// rewritten or deleted are never read again).
const hashCacheKeep = 30 * 24 * time.Hour

// pruneHashCache removes the entries (and leftover temporary files) of dir unused for
// hashCacheKeep. It runs when a new entry is about to be written, so at most once per
// model file version.
func pruneHashCache(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if info, err := e.Info(); err == nil && !e.IsDir() && time.Since(info.ModTime()) > hashCacheKeep {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

func isHexSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}
