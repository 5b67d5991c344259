// Package rerank is the pipeline's STIR stage: for each query, the first top_n candidates
// of its neighbour list are scored with the pairwise model, all together in one batched
// forward pass (several queries share a batch), and the list is rewritten with OML's
// formula (models/stir). The catalog rows a query needs (its own and its head's) reach
// it through a join, so no worker holds the catalog, whatever its size. Each image is
// decoded once per bundle (a bounded cache), not once per pair. A query whose head cannot
// be scored (an item missing from the catalog, an image that vanished or broke since it was
// embedded) keeps its original list, counted and recorded in the rejects.
//
// Pair scores of an earlier run (a refresh's previous run, or the pieces a killed run
// committed) are reused where neither image changed: only the other pairs are scored, and
// a list whose whole head was scored before skips the join with the catalog (Earlier).
package rerank

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/stirpipe/stirpipe/models/imageload"
	"github.com/stirpipe/stirpipe/models/ort"
	"github.com/stirpipe/stirpipe/models/pairwise"
	"github.com/stirpipe/stirpipe/models/stir"
	"github.com/stirpipe/stirpipe/schemas/blob"
	"github.com/stirpipe/stirpipe/schemas/catalog"
	"github.com/stirpipe/stirpipe/schemas/lists"
	"github.com/stirpipe/stirpipe/schemas/rejects"
	"github.com/stirpipe/stirpipe/transforms/imagework"
	"github.com/stirpipe/stirpipe/transforms/progress"
)

func init() {
	register.DoFn7x1[context.Context, string, func(*lists.Record) bool, func(*ItemRow) bool, func(*Scored) bool,
		func(lists.Record), func(rejects.Record), error](&rerankFn{})
	register.DoFn2x0[lists.Record, func(string, string)](&headItemsFn{})
	register.Function1x2[lists.Record, string, lists.Record](byQuery)
	register.Function1x2[catalog.Row, string, catalog.Row](byItem)
	register.Function4x0[string, func(*string) bool, func(*catalog.Row) bool, func(string, ItemRow)](routeRows)
	register.Emitter2[string, string]()
	register.Emitter2[string, ItemRow]()
	register.Iter1[string]()
	register.Iter1[catalog.Row]()
	register.Iter1[lists.Record]()
	register.Iter1[ItemRow]()
}

// ItemRow is one catalog row on its way to a query that needs it. Found is false when
// the lists name an item the catalog does not hold.
type ItemRow struct {
	ID    string
	Found bool
	Row   catalog.Row
}

// Stage is the stage name of this transform's rejects, and the namespace of its metrics.
const Stage = "rerank"

// Names of the stage's metrics.
const (
	MetricQueriesReranked = "queries_reranked"
	MetricQueriesKept     = "queries_kept_original"
	MetricPairsScored     = "pairs_scored"
	MetricBatchLatency    = "batch_latency_ms"
)

var (
	queriesReranked = beam.NewCounter(Stage, MetricQueriesReranked)
	queriesKept     = beam.NewCounter(Stage, MetricQueriesKept)
	pairsScored     = beam.NewCounter(Stage, MetricPairsScored)
	batchLatency    = beam.NewDistribution(Stage, MetricBatchLatency)
)

// Config configures the rerank stage; it travels to the workers. Its Total counts the
// queries.
type Config struct {
	imagework.Config
	// Catalog names the catalog the rows come from, for messages.
	Catalog string
	// TopN is the number of head candidates rescored per query (≥ 1).
	TopN int
	// BatchPairs is the number of pairs per forward pass (whole queries are batched
	// together until it is reached).
	BatchPairs int
	// CacheImages bounds the preprocessed images kept per bundle.
	CacheImages int
	// Earlier are the pair scores that may be reused (refresh and resume).
	Earlier Earlier
	// Pieces, when set, is where finished lists are committed as they go (piece files of
	// Provenance, the output's), so that a killed run loses at most the work in flight.
	Pieces     string
	Provenance lists.Provenance
}

