// Package evaluate scores neighbour lists with OML's retrieval metrics (models/metrics):
// one mergeable accumulator per list file set, combined across workers, so the same code
// scores the embedding neighbours and the STIR-reranked lists.
package evaluate

import (
	"context"
	"fmt"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/stirpipe/stirpipe/models/metrics"
	"github.com/stirpipe/stirpipe/schemas/blob"
	"github.com/stirpipe/stirpipe/schemas/lists"
)

func init() {
	register.DoFn3x1[context.Context, string, func(lists.Record), error](&readListsFn{})
	register.Emitter1[lists.Record]()
	register.Combiner3[*metrics.Accumulator, lists.Record, *metrics.Accumulator](&scoreFn{})
}

// ReadLists reads every record of a neighbours (or reranked) output directory.
func ReadLists(s beam.Scope, dir string, files []string) beam.PCollection {
	s = s.Scope("ReadLists")
	uris := make([]string, len(files))
	for i, f := range files {
		uris[i] = blob.Join(dir, f)
	}
	return beam.ParDo(s, &readListsFn{}, beam.Reshuffle(s, beam.CreateList(s, uris)))
}

type readListsFn struct{}

func (fn *readListsFn) ProcessElement(ctx context.Context, uri string, emit func(lists.Record)) error {
	recs, _, err := lists.ReadFile(ctx, uri)
	if err != nil {
		return err
	}
	for _, r := range recs {
		emit(r)
	}
	return nil
}

// Score combines lists into one metrics accumulator (a single-element PCollection).
func Score(s beam.Scope, lists beam.PCollection, opts metrics.Options) beam.PCollection {
	s = s.Scope("Score")
	if err := opts.Validate(); err != nil {
		panic(fmt.Errorf("evaluate: %w", err))
	}
	return beam.Combine(s, &scoreFn{Options: opts}, lists)
}

// Query turns a neighbour list into the metrics' view of it: relevance of each retrieved
// item (same label as the query) and the number of relevant gallery items.
func Query(r lists.Record) metrics.Query {
	rel := make([]bool, len(r.NeighborLabels))
	for i, l := range r.NeighborLabels {
		rel[i] = l == r.QueryLabel
	}
	return metrics.Query{ID: r.QueryID, Label: r.QueryLabel, Category: r.QueryCategory, Relevant: rel, NRelevant: int(r.NRelevant)}
}

type scoreFn struct {
	Options metrics.Options
}

func (fn *scoreFn) CreateAccumulator() (*metrics.Accumulator, error) {
	return metrics.NewAccumulator(fn.Options)
}

func (fn *scoreFn) AddInput(a *metrics.Accumulator, r lists.Record) (*metrics.Accumulator, error) {
	if err := a.Add(Query(r)); err != nil {
		return nil, fmt.Errorf("evaluate: query %s: %w", r.QueryID, err)
	}
	return a, nil
}

func (fn *scoreFn) MergeAccumulators(a, b *metrics.Accumulator) (*metrics.Accumulator, error) {
	if err := a.Merge(b); err != nil {
		return nil, err
	}
	return a, nil
}

func (fn *scoreFn) ExtractOutput(a *metrics.Accumulator) *metrics.Accumulator { return a }
