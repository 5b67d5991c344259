package rerank

import (
	"context"
	"fmt"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/stirpipe/stirpipe/models/stir"
	"github.com/stirpipe/stirpipe/schemas/changes"
	"github.com/stirpipe/stirpipe/schemas/lists"
	"github.com/stirpipe/stirpipe/transforms/progress"
)

func init() {
	register.DoFn3x1[context.Context, string, func(string, Scored), error](&scoredPairsFn{})
	register.DoFn7x1[context.Context, string, func(*lists.Record) bool, func(*Scored) bool,
		func(lists.Record), func(lists.Record), func(string, Scored), error](&splitKnownFn{})
	register.Function1x2[kvScored, string, Scored](unKV)
	register.Emitter2[string, Scored]()
	register.Iter1[Scored]()
}

// On reports whether there is anything to reuse.
func (e Earlier) On() bool { return len(e.Previous)+len(e.Pieces) > 0 }

// kvScored is an element of an empty scores collection (a full run's).
type kvScored struct {
	Query string
	S     Scored
}

func unKV(kv kvScored) (string, Scored) { return kv.Query, kv.S }

// newJob is a query's head with its earlier scores filled in and the positions still to
// score in todo.
func newJob(rec lists.Record, known map[string]float32, topN int) job {
	h := stir.Head(len(rec.NeighborIDs), topN)
	j := job{rec: rec, scores: make([]float32, h)}
	for i, id := range rec.NeighborIDs[:h] {
		if s, ok := known[id]; ok {
			j.scores[i] = s
		} else {
			j.todo = append(j.todo, i)
		}
	}
	return j
}

// knownScores collects a query's earlier pair scores by candidate.
func knownScores(earlier func(*Scored) bool) map[string]float32 {
	known := map[string]float32{}
	var sc Scored
	for earlier(&sc) {
		for i, id := range sc.IDs {
			known[id] = sc.Scores[i]
		}
	}
	return known
}

// splitKnownFn reranks the lists whose every head pair was scored before, and passes the
// others on, with their earlier scores, to be joined with the catalog and scored.
type splitKnownFn struct {
	Config Config

	report *progress.Reporter
}

func (fn *splitKnownFn) Setup() {
	if fn.Config.Progress {
		fn.report = progress.Shared(Stage, "queries", fn.Config.Total)
	}
}

func (fn *splitKnownFn) ProcessElement(ctx context.Context, q string, recs func(*lists.Record) bool, earlier func(*Scored) bool,
	done func(lists.Record), pending func(lists.Record), scores func(string, Scored)) error {
	known := knownScores(earlier)
	var rec lists.Record
	waiting := false
	for recs(&rec) {
		j := newJob(rec, known, fn.Config.TopN)
		if len(j.todo) > 0 || len(j.scores) == 0 {
			pending(rec)
			waiting = true
			continue
		}
		out, err := apply(rec, j.scores, fn.Config.TopN)
		if err != nil {
			return err
		}
		done(out)
		pairsReused.Inc(ctx, int64(len(j.scores)))
		queriesReranked.Inc(ctx, 1)
		queriesReused.Inc(ctx, 1)
		fn.report.Add(1)
	}
	if waiting && len(known) > 0 {
		var sc Scored
		for id, s := range known {
			sc.IDs, sc.Scores = append(sc.IDs, id), append(sc.Scores, s)
		}
		scores(q, sc)
	}
	return nil
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