// pieceQueries is how many lists a worker collects before it commits them as a piece (and
// at the end of every bundle).
const pieceQueries = 256

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

// Rerank rewrites every list's head with the pairwise model, reusing cfg.Earlier's pair
// scores where it can. rows is the catalog the lists come from (catalogio.Read). It returns
// the reranked lists (one per input list) and the rejects of the queries whose original
// list was kept.
func Rerank(s beam.Scope, lists, rows beam.PCollection, cfg Config) (beam.PCollection, beam.PCollection) {
	s = s.Scope("Rerank")
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	// Route each catalog row to the queries whose own row or head it is; then each
	// query's list meets its rows.
	var done, scored beam.PCollection // lists whose every head pair was scored before; the earlier scores of the others
	if cfg.Earlier.On() {
		// Lists whose head was scored before in full skip the join with the catalog.
		known := beam.CoGroupByKey(s, beam.ParDo(s, byQuery, lists), readScored(s, cfg.Earlier, cfg.Provenance))
		done, lists, scored = beam.ParDo3(s, &splitKnownFn{Config: cfg}, known)
	} else {
		scored = beam.CreateList(s, []kvScored{})
		scored = beam.ParDo(s, unKV, scored)
	}
	needs := beam.ParDo(s, &headItemsFn{TopN: cfg.TopN}, lists)
	routed := beam.ParDo(s, routeRows, beam.CoGroupByKey(s, needs, beam.ParDo(s, byItem, rows)))
	joined := beam.CoGroupByKey(s, beam.ParDo(s, byQuery, lists), routed, scored)
	reranked, rejs := beam.ParDo2(s, &rerankFn{Config: cfg}, joined)
	if cfg.Earlier.On() {
		reranked = beam.Flatten(s, done, reranked)
	}
	return reranked, rejs
}

// headItemsFn emits (item, query) for a query and each of its head candidates.
type headItemsFn struct{ TopN int }

func (fn *headItemsFn) ProcessElement(rec lists.Record, emit func(string, string)) {
	emit(rec.QueryID, rec.QueryID)
	for _, id := range rec.NeighborIDs[:stir.Head(len(rec.NeighborIDs), fn.TopN)] {
		emit(id, rec.QueryID)
	}
}

func byQuery(rec lists.Record) (string, lists.Record) { return rec.QueryID, rec }

func byItem(row catalog.Row) (string, catalog.Row) { return row.ID, row }

// routeRows sends an item's catalog row to every query that needs it.
func routeRows(id string, queries func(*string) bool, rows func(*catalog.Row) bool, emit func(string, ItemRow)) {
	item := ItemRow{ID: id}
	item.Found = rows(&item.Row)
	var q string
	for queries(&q) {
		emit(q, item)
	}
}

type rerankFn struct {
	Config Config

	scorer *pairwise.Scorer
	score  func(query, candidate []float32, n int) ([]float32, error) // scorer.Score
	images *imageload.Loader
	cpu    bool // the session runs on the CPU: take ort.CPUTurn to decode and to score
	cache  *tensorCache
	slot   int            // floats per image
	jobs   []job          // the queries whose pairs fill the batch buffers
	q, c   []float32      // pair batch buffers
	done   []lists.Record // emitted since the last piece was committed
	report *progress.Reporter
}

// job is a query of the batch being filled.
type job struct {
	rec    lists.Record
	first  int       // index of its first pair in the batch
	scores []float32 // its head's scores: reused ones set, the others from the batch
	todo   []int     // the head positions scored in the batch, in order
}

func (fn *rerankFn) Setup(ctx context.Context) error {
	w, err := imagework.Open(ctx, fn.Config.Config, pairwise.Open)
	if err != nil {
		return err
	}
	fn.scorer, fn.images, fn.cpu = w.Model, w.Images, w.CPU
	fn.score = fn.scorer.Score
	fn.slot = fn.images.TensorLen()
	fn.q = make([]float32, 0, fn.Config.BatchPairs*fn.slot)
	fn.c = make([]float32, 0, fn.Config.BatchPairs*fn.slot)
	if fn.Config.Progress {
		fn.report = progress.Shared(Stage, "queries", fn.Config.Total)
	}
	return nil
}

