package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stirpipe/stirpipe/models/metrics"
)

// TestKilledRunResumes kills `stir run` at several points (while embedding, between
// stages, while reranking), reruns it on the same output and checks that the result equals
// an unbroken run's, byte for byte, and that the rerun reused the finished work.
func TestKilledRunResumes(t *testing.T) {
	cat := filepath.Join(t.TempDir(), "catalog")
	if out, err := exec.Command(stirBin, "synth", "--out", cat, "--products", "250", "--views_min", "3", "--views_max", "5",
		"--size", "64", "--validation_fraction", "0.3").CombinedOutput(); err != nil {
		t.Fatalf("synth: %v\n%s", err, out)
	}
	out := filepath.Join(t.TempDir(), "run")
	args := []string{"run", "--catalog", filepath.Join(cat, "catalog.csv"), "--output", out, "--threads", "1", "--k", "20", "--progress=false"}
	if b, err := stir(t, nil, args...); err != nil {
		t.Fatalf("unbroken run: %v\n%s", err, tail(b))
	}
	unbroken := filepath.Join(t.TempDir(), "unbroken")
	if err := os.Rename(out, unbroken); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		killAt string // a file pattern whose first match means the run is at that point
		reused string // a line the rerun prints (a regular expression)
	}{
		{"while embedding", filepath.Join(out, "embeddings", "_pieces", "piece-*.parquet"), `\n  reused +[1-9][0-9]* `},
		{"between stages", filepath.Join(out, "neighbors", "_manifest.json"), `\n  reused +[1-9][0-9]* .*complete from an earlier run`},
		{"while reranking", filepath.Join(out, "reranked", "_pieces", "piece-*.parquet"), `\n  pairs reused +[1-9][0-9]* `},
	} {
		t.Run(c.name, func(t *testing.T) {
			os.RemoveAll(out)
			killWhen(t, c.killAt, args...)
			b, err := stir(t, nil, args...)
			if err != nil {
				t.Fatalf("rerun: %v\n%s", err, tail(b))
			}
			if !regexp.MustCompile(c.reused).Match(b) {
				t.Errorf("the rerun does not say %q:\n%s", c.reused, b)
			}
			sameRuns(t, unbroken, out)
		})
	}
}

// killWhen starts stir with args and kills it as soon as a file matches pattern.
func killWhen(t *testing.T, pattern string, args ...string) {
	t.Helper()
	cmd := exec.Command(stirBin, args...)
	cmd.Dir = "../.."
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for deadline := time.Now().Add(3 * time.Minute); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		select {
		case err := <-done:
			t.Fatalf("the run ended (%v) before %s appeared:\n%s", err, pattern, tail(log.Bytes()))
		default:
		}
		if m, _ := filepath.Glob(pattern); len(m) > 0 {
			cmd.Process.Kill()
			<-done
			return
		}
	}
	cmd.Process.Kill()
	t.Fatalf("%s never appeared", pattern)
}

// sameRuns reports every file of two run directories that differs (metrics.json apart
// from its work counts).
func sameRuns(t *testing.T, want, got string) {
	t.Helper()
	var n int
	filepath.WalkDir(want, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		n++
		rel, _ := filepath.Rel(want, p)
		a, _ := os.ReadFile(p)
		b, err := os.ReadFile(filepath.Join(got, rel))
		if err != nil {
			t.Errorf("%s: %v", rel, err)
			return nil
		}
		if rel == "metrics.json" {
			a, b = dropWork(t, a), dropWork(t, b)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs from the unbroken run's", rel)
		}
		return nil
	})
	filepath.WalkDir(got, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(got, p)
			if _, err := os.Stat(filepath.Join(want, rel)); err != nil && !strings.HasPrefix(rel, "refresh") {
				t.Errorf("%s: left by the resumed run only", rel)
			}
		}
		return nil
	})
	if n < 10 {
		t.Fatalf("the unbroken run wrote %d files", n)
	}
}

func dropWork(t *testing.T, data []byte) []byte {
	out, err := metrics.WithoutWork(data)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
