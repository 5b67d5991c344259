package pipelines

import (
	"context"
	"errors"
	"io/fs"
	"testing"

	"github.com/stirpipe/stirpipe/schemas/blob"
)

// TestWithdraw: the markers of a run directory are its stage manifests and metrics file;
// withdrawing removes them, on disk or in Cloud Storage, and missing ones are no error.
func TestWithdraw(t *testing.T) {
	ctx := context.Background()
	for _, out := range []string{t.TempDir(), "gs://bucket/withdraw"} {
		m := MarkersOf(out)
		if m.Reranked != blob.Join(out, "reranked", "_manifest.json") || m.Metrics != blob.Join(out, "metrics.json") {
			t.Fatalf("markers of %s: %+v", out, m)
		}
		keep := blob.Join(out, EmbeddingsDir, "part-00000.parquet")
		for _, f := range append(m.All()[:3], keep) {
			if err := blob.WriteFile(ctx, f, []byte("x")); err != nil {
				t.Fatal(err)
			}
		}
		if err := Withdraw(ctx, m.All()...); err != nil { // the metrics file never existed
			t.Fatal(err)
		}
		for _, f := range m.All() {
			if _, err := blob.ReadFile(ctx, f); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s after Withdraw: %v, want it gone", f, err)
			}
		}
		if _, err := blob.ReadFile(ctx, keep); err != nil {
			t.Errorf("a part file was touched: %v", err)
		}
	}
}
