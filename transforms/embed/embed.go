// Package embed is the pipeline's embedding stage: catalog rows in, one embedding per image
// out, and a rejects record (with its reason) for every row whose image cannot be used.
//
// The DoFn is a thin shell over models/: it collects a batch of rows, loads their images
// (read, decode, preprocess) on every core, and runs the batch through the shared ONNX
// Runtime session in one forward pass. Finished embeddings are also committed as they go, in
// piece files, so that a rerun of a killed run reuses them; Reuse decides, row by row, what
// a refresh or a rerun can take from earlier embeddings instead of embedding again.
package embed

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/stirpipe/stirpipe/models/imageio"
	"github.com/stirpipe/stirpipe/models/imageload"
	"github.com/stirpipe/stirpipe/models/imagemodel"
	"github.com/stirpipe/stirpipe/models/ort"
	"github.com/stirpipe/stirpipe/schemas/blob"
	"github.com/stirpipe/stirpipe/schemas/catalog"
	"github.com/stirpipe/stirpipe/schemas/embeddings"
	"github.com/stirpipe/stirpipe/schemas/rejects"
	"github.com/stirpipe/stirpipe/transforms/imagework"
	"github.com/stirpipe/stirpipe/transforms/progress"
)

func init() {
	register.DoFn4x1[context.Context, catalog.Row, func(embeddings.Record), func(rejects.Record), error](&embedFn{})
	register.Emitter1[embeddings.Record]()
	register.Emitter1[rejects.Record]()
}

// StageEmbed is the rejects stage of an image whose embedding is unusable; images that
// cannot be loaded are rejected at the stages of models/imageload. It is also the
// namespace of the stage's metrics.
const StageEmbed = "embed"

// Names of the stage's metrics.
const (
	MetricImagesOK     = "images_ok"
	MetricBatchLatency = "batch_latency_ms"
	MetricBatchSize    = "batch_size"
)

var (
	imagesOK     = beam.NewCounter(StageEmbed, MetricImagesOK)
	batchLatency = beam.NewDistribution(StageEmbed, MetricBatchLatency)
	batchSize    = beam.NewDistribution(StageEmbed, MetricBatchSize)
)

// RejectedCounter is the counter of rows rejected for a reason, e.g. "rejected_corrupt".
func RejectedCounter(reason string) string { return "rejected_" + reason }

// Config is the embedding stage's configuration; it travels to the workers.
type Config struct {
	imagework.Config
	// BatchSize is how many images go through the model in one forward pass.
	BatchSize int
	// Pieces, when set, is the directory where finished embeddings are committed as they
	// go (in atomic piece files of Provenance), so that a killed run loses at most the work
	// in flight: a rerun reads them back (Reuse).
	Pieces     string
	Provenance embeddings.Provenance
}

// pieceRows is how many embeddings a worker collects before it commits them as a piece
// (and at the end of every bundle).
const pieceRows = 512

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

	model   *imagemodel.Model
	images  *imageload.Loader
	cpu     bool // the session runs on the CPU
	slot    int  // floats per image
	rows    []catalog.Row
	tensors []float32           // the batch's input
	slots   [][]float32         // each image's part of tensors
	errs    []error             // per row of the batch being loaded
	prints  []string            // per row of the batch being loaded: its image's fingerprint
	done    []embeddings.Record // embedded since the last piece was committed
	report  *progress.Reporter
}

func (fn *embedFn) Setup(ctx context.Context) error {
	w, err := imagework.Open(ctx, fn.Config.Config, imagemodel.OpenEmbedder)
	if err != nil {
		return err
	}
	fn.model, fn.images, fn.cpu = w.Model, w.Images, w.CPU
	m := w.Manifest
	fn.slot = 3 * m.Preprocess.CropSize * m.Preprocess.CropSize
	fn.tensors = make([]float32, fn.Config.BatchSize*fn.slot)
	for i := range fn.Config.BatchSize {
		fn.slots = append(fn.slots, fn.tensors[i*fn.slot:(i+1)*fn.slot])
	}
	fn.errs = make([]error, fn.Config.BatchSize)
	fn.prints = make([]string, fn.Config.BatchSize)
	if fn.Config.Progress {
		fn.report = progress.Shared(StageEmbed, "images", fn.Config.Total)
	}
	return nil
}

