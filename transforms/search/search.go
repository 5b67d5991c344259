// Package search is the pipeline's neighbours stage: exact top-k neighbour lists for every
// query, computed over a gallery cut into shards so that no worker holds more than one
// gallery shard and a query tile, whatever the catalog's size.
//
// Each gallery shard is a work item: a worker loads its shard, streams every query tile
// past it with the exact engine of models/knn, and writes one partial neighbour file per
// tile (the shard's top-k and its count of relevant items). A tile's partials are then
// merged into the tile's final file, ordered by (distance, neighbour id), and a manifest is
// written last. Beam moves only small keys; the lists travel through storage.
package search

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/stirpipe/stirpipe/models/knn"
	"github.com/stirpipe/stirpipe/models/ort"
	"github.com/stirpipe/stirpipe/schemas/blob"
	"github.com/stirpipe/stirpipe/schemas/catalog"
	"github.com/stirpipe/stirpipe/schemas/embeddings"
	"github.com/stirpipe/stirpipe/schemas/neighbors"
	"github.com/stirpipe/stirpipe/schemas/rejects"
	"github.com/stirpipe/stirpipe/transforms/progress"
	"github.com/stirpipe/stirpipe/transforms/sink"
)

func init() {
	register.DoFn4x1[context.Context, int, func(int, int), func(rejects.Record), error](&searchShardFn{})
	register.DoFn4x1[context.Context, int, func(*int) bool, func(neighbors.ShardInfo), error](&mergeTileFn{})
	register.DoFn3x1[context.Context, []byte, func(*neighbors.ShardInfo) bool, error](&writeManifestFn{})
	register.Emitter2[int, int]()
	register.Emitter1[neighbors.ShardInfo]()
	register.Iter1[*int]()
	register.Iter1[*neighbors.ShardInfo]()
}

// Stage is the stage name of this transform's rejects.
const Stage = "neighbors"

var (
	queriesSearched = beam.NewCounter("neighbors", "query_tiles_searched")
	vectorsRejected = beam.NewCounter("neighbors", "vectors_rejected")
	tileLatency     = beam.NewDistribution("neighbors", "tile_latency_ms")
)

// Config configures the neighbours stage; it travels to the workers.
type Config struct {
	// Embeddings is the embeddings output directory (local or gs://).
	Embeddings string
	// Output is the neighbours output directory.
	Output string
	// Ext is the file format: neighbors.ExtParquet or neighbors.ExtArrow.
	Ext string
	// Engine configures the exact search (K, normalisation, exclusions, threads, provider).
	Engine knn.Options
	// ShardSize is the number of gallery rows per shard.
	ShardSize int
	// TileSize is the number of queries per tile (and per output file).
	TileSize int
	// Library is the ONNX Runtime shared library ("" = default search).
	Library string
	// Plan counts the roles of the embeddings' rows (PlanFor).
	Plan Plan
	// Provenance is written into every output file.
	Provenance neighbors.Provenance
	// Progress turns on progress lines (local runs).
	Progress bool
}

// Shards is the number of gallery shards.
func (c Config) Shards() int { return ceilDiv(c.Plan.Galleries, int64(c.ShardSize)) }

// Tiles is the number of query tiles.
func (c Config) Tiles() int { return ceilDiv(c.Plan.Queries, int64(c.TileSize)) }

// Validate checks the configuration against the plan.
func (c Config) Validate() error {
	var errs []error
	if err := c.Engine.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.ShardSize < 1 || c.TileSize < 1 {
		errs = append(errs, fmt.Errorf("shard size and tile size must be ≥ 1, got %d and %d", c.ShardSize, c.TileSize))
	}
	if c.Plan.Queries == 0 {
		errs = append(errs, errors.New("the embeddings hold no query (validation rows with is_query)"))
	}
	if c.Plan.Galleries == 0 {
		errs = append(errs, errors.New("the embeddings hold no gallery row (validation rows with is_gallery)"))
	}
	if k := int64(c.Engine.K); k > c.Plan.Galleries && c.Plan.Galleries > 0 {
		errs = append(errs, fmt.Errorf("k = %d is larger than the gallery (%d rows): choose k ≤ %d", k, c.Plan.Galleries, c.Plan.Galleries))
	}
	if c.Ext != neighbors.ExtParquet && c.Ext != neighbors.ExtArrow {
		errs = append(errs, fmt.Errorf("format must be %s or %s, got %q", neighbors.ExtParquet, neighbors.ExtArrow, c.Ext))
	}
	return errors.Join(errs...)
}

