package pqfile

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
)

// testProvenance is a minimal provenance: listable unless it is "partial".
type testProvenance struct {
	Stage string `json:"stage"`
}

func (p testProvenance) Listable() error {
	if p.Stage == "partial" {
		return errors.New("partial files are never listed")
	}
	return nil
}

func (testProvenance) ShardExts() []string { return []string{".parquet"} }

var testOutput = Output{Format: "test/v1", Name: "test", Incomplete: "test output incomplete", Rerun: "rerun the test stage"}

const sha = "0000000000000000000000000000000000000000000000000000000000000000"

func TestManifestRoundTrip(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	shards := []Info{{File: "b.parquet", Rows: 2, Bytes: 9, SHA256: sha}, {File: "a.parquet", Rows: 5, Bytes: 8, SHA256: sha}}
	m := NewManifest(testOutput.Format, testProvenance{Stage: "final"}, shards)
	if m.Rows != 7 || m.Shards[0].File != "a.parquet" {
		t.Fatalf("NewManifest = %+v, want 7 rows and the shards sorted", m)
	}
	m.Format = ""
	if err := WriteManifest(ctx, testOutput, dir, m); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil || !strings.HasPrefix(string(data), "{\n  \"format\": \"test/v1\",\n  \"provenance\": {\n    \"stage\": \"final\"\n  },\n  \"rows\": 7,") ||
		!strings.HasSuffix(string(data), "}\n") {
		t.Fatalf("manifest bytes %q, %v", data, err)
	}
	got, err := ReadManifest[testProvenance](ctx, testOutput, dir)
	if err != nil || got.Rows != 7 || got.Provenance.Stage != "final" || got.Format != "test/v1" || len(got.Shards) != 2 {
		t.Fatalf("ReadManifest = %+v, %v", got, err)
	}
	sum := sha256.Sum256(data)
	if got, err := ManifestSHA256(ctx, dir); err != nil || got != hex.EncodeToString(sum[:]) {
		t.Fatalf("ManifestSHA256 = %q, %v; want %x", got, err, sum)
	}
}

