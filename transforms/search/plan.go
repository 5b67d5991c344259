package search

import (
	"context"
	"fmt"

	"github.com/stirpipe/stirpipe/schemas/catalog"
	"github.com/stirpipe/stirpipe/schemas/embeddings"
)

// IsQuery reports whether a catalog row is a retrieval query: a validation row marked query.
func IsQuery(r catalog.Row) bool { return r.Split == catalog.SplitValidation && r.IsQuery }

// IsGallery reports whether a catalog row is in the retrieval gallery.
func IsGallery(r catalog.Row) bool { return r.Split == catalog.SplitValidation && r.IsGallery }

// Plan says how many queries and gallery rows each embeddings file holds, in manifest
// order. Gallery shards and query tiles are ranges of ordinals in that order, so every
// worker cuts them the same way without a shuffle.
type Plan struct {
	Files     []Roles
	Queries   int64
	Galleries int64
	// Dim is the embeddings' dimension.
	Dim int
}

// Roles counts the queries and gallery rows of one embeddings file.
type Roles struct{ Queries, Galleries int64 }

// PlanFor reads the embeddings output once, streaming, and counts the roles of its rows.
func PlanFor(ctx context.Context, r *embeddings.Reader) (Plan, error) {
	p := Plan{Dim: r.Manifest().Dim}
	for i, sh := range r.Manifest().Shards {
		var roles Roles
		err := r.EachIn(ctx, i, func(rec embeddings.Record) error {
			if IsQuery(rec.Row) {
				roles.Queries++
			}
			if IsGallery(rec.Row) {
				roles.Galleries++
			}
			return nil
		})
		if err != nil {
			return Plan{}, fmt.Errorf("plan %s: %w", sh.File, err)
		}
		p.Files = append(p.Files, roles)
		p.Queries += roles.Queries
		p.Galleries += roles.Galleries
	}
	return p, nil
}

// ceilDiv returns ⌈a/b⌉ for a ≥ 0, b > 0.
func ceilDiv(a, b int64) int { return int((a + b - 1) / b) }
