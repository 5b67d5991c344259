package knn

import (
	_ "embed"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"

	ortgo "github.com/yalue/onnxruntime_go"

	"github.com/stirpipe/stirpipe/models/ort"
)

// scoresGraph is graphs/scores.onnx (models/recipe/make_knn_graph.py): scores[q,g] =
// queries[q,d] · gallery[g,d]ᵀ, every dimension symbolic. It is compiled in, so workers need
// no model file.
//
//go:embed graphs/scores.onnx
var scoresGraph []byte

// Default block sizes on the CPU: a worker's score block (TileRows × ChunkRows float32,
// 4 MiB) stays in cache between the GEMM that writes it and the selection that reads it,
// and the GEMM repacks each gallery chunk once per 512 query rows. Measured on 2 cores
// (D = 384): 512 × 2048 used 15–20 % less CPU than 256 × 2048 and about as much as
// 1024 × 2048.
const (
	DefaultTileRows  = 512
	DefaultChunkRows = 2048
	// DefaultCUDATileRows and DefaultCUDAChunkRows are the block under the CUDA provider
	// (128 MiB of scores per thread, copied back to the host after each GEMM). Not yet
	// measured on a GPU.
	DefaultCUDATileRows  = 2048
	DefaultCUDAChunkRows = 16384
)

// Options configure an Engine.
type Options struct {
	// K is the number of neighbours per query (≥ 1).
	K int
	// Normalized says the vectors are unit length (within NormTolerance): candidates are
	// selected by inner product (d² = 2 − 2·ip, one comparison per score), and zero or
	// non-unit vectors are errors. Otherwise selection uses d² = |q|² + |g|² − 2·ip.
	// Reported distances are exact Euclidean distances either way.
	Normalized bool
	// ExcludeSelf leaves out the gallery row whose item id equals the query's.
	ExcludeSelf bool
	// ExcludeSameSequence leaves out gallery rows whose non-empty sequence equals the query's.
	ExcludeSameSequence bool
	// Threads is the number of cores used (0 = GOMAXPROCS). On the CPU each thread is a
	// worker that computes and selects its own blocks, with a single-threaded GEMM.
	Threads int
	// Provider is the ONNX Runtime execution provider: "cpu" (default), "cuda" or "auto"
	// (see models/ort).
	Provider string
	// CUDADevice is the GPU ordinal for the CUDA provider.
	CUDADevice int
	// TileRows is the number of query rows per GEMM (0 = DefaultTileRows, or
	// DefaultCUDATileRows under CUDA).
	TileRows int
	// ChunkRows is the number of gallery rows per GEMM (0 = DefaultChunkRows, or
	// DefaultCUDAChunkRows under CUDA).
	ChunkRows int
}