// ProcessElement takes a query's list (one, unless the lists repeat a query) and the
// catalog rows routed to it.
func (fn *rerankFn) ProcessElement(ctx context.Context, _ string, queries func(*lists.Record) bool, items func(*ItemRow) bool,
	earlier func(*Scored) bool, emit func(lists.Record), reject func(rejects.Record)) error {
	rows := map[string]ItemRow{}
	var it ItemRow
	for items(&it) {
		rows[it.ID] = it
	}
	known := knownScores(earlier)
	emitted := func(r lists.Record) {
		emit(r)
		if fn.Config.Pieces != "" {
			fn.done = append(fn.done, r)
		}
	}
	var rec lists.Record
	for queries(&rec) {
		if err := fn.add(ctx, rec, rows, known, emitted, reject); err != nil {
			return err
		}
	}
	if len(fn.done) >= pieceQueries {
		return fn.commit(ctx)
	}
	return nil
}

// finishKnown reranks a list whose every head pair was scored before.
func (fn *rerankFn) finishKnown(ctx context.Context, j job, emit func(lists.Record)) error {
	out, err := apply(j.rec, j.scores, fn.Config.TopN)
	if err != nil {
		return err
	}
	emit(out)
	queriesReranked.Inc(ctx, 1)
	queriesReused.Inc(ctx, 1)
	fn.report.Add(1)
	return nil
}

// commit writes the lists finished since the last piece as a piece file.
func (fn *rerankFn) commit(ctx context.Context) error {
	recs := fn.done
	if len(recs) == 0 {
		return nil
	}
	fn.done = nil
	_, err := lists.WriteFile(ctx, blob.Join(fn.Config.Pieces, lists.PieceName(recs)), recs, fn.Config.Provenance)
	return err
}

// add puts a query's head pairs in the batch. Whole queries are packed
// greedily: the batch runs when the next query would overflow BatchPairs (one query's
// pairs never straddle two passes) or when it is full, so every pass but a bundle's last
// carries as many pairs as fit.
func (fn *rerankFn) add(ctx context.Context, rec lists.Record, rows map[string]ItemRow, known map[string]float32,
	emit func(lists.Record), reject func(rejects.Record)) error {
	if fn.cache == nil { // a bundle starts
		fn.cache = newTensorCache(fn.Config.CacheImages)
	}
	j := newJob(rec, known, fn.Config.TopN)
	if reused := len(j.scores) - len(j.todo); reused > 0 {
		pairsReused.Inc(ctx, int64(reused))
	}
	if len(j.todo) == 0 && len(j.scores) > 0 { // every pair scored before: no image to load
		return fn.finishKnown(ctx, j, emit)
	}
	if len(fn.jobs) > 0 && fn.batched()+len(j.todo) > fn.Config.BatchPairs {
		if err := fn.run(ctx, emit); err != nil {
			return err
		}
	}
	first := fn.batched()
	j.first = first
	if rej, ok := fn.addPairs(ctx, rec, j.todo, rows); !ok {
		fn.q, fn.c = fn.q[:first*fn.slot], fn.c[:first*fn.slot]
		keep := rec
		keep.PairScores = nil
		emit(keep)
		reject(rej)
		queriesKept.Inc(ctx, 1)
		fn.report.Add(1)
		return nil
	}
	fn.jobs = append(fn.jobs, j)
	if fn.batched() >= fn.Config.BatchPairs {
		return fn.run(ctx, emit)
	}
	return nil
}