func TestManifestErrors(t *testing.T) {
	ctx := context.Background()
	good := `"shards":[{"file":"a.parquet","rows":1,"bytes":3,"sha256":"` + sha + `"}]`
	for _, tc := range []struct {
		name     string
		manifest string // "" for none
		want     []string
		notExist bool
	}{
		{"missing", "", []string{"test output incomplete", ManifestFile + " is missing", "rerun the test stage"}, true},
		{"unknown field", `{"format":"test/v1","rows":1,"colour":2}`, []string{"test manifest", "decode", `unknown field "colour"`}, false},
		{"not JSON", `rows: 1`, []string{"test manifest", "decode"}, false},
		{"rows", `{"format":"test/v1","rows":2,` + good + `}`, []string{"test manifest", "rows is 2 but the shards hold 1"}, false},
		{"format", `{"format":"other/v1","rows":1,` + good + `}`, []string{"format is \"other/v1\", want \"test/v1\""}, false},
		{"provenance", `{"format":"test/v1","provenance":{"stage":"partial"},"rows":1,` + good + `}`, []string{"never listed"}, false},
		{"duplicate", `{"format":"test/v1","rows":2,"shards":[{"file":"a.parquet","rows":1,"bytes":3,"sha256":"` + sha + `"},{"file":"a.parquet","rows":1,"bytes":3,"sha256":"` + sha + `"}]}`, []string{"listed twice"}, false},
		{"escaping", `{"format":"test/v1","rows":1,"shards":[{"file":"../a.parquet","rows":1,"bytes":3,"sha256":"` + sha + `"}]}`, []string{"not a plain"}, false},
		{"sha", `{"format":"test/v1","rows":1,"shards":[{"file":"a.parquet","rows":1,"bytes":3,"sha256":"xyz"}]}`, []string{"64 hex digits"}, false},
		{"extension", `{"format":"test/v1","rows":0,"shards":[{"file":"a.arrow","rows":0,"bytes":3,"sha256":"` + sha + `"}]}`, []string{"not a plain *.parquet name"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.manifest != "" {
				if err := os.WriteFile(filepath.Join(dir, ManifestFile), []byte(tc.manifest), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			_, err := ReadManifest[testProvenance](ctx, testOutput, dir)
			if err == nil || errors.Is(err, fs.ErrNotExist) != tc.notExist {
				t.Fatalf("ReadManifest = %v, want an error (fs.ErrNotExist: %t)", err, tc.notExist)
			}
			for _, s := range append(tc.want, dir) {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
	dir := t.TempDir()
	err := WriteManifest(ctx, testOutput, dir, NewManifest("", testProvenance{Stage: "partial"}, nil))
	if err == nil || !strings.Contains(err.Error(), "never listed") {
		t.Fatalf("WriteManifest of an invalid manifest = %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, ManifestFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("an invalid manifest was written: %v", err)
	}
	if _, err := ManifestSHA256(ctx, dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("ManifestSHA256 without a manifest = %v, want fs.ErrNotExist", err)
	}
}

func TestCheckListed(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	shards := []Info{{File: "a.parquet", Bytes: 3}, {File: "b.parquet", Bytes: 4}}
	var checked []string
	err := CheckListed(ctx, dir, shards, func(uri string, s Info) error {
		checked = append(checked, uri)
		if s.File == "b.parquet" {
			return errors.New("b is bad")
		}
		return nil
	})
	if err == nil || err.Error() != "b is bad" {
		t.Errorf("CheckListed = %v, want the error of b only", err)
	}
	if len(checked) != 2 || checked[0] != filepath.Join(dir, "a.parquet") || checked[1] != filepath.Join(dir, "b.parquet") {
		t.Errorf("checked %v, want both local shards by path", checked)
	}
	if err := CheckSize("x.parquet", 10, 10); err != nil {
		t.Errorf("CheckSize of an equal size: %v", err)
	}
	if err := CheckSize("x.parquet", 9, 10); err == nil || !strings.Contains(err.Error(), "x.parquet: 9 bytes, manifest says 10") {
		t.Errorf("CheckSize of another size: %v", err)
	}
}

func TestMetadata(t *testing.T) {
	kv := map[string]string{"s": "text", "n": "42", "empty": "", "b": "true", "bad": "x"}
	for _, tc := range []struct {
		name string
		get  func(m *Metadata) any
		want any
		err  string
	}{
		{"string", func(m *Metadata) any { return m.String("s") }, "text", ""},
		{"missing string", func(m *Metadata) any { return m.String("nope") }, "", "metadata key nope is missing"},
		{"int", func(m *Metadata) any { return m.Int("n") }, 42, ""},
		{"empty int", func(m *Metadata) any { return m.Int("empty") }, 0, ""},
		{"bad int", func(m *Metadata) any { return m.Int("bad") }, 0, "metadata bad: "},
		{"missing int", func(m *Metadata) any { return m.Int("nope") }, 0, "metadata key nope is missing"},
		{"bool", func(m *Metadata) any { return m.Bool("b") }, true, ""},
		{"empty bool", func(m *Metadata) any { return m.Bool("empty") }, false, ""},
		{"bad bool", func(m *Metadata) any { return m.Bool("bad") }, false, "metadata bad: "},
	} {
		m := NewMetadata(kv)
		got := tc.get(m)
		err := m.Err()
		if got != tc.want || (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s: got %v, %v; want %v and an error mentioning %q", tc.name, got, err, tc.want, tc.err)
		}
	}
	m := NewMetadata(nil)
	m.String("a")
	m.Int("b")
	if err := m.Err(); err == nil || !strings.Contains(err.Error(), "key a is missing\nmetadata key b is missing") {
		t.Errorf("two problems: %v, want both in order", err)
	}
}

func TestCollect(t *testing.T) {
	each := func(stopAt int) func(fn func(int) error) error {
		return func(fn func(int) error) error {
			for i := range 5 {
				if i == stopAt {
					return errors.New("stopped")
				}
				if err := fn(i * i); err != nil {
					return err
				}
			}
			return nil
		}
	}
	got, err := Collect(5, each(-1))
	if err != nil || len(got) != 5 || got[4] != 16 || cap(got) != 5 {
		t.Fatalf("Collect = %v (cap %d), %v; want [0 1 4 9 16]", got, cap(got), err)
	}
	if got, err := Collect(5, each(2)); err == nil || got != nil {
		t.Fatalf("Collect with a failing iteration = %v, %v; want nil and its error", got, err)
	}
}