// Validate reports every invalid field at once.
func (o Options) Validate() error {
	var errs []error
	if o.K < 1 {
		errs = append(errs, fmt.Errorf("K must be ≥ 1, got %d", o.K))
	}
	if o.Threads < 0 {
		errs = append(errs, fmt.Errorf("threads must be ≥ 0 (0 = all cores), got %d", o.Threads))
	}
	if o.TileRows < 0 {
		errs = append(errs, fmt.Errorf("tile rows must be ≥ 0 (0 = default), got %d", o.TileRows))
	}
	if o.ChunkRows < 0 {
		errs = append(errs, fmt.Errorf("chunk rows must be ≥ 0 (0 = default), got %d", o.ChunkRows))
	}
	if err := o.runtime().Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// runtime returns the ONNX Runtime session options: one intra-op thread, since the engine
// runs Threads GEMMs side by side.
func (o Options) runtime() ort.Options {
	return ort.Options{IntraOpThreads: 1, InterOpThreads: 1, GraphOptLevel: ort.OptAll,
		Provider: o.Provider, CUDADevice: o.CUDADevice}
}

// Engine searches query tiles against gallery shards. Its buffers are reused between
// calls; searches are serialised (each uses Threads cores), so one Engine per process is
// enough. Close frees it.
type Engine struct {
	opts     Options
	threads  int
	provider string
	session  *ortgo.DynamicAdvancedSession

	mu         sync.Mutex // serialises searches; guards the workers and session
	workers    []*worker
	symWorkers []*symWorker
	shared     []atomic.Uint32 // SearchSelf/SearchPair: thresholds shared by the threads
}

// worker holds one thread's buffers.
type worker struct {
	scores []float32
	sel    []selector
	batch  batchScratch
}

// NewEngine validates opts and creates the ONNX Runtime session. ort.Init must have
// succeeded.
func NewEngine(opts Options) (*Engine, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("knn: %w", err)
	}
	if !ort.Initialized() {
		return nil, errors.New("knn: ONNX Runtime is not initialised: call ort.Init first")
	}
	rt := opts.runtime()
	rt.Provider = ort.ProviderCPU
	so, provider, err := ort.NewSessionOptions(rt)
	if err != nil {
		return nil, fmt.Errorf("knn: %w", err)
	}
	defer so.Destroy()
	if opts.Provider == ort.ProviderCUDA || opts.Provider == ort.ProviderAuto {
		switch err := appendCUDA(so, opts.CUDADevice); {
		case err == nil:
			provider = ort.ProviderCUDA
		case opts.Provider == ort.ProviderCUDA:
			return nil, fmt.Errorf("knn: %w", err)
		}
	}
	s, err := ortgo.NewDynamicAdvancedSessionWithONNXData(scoresGraph,
		[]string{"queries", "gallery"}, []string{"scores"}, so)
	if err != nil {
		return nil, fmt.Errorf("knn: create ONNX Runtime session for the scores graph (provider %s): %w", provider, err)
	}
	e := &Engine{opts: opts, threads: opts.Threads, provider: provider, session: s}
	if e.threads == 0 {
		e.threads = runtime.GOMAXPROCS(0)
	}
	if e.opts.TileRows == 0 {
		e.opts.TileRows = DefaultTileRows
		if provider == ort.ProviderCUDA {
			e.opts.TileRows = DefaultCUDATileRows
		}
	}
	if e.opts.ChunkRows == 0 {
		e.opts.ChunkRows = DefaultChunkRows
		if provider == ort.ProviderCUDA {
			e.opts.ChunkRows = DefaultCUDAChunkRows
		}
	}
	return e, nil
}

// appendCUDA adds the CUDA execution provider with TF32 off: the error bound that makes
// the search exact assumes float32 products (TF32 keeps 10 mantissa bits, and would send
// almost every query to the exact Go fallback). models/ort's CUDA setup leaves TF32 at
// ONNX Runtime's default, which is on.
func appendCUDA(so *ortgo.SessionOptions, device int) error {
	wrap := func(step string, err error) error {
		return fmt.Errorf("%w: CUDA was requested (device %d) but the ONNX Runtime library %s cannot provide it (%s: %v)",
			ort.ErrNoCUDA, device, ort.LoadedLibrary(), step, err)
	}
	co, err := ortgo.NewCUDAProviderOptions()
	if err != nil {
		return wrap("create CUDA provider options", err)
	}
	defer co.Destroy()
	if err := co.Update(map[string]string{"device_id": strconv.Itoa(device), "use_tf32": "0"}); err != nil {
		return wrap("set device_id and use_tf32", err)
	}
	if err := so.AppendExecutionProviderCUDA(co); err != nil {
		return wrap("append CUDA provider", err)
	}
	return nil
}

// Options returns the engine's options with defaults filled in.
func (e *Engine) Options() Options {
	o := e.opts
	o.Threads = e.threads
	return o
}

// Provider returns the execution provider in use: "cpu" or "cuda".
func (e *Engine) Provider() string { return e.provider }

// Close frees the ONNX Runtime session; later searches fail.
func (e *Engine) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.session == nil {
		return nil
	}
	err := e.session.Destroy()
	e.session, e.workers, e.symWorkers, e.shared = nil, nil, nil, nil
	if err != nil {
		return fmt.Errorf("knn: close session: %w", err)
	}
	return nil
}

// FreeBuffers drops the per-thread score and selection buffers that searches keep for
// reuse (a few MiB per thread), e.g. when a worker is done with a gallery shard for a
// while. The next search allocates them again.
func (e *Engine) FreeBuffers() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.workers, e.symWorkers, e.shared = nil, nil, nil
}

// Search validates g and searches q against it; see SearchIndex. To search several query
// tiles against one gallery, build its Index once with NewIndex.
func (e *Engine) Search(q Query, g Gallery) ([][]Neighbor, error) {
	ix, err := NewIndex(g)
	if err != nil {
		return nil, err
	}
	return e.SearchIndex(q, ix)
}

