// Package neighbors is the pipeline's neighbours stage: exact top-k neighbour lists for every
// query, computed over a gallery cut into shards so that no worker holds more than one
// gallery shard and a query tile, whatever the catalog's size.
//
// Each gallery shard is a work item: a worker loads its shard, streams every query tile
// past it with the exact engine of models/knn, and writes one partial neighbour file per
// tile (the shard's top-k and its count of relevant items). A tile's partials are then
// merged into the tile's final file, ordered by (distance, neighbour id), and a manifest is
// written last. Beam moves only small keys; the lists travel through storage (a refresh's
// reused lists, the exception, travel through Beam to their tile's merge).
package neighbors

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/stirpipe/stirpipe/models/knn"
	"github.com/stirpipe/stirpipe/models/ort"
	"github.com/stirpipe/stirpipe/schemas/blob"
	"github.com/stirpipe/stirpipe/schemas/catalog"
	"github.com/stirpipe/stirpipe/schemas/changes"
	"github.com/stirpipe/stirpipe/schemas/embeddings"
	"github.com/stirpipe/stirpipe/schemas/lists"
	"github.com/stirpipe/stirpipe/schemas/rejects"
	"github.com/stirpipe/stirpipe/transforms/progress"
	"github.com/stirpipe/stirpipe/transforms/sink"
)

func init() {
	register.DoFn6x1[context.Context, int, func(*string) bool, func(int, int), func(rejects.Record), func(string, int), error](&searchShardFn{})
	register.DoFn4x1[context.Context, int, func(*int) bool, func(lists.ShardInfo), error](&mergeTileFn{})
	register.DoFn3x1[context.Context, []byte, func(*lists.ShardInfo) bool, error](&writeManifestFn{})
	register.Emitter2[int, int]()
	register.Emitter1[lists.ShardInfo]()
	register.Iter1[*int]()
	register.Iter1[*string]()
	register.Iter1[*lists.ShardInfo]()
}

// Stage is the stage name of this transform's rejects, and the namespace of its metrics.
const Stage = "neighbors"

// Names of the stage's metrics.
const (
	MetricTilesSearched   = "query_tiles_searched"
	MetricVectorsRejected = "vectors_rejected"
	MetricTileLatency     = "tile_latency_ms"
)

var (
	queriesSearched = beam.NewCounter(Stage, MetricTilesSearched)
	vectorsRejected = beam.NewCounter(Stage, MetricVectorsRejected)
	tileLatency     = beam.NewDistribution(Stage, MetricTileLatency)
)

// Config configures the neighbours stage; it travels to the workers.
type Config struct {
	// Embeddings is the embeddings output directory (local or gs://).
	Embeddings string
	// Output is the neighbours output directory.
	Output string
	// Ext is the file format: lists.ExtParquet or lists.ExtArrow.
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
	Provenance lists.Provenance
	// Progress turns on progress lines (local runs).
	Progress bool
	// Refresh, when on, starts from a previous run's lists.
	Refresh Refresh
}

// Allowances of MemoryLimit: what a worker holds besides the shard, the tile and the score
// buffers (the Go runtime, the runner, file readers and writers, and zstd's window for the
// final files), and per gallery row and per neighbour in a tile's lists (ids, labels,
// distances and their copies on the way to a file).
const (
	stageAllowance  = 64 << 20
	galleryRowBytes = 64
	neighborBytes   = 64
)

// MemoryLimit is the Go memory limit (runtime/debug.SetMemoryLimit) that the stage's
// workers set while they search a gallery shard or merge a query tile: an estimate of
// what the stage holds (one shard's vectors and rows, one tile's vectors and lists, the
// engine's score buffers) plus a fixed allowance for everything else. The collector then
// runs as the heap nears it, instead of letting the heap grow to twice its live size
// first; a live heap above it only makes collections more frequent.
func (c Config) MemoryLimit() int64 {
	d, k := int64(c.Plan.Dim), int64(c.Engine.K)
	shard := int64(c.ShardSize) * (4*d + galleryRowBytes)
	tile := int64(c.TileSize) * (4*d + neighborBytes*k)
	threads := int64(c.Engine.Threads)
	if threads == 0 {
		threads = int64(runtime.GOMAXPROCS(0))
	}
	rows, chunk := int64(knn.DefaultTileRows), int64(knn.DefaultChunkRows)
	if c.Engine.Provider != ort.ProviderCPU && c.Engine.Provider != "" {
		rows, chunk = knn.DefaultCUDATileRows, knn.DefaultCUDAChunkRows // the larger block, if CUDA may be used
	}
	if c.Engine.TileRows > 0 {
		rows = int64(c.Engine.TileRows)
	}
	if c.Engine.ChunkRows > 0 {
		chunk = int64(c.Engine.ChunkRows)
	}
	return stageAllowance + shard + tile + threads*rows*chunk*4
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
	if c.Ext != lists.ExtParquet && c.Ext != lists.ExtArrow {
		errs = append(errs, fmt.Errorf("format must be %s or %s, got %q", lists.ExtParquet, lists.ExtArrow, c.Ext))
	}
	return errors.Join(errs...)
}

