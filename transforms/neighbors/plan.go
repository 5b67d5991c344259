package neighbors

import (
	"context"
	"fmt"

	"github.com/stirpipe/stirpipe/schemas/embeddings"
)

// Plan says how many queries and gallery rows each embeddings file holds, in manifest
// order. Gallery shards and query tiles are ranges of ordinals in that order, so every
// worker cuts them the same way without a shuffle.
type Plan struct {
	Files     []embeddings.Roles
	Queries   int64
	Galleries int64
	// Dim is the embeddings' dimension.
	Dim int
}

// PlanFor counts the roles of every embeddings file from its role columns alone.
func PlanFor(ctx context.Context, r *embeddings.Reader) (Plan, error) {
	p := Plan{Dim: r.Manifest().Provenance.Dim}
	for i, sh := range r.Manifest().Shards {
		roles, err := r.RolesIn(ctx, i)
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
