package rerank

import (
	"context"
	"fmt"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/stirpipe/stirpipe/schemas/changes"
	"github.com/stirpipe/stirpipe/schemas/lists"
)

func init() {
	register.DoFn3x1[context.Context, string, func(string, Scored), error](&scoredPairsFn{})
	register.Emitter2[string, Scored]()
	register.Iter1[Scored]()
}

// Earlier is what a rerank stage may reuse: the reranked lists of a previous run, whose
// pair scores stand where neither image changed since (Changes, the embed stage's changes
// file against that run), and the pieces a killed run on the same output committed, made
// from the very lists this run reranks. Files of another pairwise model are ignored.
type Earlier struct {
	Previous []string
	Changes  string
	Pieces   []string
}

// Scored are the pair scores of one query's candidates that a rerun may reuse.
type Scored struct {
	IDs    []string
	Scores []float32
}

// Names of the reuse metrics.
const (
	MetricPairsReused   = "pairs_reused"
	MetricQueriesReused = "queries_all_pairs_reused"
)

var (
	pairsReused   = beam.NewCounter(Stage, MetricPairsReused)
	queriesReused = beam.NewCounter(Stage, MetricQueriesReused)
)

// readScored reads the earlier pair scores, keyed by query id.
func readScored(s beam.Scope, e Earlier, want lists.Provenance) beam.PCollection {
	s = s.Scope("EarlierScores")
	read := func(files []string, pieces bool) beam.PCollection {
		if len(files) == 0 {
			files = []string{""}
		}
		return beam.ParDo(s, &scoredPairsFn{Want: want, Pieces: pieces, Changes: e.Changes}, beam.Reshuffle(s, beam.CreateList(s, files)))
	}
	return beam.Flatten(s, read(e.Previous, false), read(e.Pieces, true))
}

// scoredPairsFn emits the reusable pair scores of one earlier reranked file.
type scoredPairsFn struct {
	Want    lists.Provenance
	Pieces  bool
	Changes string

	changed *changes.Set
}

func (fn *scoredPairsFn) Setup(ctx context.Context) (err error) {
	if !fn.Pieces && fn.Changes != "" {
		fn.changed, err = changes.Read(ctx, fn.Changes)
	}
	return err
}

func (fn *scoredPairsFn) ProcessElement(ctx context.Context, uri string, emit func(string, Scored)) error {
	if uri == "" {
		return nil
	}
	recs, prov, err := lists.ReadFile(ctx, uri)
	if err != nil {
		return fmt.Errorf("earlier reranked lists: %w", err)
	}
	if prov.PairModelSHA256 != fn.Want.PairModelSHA256 || fn.Pieces && prov.InputSnapshot != fn.Want.InputSnapshot {
		return nil // another model, or a piece of other lists: nothing to reuse
	}
	for _, r := range recs {
		if fn.changed != nil && fn.changed.Has(r.QueryID) {
			continue
		}
		var sc Scored
		for i, s := range r.PairScores {
			if id := r.NeighborIDs[i]; fn.changed == nil || !fn.changed.Has(id) {
				sc.IDs, sc.Scores = append(sc.IDs, id), append(sc.Scores, s)
			}
		}
		if len(sc.IDs) > 0 {
			emit(r.QueryID, sc)
		}
	}
	return nil
}