// Search builds the neighbours stage. It returns the rejects of vectors that cannot be
// searched (non-finite, zero, or not unit length for a normalised model); their rows get no
// list and are excluded from every gallery.
func Search(s beam.Scope, cfg Config) beam.PCollection {
	s = s.Scope("Neighbors")
	if err := cfg.Validate(); err != nil {
		panic(fmt.Errorf("search: %w", err))
	}
	shards := make([]int, cfg.Shards())
	for i := range shards {
		shards[i] = i
	}
	ids := beam.Reshuffle(s, beam.CreateList(s, shards))
	parts, rejs := beam.ParDo2(s, &searchShardFn{Config: cfg}, ids)
	infos := beam.ParDo(s, &mergeTileFn{Config: cfg}, beam.GroupByKey(s, parts))
	beam.ParDo0(s, &writeManifestFn{Config: cfg}, beam.Impulse(s), beam.SideInput{Input: infos})
	return rejs
}

// oneShardAtATime keeps a worker process to one gallery shard in memory: the engine uses
// every core for one shard, so running two would only add memory. oneMergeAtATime does
// the same for the merges of tiles, which each hold a tile's partial lists.
var oneShardAtATime, oneMergeAtATime sync.Mutex

type searchShardFn struct {
	Config Config

	engine *knn.Engine
	report *progress.Reporter
}

func (fn *searchShardFn) Setup() error {
	if err := ort.Init(fn.Config.Library); err != nil {
		return err
	}
	var err error
	fn.engine, err = knn.NewEngine(fn.Config.Engine)
	if fn.Config.Progress {
		fn.report = progress.Shared("neighbors", "query tiles × gallery shards", int64(fn.Config.Shards()*fn.Config.Tiles()))
	}
	return err
}

func (fn *searchShardFn) Teardown() error {
	if fn.engine != nil {
		return fn.engine.Close()
	}
	return nil
}

// shard is one gallery shard in memory, sorted by item id.
type shard struct {
	knn.Gallery
	index     *knn.Index
	relevant  map[int64]int64  // gallery rows per label
	sameSeq   map[string]int64 // gallery rows per (label, sequence)
	positions map[string]int   // row of each item id
}

func (fn *searchShardFn) ProcessElement(ctx context.Context, s int, emit func(int, int), reject func(rejects.Record)) error {
	oneShardAtATime.Lock()
	defer oneShardAtATime.Unlock()
	cfg := fn.Config
	r, err := embeddings.Open(ctx, cfg.Embeddings)
	if err != nil {
		return err
	}
	g, err := fn.loadShard(ctx, r, s, reject)
	if err != nil {
		return err
	}
	prov := cfg.Provenance
	prov.Stage = neighbors.StagePartial
	nt, ns := cfg.Tiles(), cfg.Shards()
	dim := r.Manifest().Dim

	// Stream every query past the shard, tile by tile. A tile is a range of query ordinals,
	// so every shard cuts the same tiles; unusable vectors are skipped (and rejected once,
	// by shard 0, unless a gallery shard already rejects the row).
	var tile []embeddings.Record
	var ordinal int64
	flush := func() error {
		t := int((ordinal - 1) / int64(cfg.TileSize))
		recs, err := fn.searchTile(tile, g, dim)
		if err != nil {
			return err
		}
		uri := neighbors.PartialURI(cfg.Output, t, nt, s, ns, cfg.Ext)
		if _, err := neighbors.WriteFile(ctx, uri, recs, prov); err != nil {
			return err
		}
		queriesSearched.Inc(ctx, 1)
		fn.report.Add(1)
		emit(t, s)
		tile = tile[:0]
		return nil
	}
	err = r.Each(ctx, func(rec embeddings.Record) error {
		if !IsQuery(rec.Row) {
			return nil
		}
		ordinal++
		if reason := unusable(rec.Embedding, cfg.Engine.Normalized); reason != "" {
			if s == 0 && !IsGallery(rec.Row) {
				rejectVector(ctx, rec, reason, reject)
			}
		} else {
			tile = append(tile, rec)
		}
		if ordinal%int64(cfg.TileSize) == 0 || ordinal == cfg.Plan.Queries {
			return flush()
		}
		return nil
	})
	if err != nil {
		return err
	}
	if ordinal != cfg.Plan.Queries {
		return fmt.Errorf("neighbors: %s holds %d queries, the plan %d: the embeddings changed since the job was launched", cfg.Embeddings, ordinal, cfg.Plan.Queries)
	}
	return nil
}