// SearchIndex returns, for every query row, up to K gallery rows ascending by (distance,
// row): exactly K unless the exclusions leave fewer rows. Invalid queries (dimension,
// vector length, non-finite values, zero or non-unit vectors when Normalized) are errors
// naming the item; so are non-unit gallery vectors when Normalized.
func (e *Engine) SearchIndex(q Query, ix *Index) ([][]Neighbor, error) {
	if ix == nil {
		return nil, errors.New("knn: nil index")
	}
	qs, err := e.prepareQueries(q, ix)
	if err != nil {
		return nil, err
	}
	nq := len(q.IDs)
	out := make([][]Neighbor, nq)
	if nq == 0 {
		return out, nil
	}
	if ix.n == 0 {
		for i := range out {
			out[i] = []Neighbor{}
		}
		return out, nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.session == nil {
		return nil, errors.New("knn: engine is closed")
	}
	tile := tileRows(e.opts.TileRows, nq, e.threads)
	chunk := e.opts.ChunkRows
	if chunk == 0 || chunk > ix.n {
		chunk = ix.n
	}
	ntiles := (nq + tile - 1) / tile
	threads := min(e.threads, ntiles)
	for len(e.workers) < threads {
		e.workers = append(e.workers, &worker{})
	}
	backing := make([]Neighbor, 0, nq*min(e.opts.K, ix.n))
	for w := range threads {
		wk := e.workers[w]
		if len(wk.scores) < tile*chunk {
			wk.scores = make([]float32, tile*chunk)
		}
		if len(wk.sel) < tile {
			wk.sel = make([]selector, tile)
		}
	}
	err = eachTile(e.workers[:threads], ntiles, func(wk *worker, t int) error {
		q0, q1 := t*tile, min((t+1)*tile, nq)
		if err := e.searchTile(wk, q, qs, ix, q0, q1, chunk); err != nil {
			return err
		}
		qrow := func(i int) []float32 { return q.Vectors[(q0+i)*q.Dim : (q0+i+1)*q.Dim] }
		exactBatch(wk.sel[:q1-q0], qrow, ix, &wk.batch)
		// Each query owns a fixed window of backing, so workers never collide.
		per := min(e.opts.K, ix.n)
		for i := q0; i < q1; i++ {
			out[i] = wk.sel[i-q0].settle(qrow(i-q0), ix, e.opts.Normalized, e.opts.K, backing[i*per:i*per:(i+1)*per])
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// tileRows is the query rows per tile: at most want, and small enough that n rows make a
// tile for each of the threads.
func tileRows(want, n, threads int) int {
	return max(1, min(want, (n+threads-1)/threads))
}

// queryState is what selection needs per query.
type queryState struct {
	self, seq []int32
	norm2     []float64
}

// prepareQueries validates q against ix and the options and resolves exclusions.
func (e *Engine) prepareQueries(q Query, ix *Index) (queryState, error) {
	n := len(q.IDs)
	var errs []error
	if q.Dim != ix.g.Dim {
		return queryState{}, fmt.Errorf("knn: query dimension %d differs from the gallery's %d", q.Dim, ix.g.Dim)
	}
	if len(q.Vectors) != n*q.Dim {
		errs = append(errs, fmt.Errorf("queries have %d ids and %d floats, want %d·%d = %d floats",
			n, len(q.Vectors), n, q.Dim, n*q.Dim))
	}
	if q.Sequences != nil && len(q.Sequences) != n {
		errs = append(errs, fmt.Errorf("queries have %d ids but %d sequences", n, len(q.Sequences)))
	}
	if len(errs) > 0 {
		return queryState{}, fmt.Errorf("knn: invalid queries: %w", errors.Join(errs...))
	}
	norm2, err := checkVectors("query", q.IDs, q.Vectors, q.Dim)
	if err != nil {
		return queryState{}, fmt.Errorf("knn: invalid queries: %w", err)
	}
	if e.opts.Normalized {
		var bad problems
		checkUnit(&bad, "query", q.IDs, norm2)
		checkUnit(&bad, "gallery", ix.g.IDs, ix.norm2)
		if err := bad.err(); err != nil {
			return queryState{}, fmt.Errorf("knn: Normalized is set but %w (normalise the embeddings or unset Normalized)", err)
		}
	}
	qs := queryState{self: make([]int32, n), seq: make([]int32, n), norm2: norm2}
	for i, id := range q.IDs {
		qs.self[i], qs.seq[i] = -1, -1
		if e.opts.ExcludeSelf {
			qs.self[i] = ix.find(id)
		}
		if e.opts.ExcludeSameSequence && q.Sequences != nil && q.Sequences[i] != "" {
			if c, ok := ix.codes[q.Sequences[i]]; ok {
				qs.seq[i] = c
			}
		}
	}
	return qs, nil
}

// checkUnit adds a problem for every squared norm whose norm is not within NormTolerance of 1.
func checkUnit(bad *problems, what string, ids []string, norm2 []float64) {
	for i, s := range norm2 {
		if nrm := math.Sqrt(s); math.Abs(nrm-1) > NormTolerance {
			if s == 0 {
				bad.add(fmt.Errorf("%s row %d (item %q) is the zero vector", what, i, ids[i]))
			} else {
				bad.add(fmt.Errorf("%s row %d (item %q) has norm %.6g, not 1 ± %g", what, i, ids[i], nrm, NormTolerance))
			}
		}
	}
}

// searchTile selects the neighbours of queries [q0, q1) into wk.sel, gallery chunk by chunk
// in row order.
func (e *Engine) searchTile(wk *worker, q Query, qs queryState, ix *Index, q0, q1, chunk int) error {
	rows := q1 - q0
	d := q.Dim
	for i := range rows {
		wk.sel[i].reset(e.opts.K+extraCandidates, qs.self[q0+i], qs.seq[q0+i], qs.norm2[q0+i])
	}
	qt, err := ortgo.NewTensor(ortgo.NewShape(int64(rows), int64(d)), q.Vectors[q0*d:q1*d])
	if err != nil {
		return fmt.Errorf("knn: query tensor: %w", err)
	}
	defer qt.Destroy()
	for c0 := 0; c0 < ix.n; c0 += chunk {
		c1 := min(c0+chunk, ix.n)
		width := c1 - c0
		scores := wk.scores[:rows*width]
		if err := e.gemm(qt, ix.g.Vectors[c0*d:c1*d], width, d, scores, rows); err != nil {
			return err
		}
		for i := range rows {
			row := scores[i*width : (i+1)*width]
			if e.opts.Normalized {
				wk.sel[i].scanUnit(row, int32(c0), ix.seq)
			} else {
				wk.sel[i].scanGeneral(row, ix.norm2[c0:c1], int32(c0), ix.seq)
			}
		}
	}
	return nil
}

// gemm runs the scores graph: scores[rows,width] = queries · gallery chunkᵀ.
func (e *Engine) gemm(qt *ortgo.Tensor[float32], gallery []float32, width, d int, scores []float32, rows int) (err error) {
	gt, err := ortgo.NewTensor(ortgo.NewShape(int64(width), int64(d)), gallery)
	if err != nil {
		return fmt.Errorf("knn: gallery tensor: %w", err)
	}
	defer gt.Destroy()
	st, err := ortgo.NewTensor(ortgo.NewShape(int64(rows), int64(width)), scores)
	if err != nil {
		return fmt.Errorf("knn: scores tensor: %w", err)
	}
	defer st.Destroy()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("knn: panic in ONNX Runtime wrapper: %v", r)
		}
	}()
	if err := e.session.Run([]ortgo.Value{qt, gt}, []ortgo.Value{st}); err != nil {
		return fmt.Errorf("knn: ONNX Runtime scores graph (%d queries × %d gallery rows, dimension %d): %w", rows, width, d, err)
	}
	return nil
}

// eachTile runs fn on tiles 0 … ntiles-1, one goroutine per worker taking the next tile
// until none is left. The first error stops the others from starting new tiles and is
// returned.
func eachTile[W any](workers []W, ntiles int, fn func(wk W, t int) error) error {
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		errMu    sync.Mutex
		firstErr error
	)
	for _, wk := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				t := int(next.Add(1) - 1)
				if t >= ntiles {
					return
				}
				if err := fn(wk, t); err != nil {
					errMu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					errMu.Unlock()
					next.Store(int64(ntiles))
					return
				}
			}
		}()
	}
	wg.Wait()
	return firstErr
}
