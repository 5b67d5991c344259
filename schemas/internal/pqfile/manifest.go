package pqfile

import (
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
)

// SortShards returns a copy of shards sorted by file name, the order a manifest lists them.
func SortShards(shards []Info) []Info {
	out := slices.Clone(shards)
	slices.SortFunc(out, func(a, b Info) int { return strings.Compare(a.File, b.File) })
	return out
}

// CheckShards reports every problem of a manifest's shard list and returns the rows it
// holds: each file must be a plain name inside the output directory (no separator, not
// hidden, not starting with "_" like the manifest or a temporary directory) ending in one of
// exts, listed once, with rows ≥ 0, bytes > 0 and a 64-hex-digit SHA-256.
func CheckShards(shards []Info, exts ...string) (rows int64, err error) {
	var errs []error
	seen := make(map[string]bool, len(shards))
	for i, s := range shards {
		okExt := slices.ContainsFunc(exts, func(e string) bool { return strings.HasSuffix(s.File, e) })
		if s.File == "" || s.File != path.Base(s.File) || strings.ContainsAny(s.File, `/\`) ||
			strings.HasPrefix(s.File, ".") || strings.HasPrefix(s.File, "_") || !okExt {
			errs = append(errs, fmt.Errorf("shard %d: file %q is not a plain *%s name inside the directory", i, s.File, strings.Join(exts, " or *")))
		}
		if seen[s.File] {
			errs = append(errs, fmt.Errorf("shard %d: file %q is listed twice", i, s.File))
		}
		seen[s.File] = true
		if s.Rows < 0 || s.Bytes <= 0 {
			errs = append(errs, fmt.Errorf("shard %s: rows %d and bytes %d must be ≥ 0 and > 0", s.File, s.Rows, s.Bytes))
		}
		if b, err := hex.DecodeString(s.SHA256); err != nil || len(b) != 32 {
			errs = append(errs, fmt.Errorf("shard %s: sha256 %q is not 64 hex digits", s.File, s.SHA256))
		}
		rows += s.Rows
	}
	return rows, errors.Join(errs...)
}