// loadShard reads the gallery rows with ordinals [s·ShardSize, (s+1)·ShardSize), skipping
// whole files outside that range.
func (fn *searchShardFn) loadShard(ctx context.Context, r *embeddings.Reader, s int, reject func(rejects.Record)) (*shard, error) {
	cfg := fn.Config
	lo := int64(s) * int64(cfg.ShardSize)
	hi := min(lo+int64(cfg.ShardSize), cfg.Plan.Galleries)
	var rows []embeddings.Record
	var first int64 // gallery ordinal of the current file's first gallery row
	for i, roles := range cfg.Plan.Files {
		if first >= hi {
			break
		}
		if first+roles.Galleries <= lo {
			first += roles.Galleries
			continue
		}
		ord := first
		err := r.EachIn(ctx, i, func(rec embeddings.Record) error {
			if !IsGallery(rec.Row) {
				return nil
			}
			if ord >= lo && ord < hi {
				if reason := unusable(rec.Embedding, cfg.Engine.Normalized); reason != "" {
					rejectVector(ctx, rec, reason, reject)
				} else {
					rows = append(rows, rec)
				}
			}
			ord++
			return nil
		})
		if err != nil {
			return nil, err
		}
		if ord-first != roles.Galleries {
			return nil, fmt.Errorf("neighbors: %s file %d holds %d gallery rows, the plan %d: the embeddings changed since the job was launched", cfg.Embeddings, i, ord-first, roles.Galleries)
		}
		first = ord
	}
	sort.Slice(rows, func(a, b int) bool { return rows[a].Row.ID < rows[b].Row.ID })
	g := &shard{relevant: map[int64]int64{}, sameSeq: map[string]int64{}, positions: make(map[string]int, len(rows))}
	if len(rows) > 0 {
		g.Dim = len(rows[0].Embedding)
	}
	g.Vectors = make([]float32, 0, len(rows)*g.Dim)
	for i, rec := range rows {
		g.IDs = append(g.IDs, rec.Row.ID)
		g.Labels = append(g.Labels, rec.Row.Label)
		g.Sequences = append(g.Sequences, rec.Row.Sequence)
		g.Vectors = append(g.Vectors, rec.Embedding...)
		g.relevant[rec.Row.Label]++
		if rec.Row.Sequence != "" {
			g.sameSeq[seqKey(rec.Row.Label, rec.Row.Sequence)]++
		}
		g.positions[rec.Row.ID] = i
	}
	if len(rows) > 0 {
		var err error
		if g.index, err = knn.NewIndex(g.Gallery); err != nil {
			return nil, fmt.Errorf("neighbors: gallery shard %d: %w", s, err)
		}
	}
	return g, nil
}

