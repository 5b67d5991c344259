package embed

import (
	"context"
	"fmt"
	"runtime"
	"sync"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/stirpipe/stirpipe/models/imageio"
	"github.com/stirpipe/stirpipe/models/imageload"
	"github.com/stirpipe/stirpipe/models/manifest"
	"github.com/stirpipe/stirpipe/schemas/catalog"
	"github.com/stirpipe/stirpipe/schemas/embeddings"
	"github.com/stirpipe/stirpipe/transforms/progress"
)

func init() {
	register.DoFn3x1[context.Context, catalog.Row, func(string, PrintedRow), error](&fingerprintFn{})
	register.DoFn3x1[context.Context, string, func(string, embeddings.Record), error](&readEarlierFn{})
	register.DoFn8x0[context.Context, string, func(*PrintedRow) bool, func(*embeddings.Record) bool, func(*embeddings.Record) bool,
		func(embeddings.Record), func(catalog.Row), func(string)](&reuseFn{})
	register.Emitter2[string, PrintedRow]()
	register.Emitter2[string, embeddings.Record]()
	register.Emitter1[catalog.Row]()
	register.Emitter1[string]()
	register.Iter1[PrintedRow]()
	register.Iter1[embeddings.Record]()
}

// Names of the reuse metrics (namespace StageEmbed).
const (
	MetricReused  = "embeddings_reused"
	MetricRemoved = "rows_removed"
	MetricChanged = "items_changed"
)

var (
	reusedCount  = beam.NewCounter(StageEmbed, MetricReused)
	removedCount = beam.NewCounter(StageEmbed, MetricRemoved)
	changedCount = beam.NewCounter(StageEmbed, MetricChanged)
)

// Earlier is what an embed stage may reuse: the embeddings of a previous run (Previous,
// whose rows also define what changed since) and the pieces a killed run on the same
// output committed (Pieces). Every file must come from the same model and preprocessing
// as the stage's own Provenance; a file from another one is refused.
type Earlier struct {
	Previous []string
	Pieces   []string
}

// Reuse splits the catalog rows into the embeddings that can be reused (the row's image
// fingerprint and box equal an earlier embedding's) and the rows to embed. changed holds
// the ids of every item whose row differs from the previous run's in anything the later
// stages use (image, box, label, sequence, category, split or role), and of every item added or
// removed since: the later stages redo exactly these.
func Reuse(s beam.Scope, rows beam.PCollection, earlier Earlier, cfg Config, pre manifest.Preprocess) (reused, toEmbed, changed beam.PCollection) {
	s = s.Scope("Reuse")
	printed := beam.ParDo(s, &fingerprintFn{Root: cfg.Root, Limits: cfg.Limits, Preprocess: pre}, rows)
	read := func(name string, files []string) beam.PCollection {
		if len(files) == 0 {
			files = []string{""} // an empty input keeps the join's shape
		}
		return beam.ParDo(s.Scope(name), &readEarlierFn{Want: cfg.Provenance}, beam.Reshuffle(s, beam.CreateList(s, files)))
	}
	joined := beam.CoGroupByKey(s, printed, read("Previous", earlier.Previous), read("Pieces", earlier.Pieces))
	return beam.ParDo3(s, &reuseFn{Progress: cfg.Progress, Total: cfg.Total}, joined)
}

// PrintedRow is a catalog row with its image's fingerprint ("" when the image cannot be
// read: the row is embedded, and rejected there with the reason).
type PrintedRow struct {
	Row         catalog.Row
	Fingerprint string
}

// fingerprintFn fingerprints rows in batches, many files at a time: on gs:// each is a
// metadata request, on disk a read.
type fingerprintFn struct {
	Root       string
	Limits     imageio.Limits
	Preprocess manifest.Preprocess

	images *imageload.Loader
	rows   []catalog.Row
}

const fingerprintBatch = 256

func (fn *fingerprintFn) Setup() (err error) {
	fn.images, err = imageload.New(fn.Root, fn.Limits, fn.Preprocess)
	return err
}

func (fn *fingerprintFn) ProcessElement(ctx context.Context, row catalog.Row, emit func(string, PrintedRow)) error {
	fn.rows = append(fn.rows, row)
	if len(fn.rows) == fingerprintBatch {
		fn.flush(ctx, emit)
	}
	return nil
}

func (fn *fingerprintFn) FinishBundle(ctx context.Context, emit func(string, PrintedRow)) {
	fn.flush(ctx, emit)
}

