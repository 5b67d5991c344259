package catalog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/stirpipe/stirpipe/schemas/blob"
)

const gsPrefix = "gs://"

// CleanPath checks that p is a safe image path relative to a dataset root and returns it
// cleaned (path.Clean: no ".", no "a/..", no repeated or trailing slashes). It rejects empty
// paths, NUL and other control characters, invalid UTF-8, backslashes, absolute paths,
// Windows drive paths, URLs, paths that name the root itself and any ".." that leaves the
// root. The errors wrap ErrUnsafePath.
//
// Cleaning follows local-file semantics for gs:// roots too, so a literal object name with
// "//" or "/./" in it cannot be addressed; such names do not occur in real datasets.
func CleanPath(p string) (string, error) {
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("%w %q: %s", ErrUnsafePath, p, why)
	}
	switch {
	case p == "":
		return bad("empty")
	case !utf8.ValidString(p):
		return bad("not valid UTF-8")
	case strings.ContainsRune(p, 0):
		return bad("contains NUL")
	case strings.ContainsFunc(p, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return bad("contains a control character")
	case strings.ContainsRune(p, '\\'):
		return bad(`contains a backslash; separate directories with "/"`)
	case strings.HasPrefix(p, "/"):
		return bad("absolute; want a path relative to the dataset root")
	case len(p) >= 2 && p[1] == ':' && isASCIILetter(p[0]):
		return bad("Windows drive path; want a path relative to the dataset root")
	case strings.Contains(p, "://"):
		return bad("a URL; want a path relative to the dataset root")
	}
	c := path.Clean(p)
	if c == "." {
		return bad("names the dataset root itself, not a file")
	}
	if c == ".." || strings.HasPrefix(c, "../") {
		return bad(`".." leaves the dataset root`)
	}
	return c, nil
}

func isASCIILetter(b byte) bool { return b|0x20 >= 'a' && b|0x20 <= 'z' }

// checkRoot validates a dataset root: a local directory path, or gs://bucket[/prefix].
func checkRoot(root string) error {
	switch {
	case root == "":
		return errors.New("empty dataset root")
	case strings.HasPrefix(root, gsPrefix):
		bucket, _, _ := strings.Cut(strings.TrimPrefix(root, gsPrefix), "/")
		if bucket == "" {
			return fmt.Errorf("dataset root %q: want gs://bucket or gs://bucket/prefix", root)
		}
	case strings.Contains(root, "://"):
		return fmt.Errorf("dataset root %q: unsupported scheme; want a local directory or gs://bucket/prefix", root)
	case strings.ContainsRune(root, 0):
		return fmt.Errorf("dataset root %q: contains NUL", root)
	}
	return nil
}

// Resolve joins a catalog path to a dataset root after checking it with CleanPath. root is
// a local directory or gs://bucket[/prefix]; the result is a local path or a gs:// URI
// that always lies under root (lexically: for local roots, use OpenLocal or CheckNoEscape
// to also refuse symlinks that lead out of the root).
func Resolve(root, relPath string) (string, error) {
	if err := checkRoot(root); err != nil {
		return "", err
	}
	clean, err := CleanPath(relPath)
	if err != nil {
		return "", err
	}
	if strings.HasPrefix(root, gsPrefix) {
		return strings.TrimRight(root, "/") + "/" + clean, nil
	}
	return filepath.Join(root, filepath.FromSlash(clean)), nil
}

// CheckNoEscape resolves relPath under a local root and follows symlinks in both; it
// returns the real path of the file, or an error wrapping ErrUnsafePath when a symlink
// leads outside the real root. The file must exist (a missing one wraps fs.ErrNotExist).
func CheckNoEscape(root, relPath string) (string, error) {
	if strings.HasPrefix(root, gsPrefix) {
		return "", fmt.Errorf("CheckNoEscape %q: not a local root", root)
	}
	full, err := Resolve(root, relPath)
	if err != nil {
		return "", err
	}
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return "", fmt.Errorf("dataset root: %w", err)
	}
	realFull, err := filepath.EvalSymlinks(full)
	if err != nil {
		return "", fmt.Errorf("image %q: %w", relPath, err)
	}
	rel, err := filepath.Rel(realRoot, realFull)
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", fmt.Errorf("%w %q: resolves to %s, outside the dataset root %s (symlink)", ErrUnsafePath, relPath, realFull, realRoot)
	}
	return realFull, nil
}

// OpenLocal opens relPath under a local root for reading through os.Root, so that neither
// ".." nor a symlink (even one swapped in after a check) can lead outside the root. Symlinks
// that stay inside the root are followed. An escape wraps ErrUnsafePath.
func OpenLocal(root, relPath string) (*os.File, error) {
	if strings.HasPrefix(root, gsPrefix) {
		return nil, fmt.Errorf("OpenLocal %q: not a local root", root)
	}
	// CheckNoEscape gives a clear error for escapes and missing files; os.Root enforces it.
	if _, err := CheckNoEscape(root, relPath); err != nil {
		return nil, err
	}
	clean, _ := CleanPath(relPath) // checked by CheckNoEscape
	r, err := os.OpenRoot(root)
	if err != nil {
		return nil, fmt.Errorf("dataset root: %w", err)
	}
	defer r.Close()
	f, err := r.Open(filepath.FromSlash(clean))
	if err != nil {
		return nil, fmt.Errorf("open image %q: %w", relPath, err)
	}
	return f, nil
}

// OpenImage opens a catalog image for reading: gs:// roots through package blob, local
// roots through OpenLocal. Either way the path cannot leave root.
func OpenImage(ctx context.Context, root, relPath string) (io.ReadCloser, error) {
	if !blob.IsGCS(root) {
		return OpenLocal(root, relPath)
	}
	uri, err := Resolve(root, relPath)
	if err != nil {
		return nil, err
	}
	return blob.Open(ctx, uri)
}
