// Package duckdbtest runs the Node.js scripts with which the tests of package schemas read
// their Parquet files back with DuckDB, a reader independent of the Go code that wrote them.
// The pinned @duckdb/node-api lives in schemas/embeddings/testdata/duckdb (installed by
// `npm ci` there); scripts elsewhere load it from that directory.
//
// Without node or that install a test is skipped, unless STIR_REQUIRE_DUCKDB=1 (as in CI),
// where it fails.
package duckdbtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// NodeDir returns the absolute path of the npm project holding @duckdb/node-api.
func NodeDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "embeddings", "testdata", "duckdb")
}

// Run runs `node script args...` in the script's directory and returns its standard
// output; script is relative to the test's package directory or absolute. It skips t (or,
// with STIR_REQUIRE_DUCKDB=1, fails it) when node or @duckdb/node-api is missing, and fails
// t when the script fails, with its standard error.
func Run(t testing.TB, script string, args ...string) []byte {
	t.Helper()
	_, statErr := os.Stat(filepath.Join(NodeDir(), "node_modules", "@duckdb", "node-api"))
	node, pathErr := exec.LookPath("node")
	if statErr != nil || pathErr != nil {
		msg := "DuckDB reader not installed: run `npm ci --prefix schemas/embeddings/testdata/duckdb` (needs node)"
		if os.Getenv("STIR_REQUIRE_DUCKDB") == "1" {
			t.Fatalf("%s; STIR_REQUIRE_DUCKDB=1 forbids skipping (%v, %v)", msg, statErr, pathErr)
		}
		t.Skip(msg)
	}
	abs, err := filepath.Abs(script)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(node, append([]string{filepath.Base(abs)}, args...)...)
	cmd.Dir = filepath.Dir(abs)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node %s: %v\n%s", script, err, stderr.String())
	}
	return out
}