func (fn *fingerprintFn) flush(ctx context.Context, emit func(string, PrintedRow)) {
	prints := make([]string, len(fn.rows))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4*runtime.GOMAXPROCS(0)) // I/O bound
	for i, row := range fn.rows {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			prints[i], _ = fn.images.FingerprintOf(ctx, row) // a failure is found again, and rejected, by embed
		})
	}
	wg.Wait()
	for i, row := range fn.rows {
		emit(row.ID, PrintedRow{Row: row, Fingerprint: prints[i]})
	}
	fn.rows = fn.rows[:0]
}

// readEarlierFn reads one earlier embeddings file, keyed by item id.
type readEarlierFn struct {
	Want embeddings.Provenance
}

func (fn *readEarlierFn) ProcessElement(ctx context.Context, uri string, emit func(string, embeddings.Record)) error {
	if uri == "" {
		return nil
	}
	return embeddings.ReadFile(ctx, uri, func(p embeddings.Provenance) error { return SameModel(p, fn.Want) },
		func(rec embeddings.Record) error {
			emit(rec.Row.ID, rec)
			return nil
		})
}

// SameModel reports why embeddings of provenance got cannot stand for those of want: a
// different model, dimension or preprocessing.
func SameModel(got, want embeddings.Provenance) error {
	switch {
	case got.ModelSHA256 != want.ModelSHA256:
		return fmt.Errorf("model sha256 %s, this run's is %s", got.ModelSHA256, want.ModelSHA256)
	case got.Dim != want.Dim || got.Normalized != want.Normalized || got.Distance != want.Distance:
		return fmt.Errorf("embeddings of dim %d (normalized %t, %s), this run's are dim %d (normalized %t, %s)",
			got.Dim, got.Normalized, got.Distance, want.Dim, want.Normalized, want.Distance)
	case got.Preprocess != want.Preprocess:
		return fmt.Errorf("preprocessing %s, this run's is %s", got.Preprocess, want.Preprocess)
	}
	return nil
}

// reuseFn decides, item by item, what is reused and what is embedded; reused rows count
// in the stage's progress as done.
type reuseFn struct {
	Progress bool
	Total    int64

	report *progress.Reporter
}

func (fn *reuseFn) Setup() {
	if fn.Progress {
		fn.report = progress.Shared(StageEmbed, "images", fn.Total)
	}
}

func (fn *reuseFn) ProcessElement(ctx context.Context, id string, rows func(*PrintedRow) bool, previous, pieces func(*embeddings.Record) bool,
	emitReused func(embeddings.Record), emitToEmbed func(catalog.Row), emitChanged func(string)) {
	var row PrintedRow
	hasRow := rows(&row)
	var prev, rec embeddings.Record
	hasPrev := previous(&prev)
	reusable := func(r *embeddings.Record) bool {
		return row.Fingerprint != "" && r.Fingerprint == row.Fingerprint && sameBox(r.Row, row.Row)
	}
	switch {
	case !hasRow:
		if hasPrev {
			removedCount.Inc(ctx, 1)
			changedCount.Inc(ctx, 1)
			emitChanged(id)
		}
		return
	case hasPrev && reusable(&prev):
		rec = prev
	default:
		for pieces(&rec) {
			if reusable(&rec) {
				break
			}
			rec = embeddings.Record{}
		}
	}
	if !hasPrev || !reusable(&prev) || !sameRoles(prev.Row, row.Row) {
		changedCount.Inc(ctx, 1)
		emitChanged(id)
	}
	if rec.Embedding == nil {
		emitToEmbed(row.Row)
		return
	}
	reusedCount.Inc(ctx, 1)
	fn.report.Add(1)
	emitReused(embeddings.Record{Row: row.Row, Fingerprint: row.Fingerprint, Embedding: rec.Embedding})
}

func sameBox(a, b catalog.Row) bool {
	return a.HasBox == b.HasBox && (!a.HasBox || a.X1 == b.X1 && a.Y1 == b.Y1 && a.X2 == b.X2 && a.Y2 == b.Y2)
}

// sameRoles reports whether two rows of an item take the same part in retrieval.
func sameRoles(a, b catalog.Row) bool {
	return a.Label == b.Label && a.Sequence == b.Sequence && a.Category == b.Category && a.Split == b.Split &&
		a.IsQuery == b.IsQuery && a.IsGallery == b.IsGallery
}
