// Package embed is the pipeline's embedding stage: catalog rows in, one embedding per image
// out, and a rejects record (with its reason) for every row whose image cannot be used.
//
// The DoFn is a thin shell over models/: it reads each image next to the model, decodes and
// preprocesses it into a batch slot, and runs the shared ONNX Runtime session one batch at a
// time. While a batch runs, the next one is decoded, so image work overlaps inference.
package embed

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/stirpipe/stirpipe/models/embedder"
	"github.com/stirpipe/stirpipe/models/imageio"
	"github.com/stirpipe/stirpipe/models/imageload"
	"github.com/stirpipe/stirpipe/models/manifest"
	"github.com/stirpipe/stirpipe/models/ort"
	"github.com/stirpipe/stirpipe/schemas/catalog"
	"github.com/stirpipe/stirpipe/schemas/embeddings"
	"github.com/stirpipe/stirpipe/schemas/rejects"
	"github.com/stirpipe/stirpipe/transforms/progress"
)

func init() {
	register.DoFn4x1[context.Context, catalog.Row, func(embeddings.Record), func(rejects.Record), error](&embedFn{})
	register.Emitter1[embeddings.Record]()
	register.Emitter1[rejects.Record]()
}

// StageEmbed is the rejects stage of an image whose embedding is unusable; images that
// cannot be loaded are rejected at the stages of models/imageload.
const StageEmbed = "embed"

var (
	imagesOK     = beam.NewCounter("embed", "images_ok")
	batchLatency = beam.NewDistribution("embed", "batch_latency_ms")
	batchSize    = beam.NewDistribution("embed", "batch_size")
)

// RejectedCounter is the counter of rows rejected for a reason, e.g. "rejected_corrupt".
func RejectedCounter(reason string) string { return "rejected_" + reason }

// Config is the embedding stage's configuration; it travels to the workers.
type Config struct {
	// Model is the model manifest (or the ONNX file beside it), as a local path.
	Model string
	// Root is the dataset root that catalog paths are relative to (local or gs://).
	Root string
	// BatchSize is how many images go through the model in one forward pass.
	BatchSize int
	// Runtime configures ONNX Runtime sessions (threads, optimisation, provider).
	Runtime ort.Options
	// Library is the ONNX Runtime shared library ("" = ort's default search).
	Library string
	// Limits bound the bytes and pixels of any image before it is decoded.
	Limits imageio.Limits
	// Total is the number of rows expected, for progress reports (0 = unknown).
	Total int64
	// Progress turns on periodic progress lines on stderr (local runs).
	Progress bool
}

// Validate checks the configuration without touching the model.
func (c Config) Validate() error {
	var errs []error
	if c.Model == "" {
		errs = append(errs, errors.New("embed: no model given"))
	}
	if c.Root == "" {
		errs = append(errs, errors.New("embed: no dataset root given"))
	}
	if c.BatchSize < 1 || c.BatchSize > 4096 {
		errs = append(errs, fmt.Errorf("embed: batch size must be in [1, 4096], got %d", c.BatchSize))
	}
	if err := c.Runtime.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("embed: %w", err))
	}
	return errors.Join(errs...)
}

// Embed turns catalog rows into embeddings; rows whose image cannot be read, decoded or
// preprocessed, or whose embedding is not finite, go to the second output as rejects.
// Every input row comes out exactly once, in one of the two outputs.
func Embed(s beam.Scope, rows beam.PCollection, cfg Config) (beam.PCollection, beam.PCollection) {
	s = s.Scope("Embed")
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	return beam.ParDo2(s, &embedFn{Config: cfg}, rows)
}

type embedFn struct {
	Config Config

	model    *embedder.Embedder
	images   *imageload.Loader
	slot     int // floats per image
	fill     *batch
	inflight *batch
	spare    *batch
	report   *progress.Reporter
}

// batch is one forward pass: the rows, their tensors, and, once run, the outcome.
type batch struct {
	rows    []catalog.Row
	tensors []float32
	out     [][]float32
	err     error
	elapsed time.Duration
	done    chan struct{}
}

func (fn *embedFn) Setup(ctx context.Context) error {
	if err := ort.Init(fn.Config.Library); err != nil {
		return err
	}
	m, err := manifest.Load(fn.Config.Model)
	if err != nil {
		return err
	}
	fn.model, err = embedder.Open(m, fn.Config.Runtime)
	if err != nil {
		return err
	}
	if fn.images, err = imageload.New(fn.Config.Root, fn.Config.Limits, m.Preprocess); err != nil {
		return err
	}
	fn.slot = 3 * m.Preprocess.CropSize * m.Preprocess.CropSize
	fn.fill, fn.spare = fn.newBatch(), fn.newBatch()
	if fn.Config.Progress {
		fn.report = progress.Shared("embed", "images", fn.Config.Total)
	}
	return nil
}