// searchTile finds each query's top-k in the shard and counts its relevant shard rows.
func (fn *searchShardFn) searchTile(tile []embeddings.Record, g *shard, dim int) ([]neighbors.Record, error) {
	q := knn.Query{Dim: dim, IDs: make([]string, len(tile)), Sequences: make([]string, len(tile)), Vectors: make([]float32, 0, len(tile)*dim)}
	for i, rec := range tile {
		q.IDs[i], q.Sequences[i] = rec.Row.ID, rec.Row.Sequence
		q.Vectors = append(q.Vectors, rec.Embedding...)
	}
	var lists [][]knn.Neighbor
	if len(tile) > 0 && len(g.IDs) > 0 {
		var err error
		if lists, err = fn.engine.SearchIndex(q, g.index); err != nil {
			return nil, fmt.Errorf("neighbors: %w", err)
		}
	}
	out := make([]neighbors.Record, len(tile))
	for i, rec := range tile {
		row := rec.Row
		o := neighbors.Record{QueryID: row.ID, QueryLabel: row.Label, QueryCategory: row.Category, QuerySequence: row.Sequence,
			NRelevant: g.relevantTo(row)}
		if lists != nil {
			for _, nb := range lists[i] {
				o.NeighborIDs = append(o.NeighborIDs, g.IDs[nb.Index])
				o.NeighborLabels = append(o.NeighborLabels, g.Labels[nb.Index])
				o.Distances = append(o.Distances, nb.Dist)
			}
		}
		out[i] = o
	}
	return out, nil
}

// relevantTo counts the shard's gallery rows relevant to a query after the exclusions of
// method.md §3: same label, not the query itself, not of the query's sequence.
func (g *shard) relevantTo(q catalog.Row) int64 {
	n := g.relevant[q.Label]
	if q.Sequence != "" {
		return n - g.sameSeq[seqKey(q.Label, q.Sequence)] // the query itself included, if here
	}
	if _, self := g.positions[q.ID]; self {
		n--
	}
	return n
}

func seqKey(label int64, seq string) string { return fmt.Sprintf("%d\x00%s", label, seq) }

// unusable says why a vector cannot be searched, or "" when it can.
func unusable(v []float32, normalized bool) string {
	var sq float64
	for _, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return "non_finite"
		}
		sq += float64(x) * float64(x)
	}
	switch {
	case sq == 0:
		return "zero_vector"
	case normalized && math.Abs(math.Sqrt(sq)-1) > 1e-3:
		return "not_unit_length"
	}
	return ""
}

func rejectVector(ctx context.Context, rec embeddings.Record, reason string, reject func(rejects.Record)) {
	vectorsRejected.Inc(ctx, 1)
	reject(rejects.Record{ItemID: rec.Row.ID, Path: rec.Row.Path, Line: rec.Row.Line, Stage: Stage, Reason: reason,
		Detail: "embedding cannot be searched: " + strings.ReplaceAll(reason, "_", " ")})
}

type mergeTileFn struct{ Config Config }

func (fn *mergeTileFn) ProcessElement(ctx context.Context, t int, shards func(*int) bool, emit func(neighbors.ShardInfo)) error {
	oneMergeAtATime.Lock()
	defer oneMergeAtATime.Unlock()
	cfg := fn.Config
	ns, nt := cfg.Shards(), cfg.Tiles()
	seen := make([]bool, ns)
	var s int
	for shards(&s) {
		seen[s] = true
	}
	partials := make([]string, ns)
	for i := range ns {
		if !seen[i] {
			return fmt.Errorf("neighbors: tile %d has no partial list from gallery shard %d", t, i)
		}
		partials[i] = neighbors.PartialURI(cfg.Output, t, nt, i, ns, cfg.Ext)
	}
	info, err := neighbors.MergeFiles(ctx, blob.Join(cfg.Output, neighbors.ShardName(t, nt, cfg.Ext)), partials, cfg.Provenance)
	if err != nil {
		return err
	}
	emit(info)
	return nil
}

type writeManifestFn struct{ Config Config }

func (fn *writeManifestFn) ProcessElement(ctx context.Context, _ []byte, iter func(*neighbors.ShardInfo) bool) error {
	cfg := fn.Config
	var infos []neighbors.ShardInfo
	var info neighbors.ShardInfo
	for iter(&info) {
		infos = append(infos, info)
	}
	if err := sink.ListsManifest(ctx, cfg.Output, cfg.Provenance, infos); err != nil {
		return err
	}
	return neighbors.RemoveTmp(ctx, cfg.Output)
}