func (fn *embedFn) ProcessElement(ctx context.Context, row catalog.Row, emit func(embeddings.Record), reject func(rejects.Record)) error {
	fn.rows = append(fn.rows, row)
	if len(fn.rows) < fn.Config.BatchSize {
		return nil
	}
	if err := fn.flush(ctx, emit, reject); err != nil {
		return err
	}
	if len(fn.done) >= pieceRows {
		return fn.commit(ctx)
	}
	return nil
}

func (fn *embedFn) FinishBundle(ctx context.Context, emit func(embeddings.Record), reject func(rejects.Record)) error {
	if err := fn.flush(ctx, emit, reject); err != nil {
		return err
	}
	return fn.commit(ctx)
}

// commit writes the embeddings made since the last piece as a piece file, named by a hash
// of its ids, so that a retried bundle rewrites the same file.
func (fn *embedFn) commit(ctx context.Context) error {
	recs := fn.done
	if fn.Config.Pieces == "" || len(recs) == 0 {
		return nil
	}
	fn.done = nil
	_, err := embeddings.WriteShard(ctx, blob.Join(fn.Config.Pieces, embeddings.PieceName(recs)), recs, fn.Config.Provenance)
	return err
}

func (fn *embedFn) Teardown() error {
	if fn.model != nil {
		return fn.model.Close()
	}
	return nil
}

// flush loads the pending rows' images, embeds those that loaded in one forward pass and
// emits every row, as an embedding or a reject.
func (fn *embedFn) flush(ctx context.Context, emit func(embeddings.Record), reject func(rejects.Record)) error {
	rows := fn.rows
	if len(rows) == 0 {
		return nil
	}
	fn.rows = rows[:0]
	if fn.cpu { // decode, then run, while no other batch of this process does (ort.CPUTurn)
		ort.CPUTurn.Lock()
		defer ort.CPUTurn.Unlock()
	}
	fn.images.LoadBatchPrinted(ctx, rows, fn.slots, fn.errs, fn.prints)
	// Pack the loaded images to the front of the batch.
	var ok []catalog.Row
	var prints []string
	for i, row := range rows {
		if err := fn.errs[i]; err != nil {
			fn.rejectRow(ctx, loadReject(row, err), reject)
			continue
		}
		if n := len(ok); n != i {
			copy(fn.tensors[n*fn.slot:(n+1)*fn.slot], fn.tensors[i*fn.slot:(i+1)*fn.slot])
		}
		ok, prints = append(ok, row), append(prints, fn.prints[i])
	}
	if len(ok) == 0 {
		return nil
	}
	t := time.Now()
	out, err := fn.model.Embed(fn.tensors[:len(ok)*fn.slot], len(ok))
	if err != nil {
		return fmt.Errorf("embed: forward pass of %d images (first %s): %w", len(ok), ok[0].Path, err)
	}
	batchLatency.Update(ctx, time.Since(t).Milliseconds())
	batchSize.Update(ctx, int64(len(ok)))
	for i, row := range ok {
		if err := fn.model.Check(out[i]); err != nil {
			if !errors.Is(err, imagemodel.ErrNonFinite) {
				return fmt.Errorf("embed: %s: %w", row.Path, err)
			}
			fn.rejectRow(ctx, rejects.Record{ItemID: row.ID, Path: row.Path, Line: row.Line,
				Stage: StageEmbed, Reason: "non_finite", Detail: err.Error()}, reject)
			continue
		}
		rec := embeddings.Record{Row: row, Fingerprint: prints[i], Embedding: out[i]}
		emit(rec)
		if fn.Config.Pieces != "" {
			fn.done = append(fn.done, rec)
		}
		imagesOK.Inc(ctx, 1)
		fn.report.Add(1)
	}
	return nil
}

func (fn *embedFn) rejectRow(ctx context.Context, r rejects.Record, reject func(rejects.Record)) {
	beam.NewCounter(StageEmbed, RejectedCounter(r.Reason)).Inc(ctx, 1)
	reject(r)
	fn.report.Add(1)
}

// loadReject is the rejects record of a row whose image could not be loaded.
func loadReject(row catalog.Row, err error) rejects.Record {
	var le *imageload.Error
	if !errors.As(err, &le) {
		le = &imageload.Error{Stage: imageload.StageRead, Reason: imageio.ReasonIO, Err: err}
	}
	return rejects.Record{ItemID: row.ID, Path: row.Path, Line: row.Line, Stage: le.Stage, Reason: le.Reason, Detail: err.Error()}
}