// Search builds the neighbours stage. It returns the rejects of vectors that cannot be
// searched (non-finite, zero, or not unit length for a normalised model); their rows get no
// list and are excluded from every gallery. With cfg.Refresh on, the previous lists that
// stay valid are merged with a search among the changed rows only (Refresh).
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
	var reusable, reused beam.PCollection // the previous lists that stay valid, and their query ids
	if cfg.Refresh.On() {
		reusable = beam.ParDo(s, &reusableListsFn{Config: cfg}, beam.Reshuffle(s, beam.CreateList(s, cfg.Refresh.Lists)))
		reused = beam.DropValue(s, reusable)
	} else {
		reused = beam.CreateList(s, []string{})
	}
	parts, rejs, tiles := beam.ParDo3(s, &searchShardFn{Config: cfg}, ids, beam.SideInput{Input: reused})
	if cfg.Refresh.On() {
		earlier := beam.ParDo(s, routeEarlier, beam.CoGroupByKey(s, reusable, tiles))
		parts = beam.Flatten(s, parts, beam.ParDo(s, &writeEarlierFn{Config: cfg}, beam.GroupByKey(s, earlier)))
	}
	infos := beam.ParDo(s, &mergeTileFn{Config: cfg}, beam.GroupByKey(s, parts))
	beam.ParDo0(s, &writeManifestFn{Config: cfg}, beam.Impulse(s), beam.SideInput{Input: infos})
	return rejs
}

type searchShardFn struct {
	Config Config

	engine  *knn.Engine
	changed *changes.Set // refresh: the items that changed since the previous run
	report  *progress.Reporter
}

func (fn *searchShardFn) Setup(ctx context.Context) error {
	if err := ort.Init(fn.Config.Library); err != nil {
		return err
	}
	var err error
	if fn.Config.Refresh.On() {
		if fn.changed, err = changes.Read(ctx, fn.Config.Refresh.Changes); err != nil {
			return err
		}
	}
	fn.engine, err = knn.Acquire(fn.Config.Engine)
	if fn.Config.Progress {
		fn.report = progress.Shared(Stage, "query tiles × gallery shards", int64(fn.Config.Shards()*fn.Config.Tiles()))
	}
	return err
}

func (fn *searchShardFn) Teardown() error {
	if fn.engine != nil {
		fn.engine = nil
		return knn.Release(fn.Config.Engine)
	}
	return nil
}

// shard is one gallery shard in memory, sorted by item id; delta indexes the rows that
// changed since the previous run (refresh only).
type shard struct {
	knn.Gallery
	index, delta *knn.Index
	relevant     *knn.Relevance
}

