// Package rerank is the pipeline's STIR stage: for each query, the first top_n candidates
// of its neighbour list are scored with the pairwise model, all together in one batched
// forward pass (several queries share a batch), and the list is rewritten with OML's
// formula (models/rerank). Each image is decoded once per bundle (a bounded cache), not once
// per pair. A query whose head cannot be scored (an image vanished or broke since it was
// embedded) keeps its original list, counted and recorded in the rejects.
package rerank

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/stirpipe/stirpipe/models/imageio"
	"github.com/stirpipe/stirpipe/models/imageload"
	"github.com/stirpipe/stirpipe/models/manifest"
	"github.com/stirpipe/stirpipe/models/ort"
	"github.com/stirpipe/stirpipe/models/pairwise"
	stir "github.com/stirpipe/stirpipe/models/rerank"
	"github.com/stirpipe/stirpipe/schemas/catalog"
	"github.com/stirpipe/stirpipe/schemas/neighbors"
	"github.com/stirpipe/stirpipe/schemas/rejects"
	"github.com/stirpipe/stirpipe/transforms/progress"
)

func init() {
	register.DoFn4x1[context.Context, neighbors.Record, func(neighbors.Record), func(rejects.Record), error](&rerankFn{})
}

// Stage is the stage name of this transform's rejects.
const Stage = "rerank"

var (
	queriesReranked = beam.NewCounter("rerank", "queries_reranked")
	queriesKept     = beam.NewCounter("rerank", "queries_kept_original")
	pairsScored     = beam.NewCounter("rerank", "pairs_scored")
	batchLatency    = beam.NewDistribution("rerank", "batch_latency_ms")
)

// Config configures the rerank stage; it travels to the workers.
type Config struct {
	// Model is the pairwise model's manifest (or the ONNX file beside it).
	Model string
	// Catalog is the catalog the lists come from (for image paths and boxes), with the
	// snapshot it must still have.
	Catalog, CatalogFormat, CatalogSnapshot string
	// Root is the dataset root of the catalog's image paths.
	Root string
	// TopN is the number of head candidates rescored per query (≥ 1).
	TopN int
	// BatchPairs is the number of pairs per forward pass (whole queries are batched
	// together until it is reached).
	BatchPairs int
	// CacheImages bounds the preprocessed images kept per bundle.
	CacheImages int
	// Runtime and Library configure ONNX Runtime.
	Runtime ort.Options
	Library string
	// Limits bound image bytes and pixels.
	Limits imageio.Limits
	// Total is the number of queries, for progress lines; Progress turns them on.
	Total    int64
	Progress bool
}

