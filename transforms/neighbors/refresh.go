package neighbors

import (
	"context"
	"fmt"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/stirpipe/stirpipe/models/knn"
	"github.com/stirpipe/stirpipe/schemas/changes"
	"github.com/stirpipe/stirpipe/schemas/lists"
)

func init() {
	register.DoFn3x1[context.Context, string, func(string, lists.Record), error](&reusableListsFn{})
	register.Function4x0[string, func(*lists.Record) bool, func(*int) bool, func(int, lists.Record)](routeEarlier)
	register.DoFn4x1[context.Context, int, func(*lists.Record) bool, func(int, int), error](&writeEarlierFn{})
	register.Emitter2[string, lists.Record]()
	register.Emitter2[int, lists.Record]()
	register.Emitter2[string, int]()
	register.Iter1[lists.Record]()
}

// Refresh makes the stage start from a previous run's lists: a query whose own row did not
// change and whose list holds no changed item is searched among the changed gallery rows
// only, and that search is merged with its previous list. Exact: the new top k of such a
// query is in its previous list or among the changed rows. Every other query, and every
// query of a list that lost an item (its k-th place is then unknown), is searched again in
// full. A worker holds the set of reused queries' ids besides its shard and tile.
type Refresh struct {
	// Lists are the previous run's neighbour-list files (same model, k and exclusions).
	Lists []string
	// Changes is the changes file the embed stage wrote against the previous run's
	// embeddings, from which those lists were made.
	Changes string
}

// On reports whether the stage refreshes.
func (r Refresh) On() bool { return len(r.Lists) > 0 }

// Names of the refresh metrics.
const (
	MetricListsReused   = "lists_reused"
	MetricQueriesInFull = "queries_searched_in_full"
)

var (
	listsReused   = beam.NewCounter(Stage, MetricListsReused)
	queriesInFull = beam.NewCounter(Stage, MetricQueriesInFull)
)

// reusableListsFn emits the previous lists that stay valid, keyed by query id: neither the
// query nor any of its neighbours changed. (Their n_relevant is not used: the new shards
// count it again.)
type reusableListsFn struct {
	Config Config

	changed *changes.Set
}

func (fn *reusableListsFn) Setup(ctx context.Context) (err error) {
	fn.changed, err = changes.Read(ctx, fn.Config.Refresh.Changes)
	return err
}

func (fn *reusableListsFn) ProcessElement(ctx context.Context, uri string, emit func(string, lists.Record)) error {
	recs, _, err := lists.ReadFile(ctx, uri)
	if err != nil {
		return fmt.Errorf("previous lists: %w", err)
	}
next:
	for _, r := range recs {
		if fn.changed.Has(r.QueryID) {
			continue
		}
		for _, id := range r.NeighborIDs {
			if fn.changed.Has(id) {
				continue next
			}
		}
		r.PairScores = nil
		emit(r.QueryID, r)
	}
	return nil
}

// routeEarlier sends a reused list to the tile its query is in now.
func routeEarlier(_ string, recs func(*lists.Record) bool, tiles func(*int) bool, emit func(int, lists.Record)) {
	var r lists.Record
	var t int
	if recs(&r) && tiles(&t) {
		emit(t, r)
	}
}

// earlierShard is the shard number of a tile's partial of reused lists: one past the last
// gallery shard.
func (c Config) earlierShard() int { return c.Shards() }

// writeEarlierFn writes a tile's reused lists as one more partial file of the tile.
type writeEarlierFn struct{ Config Config }

func (fn *writeEarlierFn) ProcessElement(ctx context.Context, t int, iter func(*lists.Record) bool, emit func(int, int)) error {
	cfg := fn.Config
	var recs []lists.Record
	var r lists.Record
	for iter(&r) {
		recs = append(recs, r)
		r = lists.Record{}
	}
	prov := cfg.Provenance
	prov.Stage = lists.StagePartial
	ns := cfg.earlierShard()
	if _, err := lists.WriteFile(ctx, lists.PartialURI(cfg.Output, t, cfg.Tiles(), ns, ns, cfg.Ext), recs, prov); err != nil {
		return err
	}
	listsReused.Inc(ctx, int64(len(recs)))
	emit(t, ns)
	return nil
}

// deltaGallery is the part of a gallery shard whose rows changed since the previous run.
func deltaGallery(g knn.Gallery, changed *changes.Set) knn.Gallery {
	d := knn.Gallery{Dim: g.Dim}
	for i, id := range g.IDs {
		if changed.Has(id) {
			d.IDs = append(d.IDs, id)
			d.Labels = append(d.Labels, g.Labels[i])
			d.Sequences = append(d.Sequences, g.Sequences[i])
			d.Vectors = append(d.Vectors, g.Vectors[i*g.Dim:(i+1)*g.Dim]...)
		}
	}
	return d
}
