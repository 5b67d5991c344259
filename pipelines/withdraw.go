package pipelines

import (
	"context"
	"fmt"

	"github.com/stirpipe/stirpipe/schemas/blob"
	"github.com/stirpipe/stirpipe/schemas/embeddings"
	"github.com/stirpipe/stirpipe/schemas/lists"
)

// Markers are the files whose presence says an output under a run's directory is complete:
// each stage directory's manifest (written last) and the metrics file.
type Markers struct{ Embeddings, Neighbors, Reranked, Metrics string }

// MarkersOf returns the completion markers of the outputs under a run directory.
func MarkersOf(output string) Markers {
	return Markers{
		Embeddings: blob.Join(output, EmbeddingsDir, embeddings.ManifestFile),
		Neighbors:  blob.Join(output, NeighborsDir, lists.ManifestFile),
		Reranked:   blob.Join(output, RerankedDir, lists.ManifestFile),
		Metrics:    blob.Join(output, MetricsFile),
	}
}

// All lists every marker, in stage order.
func (m Markers) All() []string { return []string{m.Embeddings, m.Neighbors, m.Reranked, m.Metrics} }

// Withdraw removes the completion markers of outputs a run is about to rewrite, so that
// until it succeeds they read as incomplete instead of as an earlier run's: a reader never
// takes a mix of old and new files, or an old metrics file, for this run's result. Call it
// once the stage's Prepare has succeeded (a bad input must not touch earlier outputs).
func Withdraw(ctx context.Context, markers ...string) error {
	for _, m := range markers {
		if err := blob.Remove(ctx, m); err != nil {
			return fmt.Errorf("withdraw the earlier output's marker %s: %w", m, err)
		}
	}
	return nil
}