// Validate checks the configuration without touching the model.
func (c Config) Validate() error {
	var errs []error
	if c.Model == "" || c.Catalog == "" {
		errs = append(errs, errors.New("rerank: a pairwise model and a catalog are required"))
	}
	if c.TopN < 1 {
		errs = append(errs, fmt.Errorf("rerank: top_n must be ≥ 1, got %d", c.TopN))
	}
	if c.BatchPairs < 1 || c.CacheImages < 1 {
		errs = append(errs, fmt.Errorf("rerank: batch pairs and cache size must be ≥ 1, got %d and %d", c.BatchPairs, c.CacheImages))
	}
	if err := c.Runtime.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Rerank rewrites every list's head with the pairwise model. It returns the reranked lists
// (one per input list) and the rejects of the queries whose original list was kept.
func Rerank(s beam.Scope, lists beam.PCollection, cfg Config) (beam.PCollection, beam.PCollection) {
	s = s.Scope("Rerank")
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	return beam.ParDo2(s, &rerankFn{Config: cfg}, lists)
}

// catalogs holds one id → row index per catalog snapshot and worker process.
var catalogs sync.Map // snapshot → *catalogIndex

type catalogIndex struct {
	once sync.Once
	rows map[string]catalog.Row
	err  error
}

func loadCatalog(ctx context.Context, c Config) (map[string]catalog.Row, error) {
	v, _ := catalogs.LoadOrStore(c.CatalogSnapshot, &catalogIndex{})
	ix := v.(*catalogIndex)
	ix.once.Do(func() {
		cat, err := catalog.Load(ctx, c.Catalog, catalog.Options{Format: c.CatalogFormat})
		if err != nil {
			ix.err = err
			return
		}
		if cat.Snapshot != c.CatalogSnapshot {
			ix.err = fmt.Errorf("catalog %s changed since the job was launched (snapshot %s, now %s): relaunch the job", c.Catalog, c.CatalogSnapshot, cat.Snapshot)
			return
		}
		ix.rows = make(map[string]catalog.Row, len(cat.Rows))
		for _, r := range cat.Rows {
			ix.rows[r.ID] = r
		}
	})
	return ix.rows, ix.err
}

type rerankFn struct {
	Config Config

	scorer *pairwise.Scorer
	score  func(query, candidate []float32, n int) ([]float32, error) // scorer.Score
	images *imageload.Loader
	rows   map[string]catalog.Row
	cache  *tensorCache
	slot   int       // floats per image
	jobs   []job     // the queries whose pairs fill the batch buffers
	q, c   []float32 // pair batch buffers
	report *progress.Reporter
}

// job is a query of the batch being filled.
type job struct {
	rec   neighbors.Record
	first int // index of its first pair in the batch
}

func (fn *rerankFn) Setup(ctx context.Context) error {
	if err := ort.Init(fn.Config.Library); err != nil {
		return err
	}
	m, err := manifest.Load(fn.Config.Model)
	if err != nil {
		return err
	}
	if fn.scorer, err = pairwise.Open(m, fn.Config.Runtime); err != nil {
		return err
	}
	fn.score = fn.scorer.Score
	if fn.images, err = imageload.New(fn.Config.Root, fn.Config.Limits, m.Preprocess); err != nil {
		return err
	}
	if fn.rows, err = loadCatalog(ctx, fn.Config); err != nil {
		return err
	}
	fn.slot = fn.images.TensorLen()
	fn.q = make([]float32, 0, fn.Config.BatchPairs*fn.slot)
	fn.c = make([]float32, 0, fn.Config.BatchPairs*fn.slot)
	if fn.Config.Progress {
		fn.report = progress.Shared("rerank", "queries", fn.Config.Total)
	}
	return nil
}

// ProcessElement adds a query's head pairs to the batch. Whole queries are packed
// greedily: the batch runs when the next query would overflow BatchPairs (one query's
// pairs never straddle two passes) or when it is full, so every pass but a bundle's last
// carries as many pairs as fit.
func (fn *rerankFn) ProcessElement(ctx context.Context, rec neighbors.Record, emit func(neighbors.Record), reject func(rejects.Record)) error {
	if fn.cache == nil { // a bundle starts
		fn.cache = newTensorCache(fn.Config.CacheImages)
	}
	h := stir.Head(len(rec.NeighborIDs), fn.Config.TopN)
	if len(fn.jobs) > 0 && fn.batched()+h > fn.Config.BatchPairs {
		if err := fn.run(ctx, emit); err != nil {
			return err
		}
	}
	first := fn.batched()
	if rej, ok := fn.addPairs(ctx, rec, h); !ok {
		fn.q, fn.c = fn.q[:first*fn.slot], fn.c[:first*fn.slot]
		keep := rec
		keep.PairScores = nil
		emit(keep)
		reject(rej)
		queriesKept.Inc(ctx, 1)
		fn.report.Add(1)
		return nil
	}
	fn.jobs = append(fn.jobs, job{rec, first})
	if fn.batched() >= fn.Config.BatchPairs {
		return fn.run(ctx, emit)
	}
	return nil
}

func (fn *rerankFn) FinishBundle(ctx context.Context, emit func(neighbors.Record), _ func(rejects.Record)) error {
	err := fn.run(ctx, emit)
	fn.cache = nil
	return err
}

func (fn *rerankFn) Teardown() error {
	if fn.scorer != nil {
		return fn.scorer.Close()
	}
	return nil
}

// batched is the number of pairs in the batch buffers.
func (fn *rerankFn) batched() int { return len(fn.q) / fn.slot }

// run scores the batch's pairs in one forward pass and emits its queries' reranked lists.
func (fn *rerankFn) run(ctx context.Context, emit func(neighbors.Record)) error {
	n := fn.batched()
	var scores []float32
	if n > 0 {
		t := time.Now()
		var err error
		if scores, err = fn.score(fn.q, fn.c, n); err != nil {
			return err
		}
		batchLatency.Update(ctx, time.Since(t).Milliseconds())
		pairsScored.Inc(ctx, int64(n))
	}
	for _, j := range fn.jobs {
		h := stir.Head(len(j.rec.NeighborIDs), fn.Config.TopN)
		out, err := apply(j.rec, scores[j.first:j.first+h], fn.Config.TopN)
		if err != nil {
			return err
		}
		emit(out)
		queriesReranked.Inc(ctx, 1)
		fn.report.Add(1)
	}
	fn.jobs, fn.q, fn.c = fn.jobs[:0], fn.q[:0], fn.c[:0]
	return nil
}

// addPairs appends a query's h head pairs to the batch, or reports why it cannot.
func (fn *rerankFn) addPairs(ctx context.Context, rec neighbors.Record, h int) (rejects.Record, bool) {
	if h == 0 {
		return rejects.Record{}, true // an empty list: nothing to score
	}
	ids := append([]string{rec.QueryID}, rec.NeighborIDs[:h]...)
	tensors := make([][]float32, len(ids))
	for i, id := range ids {
		t, err := fn.tensor(ctx, id)
		if err != nil {
			var le *imageload.Error
			reason := "unknown_item"
			if errors.As(err, &le) {
				reason = le.Stage + "_" + le.Reason
			}
			row := fn.rows[id]
			return rejects.Record{ItemID: rec.QueryID, Path: row.Path, Line: row.Line, Stage: Stage, Reason: reason,
				Detail: fmt.Sprintf("kept the original list: image of %s: %v", id, err)}, false
		}
		tensors[i] = t
	}
	for _, t := range tensors[1:] {
		fn.q = append(fn.q, tensors[0]...)
		fn.c = append(fn.c, t...)
	}
	return rejects.Record{}, true
}

// tensor returns an item's preprocessed image, from the bundle's cache when it is there.
func (fn *rerankFn) tensor(ctx context.Context, id string) ([]float32, error) {
	if t, ok := fn.cache.get(id); ok {
		return t, nil
	}
	row, ok := fn.rows[id]
	if !ok {
		return nil, fmt.Errorf("item %s is not in catalog %s", id, fn.Config.Catalog)
	}
	t := make([]float32, fn.images.TensorLen())
	if err := fn.images.Load(ctx, row, t); err != nil {
		return nil, err
	}
	fn.cache.put(id, t)
	return t, nil
}

// apply rewrites one list with its head's scores.
func apply(rec neighbors.Record, scores []float32, topN int) (neighbors.Record, error) {
	res, err := stir.Apply(stir.List{IDs: rec.NeighborIDs, Labels: rec.NeighborLabels, Distances: rec.Distances}, scores, topN)
	if err != nil {
		return neighbors.Record{}, fmt.Errorf("rerank query %s: %w", rec.QueryID, err)
	}
	out := rec
	out.NeighborIDs, out.NeighborLabels, out.Distances, out.PairScores = res.IDs, res.Labels, res.Distances, res.Scores
	if out.PairScores == nil {
		out.PairScores = []float32{}
	}
	return out, nil
}

// tensorCache is a bounded LRU of preprocessed images.
type tensorCache struct {
	max   int
	order *list.List // front = most recent; values are ids
	items map[string]*list.Element
	data  map[string][]float32
}

func newTensorCache(max int) *tensorCache {
	return &tensorCache{max: max, order: list.New(), items: map[string]*list.Element{}, data: map[string][]float32{}}
}

func (c *tensorCache) get(id string) ([]float32, bool) {
	e, ok := c.items[id]
	if !ok {
		return nil, false
	}
	c.order.MoveToFront(e)
	return c.data[id], true
}

func (c *tensorCache) put(id string, t []float32) {
	if c.order.Len() >= c.max {
		old := c.order.Remove(c.order.Back()).(string)
		delete(c.items, old)
		delete(c.data, old)
	}
	c.items[id] = c.order.PushFront(id)
	c.data[id] = t
}