func (fn *embedFn) newBatch() *batch {
	return &batch{tensors: make([]float32, fn.Config.BatchSize*fn.slot)}
}

func (fn *embedFn) ProcessElement(ctx context.Context, row catalog.Row, emit func(embeddings.Record), reject func(rejects.Record)) error {
	b := fn.fill
	n := len(b.rows)
	if r, ok := fn.prepare(ctx, row, b.tensors[n*fn.slot:(n+1)*fn.slot]); !ok {
		fn.rejectRow(ctx, r, reject)
	} else {
		b.rows = append(b.rows, row)
	}
	if len(b.rows) == fn.Config.BatchSize {
		if err := fn.collect(ctx, emit, reject); err != nil {
			return err
		}
		fn.start(b)
		fn.fill, fn.spare = fn.spare, nil
	}
	return nil
}

func (fn *embedFn) FinishBundle(ctx context.Context, emit func(embeddings.Record), reject func(rejects.Record)) error {
	if err := fn.collect(ctx, emit, reject); err != nil {
		return err
	}
	if b := fn.fill; len(b.rows) > 0 {
		fn.start(b)
		fn.fill = fn.spare
		if err := fn.collect(ctx, emit, reject); err != nil {
			return err
		}
	}
	return nil
}

func (fn *embedFn) Teardown() error {
	if fn.inflight != nil {
		<-fn.inflight.done
	}
	if fn.model != nil {
		return fn.model.Close()
	}
	return nil
}

// start runs a batch on the model in the background.
func (fn *embedFn) start(b *batch) {
	b.done = make(chan struct{})
	fn.inflight = b
	go func() {
		defer close(b.done)
		t := time.Now()
		b.out, b.err = fn.model.Embed(b.tensors[:len(b.rows)*fn.slot], len(b.rows))
		b.elapsed = time.Since(t)
	}()
}

// collect waits for the batch in flight, if any, emits its results and recycles it.
func (fn *embedFn) collect(ctx context.Context, emit func(embeddings.Record), reject func(rejects.Record)) error {
	b := fn.inflight
	if b == nil {
		return nil
	}
	<-b.done
	fn.inflight = nil
	if b.err != nil {
		return fmt.Errorf("embed: forward pass of %d images (first %s): %w", len(b.rows), b.rows[0].Path, b.err)
	}
	batchLatency.Update(ctx, b.elapsed.Milliseconds())
	batchSize.Update(ctx, int64(len(b.rows)))
	for i, row := range b.rows {
		if err := fn.model.Check(b.out[i]); err != nil {
			if !errors.Is(err, embedder.ErrNonFinite) {
				return fmt.Errorf("embed: %s: %w", row.Path, err)
			}
			fn.rejectRow(ctx, rejects.Record{ItemID: row.ID, Path: row.Path, Line: row.Line,
				Stage: StageEmbed, Reason: "non_finite", Detail: err.Error()}, reject)
			continue
		}
		emit(embeddings.Record{Row: row, Embedding: b.out[i]})
		imagesOK.Inc(ctx, 1)
		fn.report.Add(1)
	}
	b.rows, b.out = b.rows[:0], nil
	fn.spare = b
	return nil
}

func (fn *embedFn) rejectRow(ctx context.Context, r rejects.Record, reject func(rejects.Record)) {
	beam.NewCounter("embed", RejectedCounter(r.Reason)).Inc(ctx, 1)
	reject(r)
	fn.report.Add(1)
}

// prepare loads one row's image into dst; on failure it returns the rejects record.
func (fn *embedFn) prepare(ctx context.Context, row catalog.Row, dst []float32) (rejects.Record, bool) {
	err := fn.images.Load(ctx, row, dst)
	if err == nil {
		return rejects.Record{}, true
	}
	var le *imageload.Error
	if !errors.As(err, &le) {
		le = &imageload.Error{Stage: imageload.StageRead, Reason: imageio.ReasonIO, Err: err}
	}
	return rejects.Record{ItemID: row.ID, Path: row.Path, Line: row.Line, Stage: le.Stage, Reason: le.Reason, Detail: err.Error()}, false
}