// ProcessElement searches every query tile in gallery shard s and emits (tile, s) for each
// partial file written. Queries whose previous list is reused (refresh) are searched
// among the shard's changed rows only; shard 0 emits (query, tile) for each of them.
func (fn *searchShardFn) ProcessElement(ctx context.Context, s int, reusedIDs func(*string) bool, emit func(int, int),
	reject func(rejects.Record), emitReused func(string, int)) error {
	reused := map[string]bool{}
	var id string
	for reusedIDs(&id) {
		reused[id] = true
	}
	ort.MemoryTurn.Lock()
	defer ort.MemoryTurn.Unlock()
	defer ort.LimitMemory(fn.Config.MemoryLimit())()
	cfg := fn.Config
	r, err := embeddings.Open(ctx, cfg.Embeddings)
	if err != nil {
		return err
	}
	g, err := fn.loadShard(ctx, r, s, reject)
	if err != nil {
		return err
	}
	if fn.changed != nil {
		if d := deltaGallery(g.Gallery, fn.changed); len(d.IDs) > 0 {
			if g.delta, err = knn.NewIndex(d); err != nil {
				return fmt.Errorf("neighbors: changed rows of gallery shard %d: %w", s, err)
			}
		}
	}
	// The engine's score buffers are not needed between shards (nor while tiles merge).
	defer fn.engine.FreeBuffers()
	prov := cfg.Provenance
	prov.Stage = lists.StagePartial
	nt, ns := cfg.Tiles(), cfg.Shards()
	dim := r.Manifest().Provenance.Dim

	// Stream every query past the shard, tile by tile. A tile is a range of query ordinals,
	// so every shard cuts the same tiles; unusable vectors are skipped (and rejected once,
	// by shard 0, unless a gallery shard already rejects the row).
	tile := &queryTile{dim: dim}
	var ordinal int64
	flush := func() error {
		t := int((ordinal - 1) / int64(cfg.TileSize))
		recs, err := fn.searchTile(tile, g, reused)
		if err != nil {
			return err
		}
		if s == 0 {
			for _, row := range tile.rows {
				if reused[row.ID] {
					emitReused(row.ID, t)
				} else {
					queriesInFull.Inc(ctx, 1)
				}
			}
		}
		uri := lists.PartialURI(cfg.Output, t, nt, s, ns, cfg.Ext)
		if _, err := lists.WriteFile(ctx, uri, recs, prov); err != nil {
			return err
		}
		queriesSearched.Inc(ctx, 1)
		fn.report.Add(1)
		emit(t, s)
		tile.reset()
		return nil
	}
	err = r.Each(ctx, func(rec embeddings.Record) error {
		if !rec.Row.Queries() {
			return nil
		}
		ordinal++
		if reason := knn.Unusable(rec.Embedding, cfg.Engine.Normalized); reason != "" {
			if s == 0 && !rec.Row.InGallery() {
				rejectVector(ctx, rec, reason, reject)
			}
		} else {
			tile.add(rec)
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

// queryTile is the usable queries of one tile: their rows, and their vectors one after
// another (the buffers are reused from tile to tile).
type queryTile struct {
	dim     int
	rows    []catalog.Row
	vectors []float32
}

func (t *queryTile) add(rec embeddings.Record) {
	t.rows = append(t.rows, rec.Row)
	t.vectors = append(t.vectors, rec.Embedding...)
}

func (t *queryTile) reset() {
	clear(t.rows) // let the rows' strings go
	t.rows, t.vectors = t.rows[:0], t.vectors[:0]
}

// loadShard reads the gallery rows with ordinals [s·ShardSize, (s+1)·ShardSize), skipping
// whole files outside that range. The vectors go straight into the shard's one flat array,
// which is then put in item id order in place: the shard's vectors are held once.
func (fn *searchShardFn) loadShard(ctx context.Context, r *embeddings.Reader, s int, reject func(rejects.Record)) (*shard, error) {
	cfg := fn.Config
	lo := int64(s) * int64(cfg.ShardSize)
	hi := min(lo+int64(cfg.ShardSize), cfg.Plan.Galleries)
	dim := r.Manifest().Provenance.Dim
	g := &shard{}
	g.Dim = dim
	n := max(0, int(hi-lo))
	g.IDs, g.Labels, g.Sequences = make([]string, 0, n), make([]int64, 0, n), make([]string, 0, n)
	g.Vectors = make([]float32, 0, n*dim)
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
			if !rec.Row.InGallery() {
				return nil
			}
			if ord >= lo && ord < hi {
				if reason := knn.Unusable(rec.Embedding, cfg.Engine.Normalized); reason != "" {
					rejectVector(ctx, rec, reason, reject)
				} else {
					g.IDs = append(g.IDs, rec.Row.ID)
					g.Labels = append(g.Labels, rec.Row.Label)
					g.Sequences = append(g.Sequences, rec.Row.Sequence)
					g.Vectors = append(g.Vectors, rec.Embedding...)
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
	g.SortByID()
	g.relevant = knn.NewRelevance(g.Gallery, cfg.Engine)
	if len(g.IDs) > 0 {
		var err error
		if g.index, err = knn.NewIndex(g.Gallery); err != nil {
			return nil, fmt.Errorf("neighbors: gallery shard %d: %w", s, err)
		}
	}
	return g, nil
}

// searchTile finds each query's top-k in the shard (among its changed rows only for the
// queries in reused) and counts its relevant shard rows.
func (fn *searchShardFn) searchTile(tile *queryTile, g *shard, reused map[string]bool) ([]lists.Record, error) {
	var full, delta []int // the tile's rows searched in the whole shard, and among its changed rows
	for i, row := range tile.rows {
		if reused[row.ID] {
			delta = append(delta, i)
		} else {
			full = append(full, i)
		}
	}
	out := make([]lists.Record, len(tile.rows))
	for i, row := range tile.rows {
		out[i] = lists.Record{QueryID: row.ID, QueryLabel: row.Label, QueryCategory: row.Category, QuerySequence: row.Sequence,
			NRelevant: g.relevant.Count(row.ID, row.Label, row.Sequence)}
	}
	if err := fn.search(tile, full, g.index, out); err != nil {
		return nil, err
	}
	return out, fn.search(tile, delta, g.delta, out)
}

// search finds the top-k in ix of the tile's rows at, into their records.
func (fn *searchShardFn) search(tile *queryTile, at []int, ix *knn.Index, out []lists.Record) error {
	if len(at) == 0 || ix == nil {
		return nil
	}
	d := tile.dim
	q := knn.Query{Dim: d, IDs: make([]string, len(at)), Sequences: make([]string, len(at))}
	if len(at) == len(tile.rows) {
		q.Vectors = tile.vectors
	} else {
		q.Vectors = make([]float32, 0, len(at)*d)
	}
	for j, i := range at {
		q.IDs[j], q.Sequences[j] = tile.rows[i].ID, tile.rows[i].Sequence
		if len(at) != len(tile.rows) {
			q.Vectors = append(q.Vectors, tile.vectors[i*d:(i+1)*d]...)
		}
	}
	found, err := fn.engine.SearchIndex(q, ix)
	if err != nil {
		return fmt.Errorf("neighbors: %w", err)
	}
	g := ix.Gallery()
	for j, i := range at {
		m := len(found[j])
		o := &out[i]
		o.NeighborIDs, o.NeighborLabels, o.Distances = make([]string, m), make([]int64, m), make([]float32, m)
		for k, nb := range found[j] {
			o.NeighborIDs[k], o.NeighborLabels[k], o.Distances[k] = g.IDs[nb.Index], g.Labels[nb.Index], nb.Dist
		}
	}
	return nil
}

func rejectVector(ctx context.Context, rec embeddings.Record, reason string, reject func(rejects.Record)) {
	vectorsRejected.Inc(ctx, 1)
	reject(rejects.Record{ItemID: rec.Row.ID, Path: rec.Row.Path, Line: rec.Row.Line, Stage: Stage, Reason: reason,
		Detail: "embedding cannot be searched: " + strings.ReplaceAll(reason, "_", " ")})
}

type mergeTileFn struct{ Config Config }

func (fn *mergeTileFn) ProcessElement(ctx context.Context, t int, shards func(*int) bool, emit func(lists.ShardInfo)) error {
	ort.MemoryTurn.Lock()
	defer ort.MemoryTurn.Unlock()
	defer ort.LimitMemory(fn.Config.MemoryLimit())()
	cfg := fn.Config
	ns, nt := cfg.Shards(), cfg.Tiles()
	seen := make([]bool, ns+1) // and the partial of reused lists (refresh)
	var s int
	for shards(&s) {
		seen[s] = true
	}
	var earlier string
	if seen[ns] {
		earlier = lists.PartialURI(cfg.Output, t, nt, ns, ns, cfg.Ext)
	}
	partials := make([]string, ns)
	for i := range ns {
		if !seen[i] {
			return fmt.Errorf("neighbors: tile %d has no partial list from gallery shard %d", t, i)
		}
		partials[i] = lists.PartialURI(cfg.Output, t, nt, i, ns, cfg.Ext)
	}
	info, err := lists.MergeWithEarlier(ctx, blob.Join(cfg.Output, lists.ShardName(t, nt, cfg.Ext)), partials, earlier, cfg.Provenance)
	if err != nil {
		return err
	}
	emit(info)
	return nil
}

type writeManifestFn struct{ Config Config }

func (fn *writeManifestFn) ProcessElement(ctx context.Context, _ []byte, iter func(*lists.ShardInfo) bool) error {
	cfg := fn.Config
	var infos []lists.ShardInfo
	var info lists.ShardInfo
	for iter(&info) {
		infos = append(infos, info)
	}
	if err := sink.ListsManifest(ctx, cfg.Output, cfg.Provenance, infos); err != nil {
		return err
	}
	return lists.RemoveTmp(ctx, cfg.Output)
}
