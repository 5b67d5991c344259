package catalog

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stirpipe/stirpipe/schemas/blob"
)

func TestResolve(t *testing.T) {
	tests := []struct {
		root, rel, want string // want "" = error
	}{
		{"/data", "a.jpg", "/data/a.jpg"},
		{"/data", "img/./x/../a.jpg", "/data/img/a.jpg"},
		{"/data", "a/../b.jpg", "/data/b.jpg"},
		{"/data", "img//a.jpg", "/data/img/a.jpg"},
		{"/data", ".../x.jpg", "/data/.../x.jpg"},
		{"/data", "..a.jpg", "/data/..a.jpg"},
		{"data", "a.jpg", "data/a.jpg"},
		{"/data", "../x", ""},
		{"/data", "..", ""},
		{"/data", "a/../../x", ""},
		{"/data", "a/b/../../../x", ""},
		{"/data", "/etc/passwd", ""},
		{"/data", "", ""},
		{"/data", ".", ""},
		{"/data", "a/..", ""},
		{"/data", "a\x00b.jpg", ""},
		{"/data", "a.jpg\x00/../../etc/passwd", ""},
		{"/data", `..\x`, ""},
		{"/data", `img\..\..\x`, ""},
		{"/data", "C:/Windows/x", ""},
		{"/data", "a\nb.jpg", ""},
		{"/data", "a\xffb.jpg", ""},
		{"/data", "gs://other/x.jpg", ""},
		{"/data", "file:///etc/passwd", ""},
		{"gs://bucket/prefix", "img/a.jpg", "gs://bucket/prefix/img/a.jpg"},
		{"gs://bucket/prefix/", "a.jpg", "gs://bucket/prefix/a.jpg"},
		{"gs://bucket", "a/./b.jpg", "gs://bucket/a/b.jpg"},
		{"gs://bucket/prefix", "../x.jpg", ""},
		{"gs://bucket/prefix", "a/../../other/x.jpg", ""},
		{"gs://bucket/prefix", "/x.jpg", ""},
		{"gs://", "a.jpg", ""},
		{"gs:///a", "a.jpg", ""},
		{"s3://bucket", "a.jpg", ""},
		{"", "a.jpg", ""},
	}
	for _, tc := range tests {
		got, err := Resolve(tc.root, tc.rel)
		if tc.want == "" {
			if err == nil {
				t.Errorf("Resolve(%q, %q) = %q, want an error", tc.root, tc.rel, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Resolve(%q, %q) = %q, %v; want %q", tc.root, tc.rel, got, err, tc.want)
		}
	}
	// Path errors (as opposed to root errors) name the kind.
	if _, err := Resolve("/data", "../x"); !errors.Is(err, ErrUnsafePath) {
		t.Errorf("Resolve(../x) error %v does not wrap ErrUnsafePath", err)
	}
}

// symlinkTree builds root/{img.jpg, sub/inner -> ../img.jpg, out -> ../outside,
// abs -> /…/outside/secret.jpg} next to outside/secret.jpg, and a link to root itself.
func symlinkTree(t *testing.T) (root, rootLink string) {
	t.Helper()
	dir := t.TempDir()
	root = filepath.Join(dir, "root")
	outside := filepath.Join(dir, "outside")
	for _, d := range []string{filepath.Join(root, "sub"), outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(root, "img.jpg"), "inside")
	write(filepath.Join(outside, "secret.jpg"), "secret")
	links := map[string]string{
		filepath.Join(root, "sub", "inner.jpg"): filepath.Join("..", "img.jpg"),
		filepath.Join(root, "out"):              filepath.Join("..", "outside"),
		filepath.Join(root, "abs.jpg"):          filepath.Join(outside, "secret.jpg"),
		filepath.Join(dir, "rootlink"):          root,
	}
	for link, target := range links {
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	return root, filepath.Join(dir, "rootlink")
}

func TestLocalSymlinkEscape(t *testing.T) {
	root, rootLink := symlinkTree(t)
	tests := []struct {
		root, rel string
		want      string // file content; "" = refused
		kind      error
	}{
		{root, "img.jpg", "inside", nil},
		{root, "sub/inner.jpg", "inside", nil},
		{rootLink, "sub/../img.jpg", "inside", nil},
		{root, "out/secret.jpg", "", ErrUnsafePath},
		{root, "abs.jpg", "", ErrUnsafePath},
		{rootLink, "out/secret.jpg", "", ErrUnsafePath},
		{root, "../outside/secret.jpg", "", ErrUnsafePath},
		{root, "missing.jpg", "", fs.ErrNotExist},
	}
	for _, tc := range tests {
		_, checkErr := CheckNoEscape(tc.root, tc.rel)
		f, openErr := OpenLocal(tc.root, tc.rel)
		rc, imgErr := OpenImage(context.Background(), tc.root, tc.rel)
		if tc.want == "" {
			for name, err := range map[string]error{"CheckNoEscape": checkErr, "OpenLocal": openErr, "OpenImage": imgErr} {
				if !errors.Is(err, tc.kind) {
					t.Errorf("%s(%s, %q) error = %v, want %v", name, filepath.Base(tc.root), tc.rel, err, tc.kind)
				}
			}
			if f != nil {
				f.Close()
			}
			if rc != nil {
				rc.Close()
			}
			continue
		}
		if checkErr != nil || openErr != nil || imgErr != nil {
			t.Errorf("(%s, %q): errors %v / %v / %v", filepath.Base(tc.root), tc.rel, checkErr, openErr, imgErr)
			continue
		}
		for _, r := range []io.ReadCloser{f, rc} {
			b, err := io.ReadAll(r)
			r.Close()
			if err != nil || string(b) != tc.want {
				t.Errorf("(%s, %q) read %q, %v; want %q", filepath.Base(tc.root), tc.rel, b, err, tc.want)
			}
		}
	}
}

func TestOpenImageGCS(t *testing.T) {
	ctx := context.Background()
	if err := blob.WriteFile(ctx, "gs://"+testBucket+"/ds/img/a.jpg", []byte("pixels")); err != nil {
		t.Fatal(err)
	}
	if err := blob.WriteFile(ctx, "gs://"+testBucket+"/secret.jpg", []byte("secret")); err != nil {
		t.Fatal(err)
	}
	root := "gs://" + testBucket + "/ds"
	rc, err := OpenImage(ctx, root, "img/./a.jpg")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || string(b) != "pixels" {
		t.Errorf("read %q, %v", b, err)
	}
	for _, rel := range []string{"../secret.jpg", "img/../../secret.jpg", "/secret.jpg"} {
		if rc, err := OpenImage(ctx, root, rel); !errors.Is(err, ErrUnsafePath) {
			t.Errorf("OpenImage(%q) error = %v, want ErrUnsafePath", rel, err)
			if rc != nil {
				rc.Close()
			}
		}
	}
	if _, err := OpenImage(ctx, root, "img/missing.jpg"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing object: %v", err)
	}
	if _, err := OpenLocal(root, "img/a.jpg"); err == nil || !strings.Contains(err.Error(), "not a local root") {
		t.Errorf("OpenLocal on gs:// root: %v", err)
	}
}