func (fn *rerankFn) FinishBundle(ctx context.Context, emit func(lists.Record), _ func(rejects.Record)) error {
	err := fn.run(ctx, func(r lists.Record) {
		emit(r)
		if fn.Config.Pieces != "" {
			fn.done = append(fn.done, r)
		}
	})
	fn.cache = nil
	if err != nil {
		return err
	}
	return fn.commit(ctx)
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
func (fn *rerankFn) run(ctx context.Context, emit func(lists.Record)) error {
	n := fn.batched()
	var scores []float32
	if n > 0 {
		var err error
		var took time.Duration
		fn.turn(func() {
			t := time.Now()
			scores, err = fn.score(fn.q, fn.c, n)
			took = time.Since(t)
		})
		if err != nil {
			return err
		}
		batchLatency.Update(ctx, took.Milliseconds())
		pairsScored.Inc(ctx, int64(n))
	}
	for _, j := range fn.jobs {
		for k, i := range j.todo {
			j.scores[i] = scores[j.first+k]
		}
		out, err := apply(j.rec, j.scores, fn.Config.TopN)
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

// addPairs appends the pairs of a query and its head candidates at positions todo to the
// batch, or reports why it cannot.
func (fn *rerankFn) addPairs(ctx context.Context, rec lists.Record, todo []int, rows map[string]ItemRow) (rejects.Record, bool) {
	if len(todo) == 0 {
		return rejects.Record{}, true // an empty list: nothing to score
	}
	ids := []string{rec.QueryID}
	for _, i := range todo {
		ids = append(ids, rec.NeighborIDs[i])
	}
	tensors, bad, err := fn.tensors(ctx, ids, rows)
	if err != nil {
		var le *imageload.Error
		reason := "unknown_item"
		if errors.As(err, &le) {
			reason = le.Stage + "_" + le.Reason
		}
		row := rows[rec.QueryID].Row
		return rejects.Record{ItemID: rec.QueryID, Path: row.Path, Line: row.Line, Stage: Stage, Reason: reason,
			Detail: fmt.Sprintf("kept the original list: image of %s: %v", bad, err)}, false
	}
	for _, t := range tensors[1:] {
		fn.q = append(fn.q, tensors[0]...)
		fn.c = append(fn.c, t...)
	}
	return rejects.Record{}, true
}

// tensors returns the preprocessed images of ids, from the bundle's cache or loaded on
// every core. On failure it names the first id that failed.
func (fn *rerankFn) tensors(ctx context.Context, ids []string, rows map[string]ItemRow) (out [][]float32, bad string, err error) {
	out = make([][]float32, len(ids))
	var load []catalog.Row
	var at []int // index in ids of each row to load
	for i, id := range ids {
		if t, ok := fn.cache.get(id); ok {
			out[i] = t
			continue
		}
		item := rows[id]
		if !item.Found {
			return nil, id, fmt.Errorf("item %s is not in catalog %s", id, fn.Config.Catalog)
		}
		load, at = append(load, item.Row), append(at, i)
	}
	dst := make([][]float32, len(load))
	for j := range dst {
		dst[j] = make([]float32, fn.slot)
	}
	errs := make([]error, len(load))
	fn.turn(func() { fn.images.LoadBatch(ctx, load, dst, errs) })
	for j, i := range at {
		if errs[j] != nil {
			return nil, ids[i], errs[j]
		}
		out[i] = dst[j]
		fn.cache.put(ids[i], dst[j])
	}
	return out, "", nil
}

// turn runs f holding ort.CPUTurn when the model runs on the CPU.
func (fn *rerankFn) turn(f func()) {
	if fn.cpu {
		ort.CPUTurn.Lock()
		defer ort.CPUTurn.Unlock()
	}
	f()
}

// apply rewrites one list with its head's scores.
func apply(rec lists.Record, scores []float32, topN int) (lists.Record, error) {
	res, err := stir.Apply(stir.List{IDs: rec.NeighborIDs, Labels: rec.NeighborLabels, Distances: rec.Distances}, scores, topN)
	if err != nil {
		return lists.Record{}, fmt.Errorf("rerank query %s: %w", rec.QueryID, err)
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
	if e, ok := c.items[id]; ok {
		c.order.MoveToFront(e)
		c.data[id] = t
		return
	}
	if c.order.Len() >= c.max {
		old := c.order.Remove(c.order.Back()).(string)
		delete(c.items, old)
		delete(c.data, old)
	}
	c.items[id] = c.order.PushFront(id)
	c.data[id] = t
}
