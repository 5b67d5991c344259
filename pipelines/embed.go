// Package pipelines holds the stages users run and the whole job. Each stage's Prepare
// function checks its inputs, models and flags before any image is read and returns a
// Stage: its pipeline (a short function wiring transforms to the stage files), the outputs
// it rewrites and the summary of what it wrote. RunStage runs any of them; Job runs the
// four in turn after the checks that concern the whole job.
package pipelines

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"strings"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"

	"github.com/stirpipe/stirpipe/models/imagemodel"
	"github.com/stirpipe/stirpipe/models/manifest"
	"github.com/stirpipe/stirpipe/models/ort"
	"github.com/stirpipe/stirpipe/schemas/blob"
	"github.com/stirpipe/stirpipe/schemas/catalog"
	"github.com/stirpipe/stirpipe/schemas/embeddings"
	"github.com/stirpipe/stirpipe/transforms/catalogio"
	"github.com/stirpipe/stirpipe/transforms/embed"
	"github.com/stirpipe/stirpipe/transforms/sink"
)

// Outputs inside a run's --output directory.
const (
	EmbeddingsDir = "embeddings"
	NeighborsDir  = "neighbors"
	RerankedDir   = "reranked"
	RejectsDir    = "rejects"
	MetricsFile   = "metrics.json"
	// ChangesFile records what changed since the previous run a refresh started from.
	ChangesFile = "refresh/changes.json"
)

// RejectsFile is the rejects file of one stage under a run's output directory.
func RejectsFile(output, stage string) string {
	return blob.Join(output, RejectsDir, stage+".parquet")
}

// EmbedOptions configure the embed pipeline.
type EmbedOptions struct {
	Shared
	// Catalog is the catalog file (CSV or Parquet), local or gs://.
	Catalog string
	// Format forces "csv" or "parquet" ("" = from the extension).
	Format string
	// Root is the dataset root for image paths ("" = the catalog's directory).
	Root string
	// Model is the embedder's manifest or ONNX file, local or gs://.
	Model string
	// BatchSize is the number of images per forward pass.
	BatchSize int
	// EmbeddingShards is the number of embeddings files (0 = one per 50,000 rows).
	EmbeddingShards int
	// CatalogShards is the number of parallel catalog readers (0 = one per 1,000 rows).
	CatalogShards int
	// Previous is an earlier run's directory to refresh from ("" = none): its embeddings
	// are reused where an item's image, box, model and preprocessing are unchanged.
	Previous string
}

// EmbedPlan is a checked embed job: everything the pipeline needs, known before it runs.
type EmbedPlan struct {
	Options EmbedOptions
	// Catalog is the scanned catalog, which the workers read piece by piece.
	Catalog    *catalog.Scan
	Manifest   *manifest.Manifest
	Provenance embeddings.Provenance
	// Earlier is what the stage may reuse: the previous run's embeddings (when they come
	// from the same model and preprocessing) and the pieces a killed run left in Output.
	Earlier embed.Earlier
	// Previous is the previous run's embeddings directory in use ("" = none).
	Previous string
	// Notes say what the stage reuses, or why it cannot.
	Notes []string
	// own are the shards of a complete earlier output in Output itself, moved among the
	// pieces before the stage runs so that rewriting them loses nothing.
	own []string
}

// catalogPieceRows is how many rows a catalog scan puts in a piece, the unit that the
// catalog readers are made of; rowsPerReader is how many rows a reader reads by default:
// small enough that the pieces keep every worker busy, and the first rows come at once.
const (
	catalogPieceRows = 1000
	rowsPerReader    = 1000
)

// scanCatalog scans and validates a catalog in one pass, cut for readers of about
// rowsPerReader rows each, or for n readers when n > 0.
func scanCatalog(ctx context.Context, uri string, opts catalog.Options, n int) (*catalog.Scan, error) {
	cat, err := catalog.ScanFile(ctx, uri, opts, catalogPieceRows)
	if err != nil {
		return nil, err // the scan names the catalog
	}
	if n == 0 {
		n = ceilDiv(int(cat.Rows), rowsPerReader)
	}
	cat.Regroup(n)
	return cat, nil
}

// PrepareEmbed checks flags, scans and validates the catalog, loads the ONNX Runtime
// library and checks the model against its graph, so that a bad input stops the job
// here, before any image is read.
func PrepareEmbed(ctx context.Context, o EmbedOptions) (*EmbedPlan, error) {
	var errs []error
	if o.Catalog == "" {
		errs = append(errs, errors.New("--catalog is required: the catalog CSV or Parquet file"))
	}
	if o.Output == "" {
		errs = append(errs, errors.New("--output is required: the directory for the run's outputs"))
	}
	if o.Model == "" {
		errs = append(errs, errors.New("--model is required: the embedder's ONNX file or manifest"))
	}
	if o.BatchSize < 1 || o.BatchSize > 4096 {
		errs = append(errs, fmt.Errorf("--batch_size must be in [1, 4096], got %d", o.BatchSize))
	}
	if o.EmbeddingShards < 0 || o.CatalogShards < 0 {
		errs = append(errs, errors.New("shard counts must be ≥ 0 (0 = automatic)"))
	}
	if err := o.Runtime.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if o.Root == "" {
		o.Root = blob.Dir(o.Catalog)
	}
	cat, err := scanCatalog(ctx, o.Catalog, catalog.Options{Format: o.Format, Root: o.Root}, o.CatalogShards)
	if err != nil {
		return nil, err
	}
	o.Format, o.CatalogShards = cat.Format, len(cat.Pieces)
	m, err := manifest.Open(ctx, o.Model)
	if err != nil {
		return nil, err
	}
	if m.Kind != manifest.KindEmbedder {
		return nil, fmt.Errorf("--model %s is a %s model; the embed stage needs an embedder", o.Model, m.Kind)
	}
	if err := ort.Init(o.Library); err != nil {
		return nil, err
	}
	sha, err := imagemodel.VerifyEmbedder(m, o.Workers.preflight(o.Runtime))
	if err != nil {
		return nil, err
	}
	pre, _ := json.Marshal(m.Preprocess)
	if o.EmbeddingShards == 0 {
		o.EmbeddingShards = ceilDiv(int(cat.Rows), 50_000)
	}
	p := &EmbedPlan{
		Options:  o,
		Catalog:  cat,
		Manifest: m,
		Provenance: embeddings.Provenance{
			ModelName:       m.Name,
			ModelSHA256:     sha,
			Dim:             m.Dim,
			Normalized:      m.Normalized,
			Distance:        m.Distance,
			Preprocess:      string(pre),
			CatalogURI:      o.Catalog,
			CatalogSnapshot: cat.Snapshot,
			Producer:        "stirpipe embed",
		},
	}
	if err := p.findEarlier(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// findEarlier finds what the stage can reuse: the previous run's embeddings, the pieces a
// killed run committed in Output, and a complete earlier output in Output. A previous run
// that is incomplete, corrupt or from another model is not used, and a note says why; one
// that cannot be read at all stops the job.
func (p *EmbedPlan) findEarlier(ctx context.Context) error {
	o := p.Options
	dir := blob.Join(o.Output, EmbeddingsDir)
	if prev := o.Previous; prev != "" && !sameDir(prev, o.Output) {
		files, err := blob.List(ctx, prev)
		if err != nil {
			return fmt.Errorf("--previous %s: %w", prev, err)
		}
		if len(files) == 0 {
			return fmt.Errorf("--previous %s: no run there (nothing to read): give the directory of an earlier run, or leave --previous empty", prev)
		}
		pdir := blob.Join(prev, EmbeddingsDir)
		shards, err := reusableShards(ctx, pdir, p.Provenance)
		if errors.Is(err, fs.ErrPermission) {
			return fmt.Errorf("--previous %s: %w", prev, err)
		}
		if err != nil {
			p.Notes = append(p.Notes, fmt.Sprintf("full embed: the previous run's embeddings cannot be reused: %v", err))
		} else {
			p.Earlier.Previous, p.Previous = shards, pdir
			p.Notes = append(p.Notes, "refresh from "+prev)
		}
	}
	pieces, err := embeddings.ListPieces(ctx, dir)
	if err != nil {
		return err
	}
	if own, err := reusableShards(ctx, dir, p.Provenance); err == nil {
		p.own = own
		for _, f := range own {
			pieces = append(pieces, ownPiece(dir, f))
		}
	}
	if len(pieces) > 0 {
		p.Earlier.Pieces = pieces
		p.Notes = append(p.Notes, fmt.Sprintf("resume: %d file(s) of finished embeddings in %s", len(pieces), dir))
	}
	return nil
}

// sameDir reports whether two run directories are the same one (a rerun in place reuses
// its own output, not a previous run's).
func sameDir(a, b string) bool {
	if !blob.IsGCS(a) && !blob.IsGCS(b) {
		var err1, err2 error
		a, err1 = filepath.Abs(a)
		b, err2 = filepath.Abs(b)
		if err1 != nil || err2 != nil {
			return false
		}
	}
	return blob.Join(a) == blob.Join(b)
}

// reusableShards returns the shards of a complete embeddings output made by the same
// model and preprocessing as prov, or why they cannot stand for this run's: incomplete,
// corrupt (its files do not match its manifest), of the first layout, which has no image
// fingerprints, or from another model.
func reusableShards(ctx context.Context, dir string, prov embeddings.Provenance) ([]string, error) {
	r, err := embeddings.Open(ctx, dir)
	if err != nil {
		return nil, err
	}
	m := r.Manifest()
	if m.Format != embeddings.FormatV2 {
		return nil, fmt.Errorf("%s is %s, which records no image fingerprints", dir, m.Format)
	}
	if err := embed.SameModel(m.Provenance, prov); err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	files := make([]string, len(m.Shards))
	for i, s := range m.Shards {
		files[i] = blob.Join(dir, s.File)
	}
	return files, nil
}

// ownPiece is where Start moves shard f of the complete earlier output in dir.
func ownPiece(dir, f string) string {
	return blob.Join(dir, embeddings.PiecesDir, "piece-earlier-"+path.Base(filepath.ToSlash(f)))
}

// Start moves the shards of a complete earlier output in Output among its pieces, after
// withdrawing its manifest, so that the stage reuses them and a crash while it rewrites
// them loses nothing.
func (p *EmbedPlan) Start(ctx context.Context) error {
	if len(p.own) == 0 {
		return nil
	}
	dir := blob.Join(p.Options.Output, EmbeddingsDir)
	if err := Withdraw(ctx, MarkersOf(p.Options.Output).Embeddings); err != nil {
		return err
	}
	for _, f := range p.own {
		if err := blob.Rename(ctx, f, ownPiece(dir, f)); err != nil {
			return fmt.Errorf("keep the earlier embeddings %s for reuse: %w", f, err)
		}
	}
	p.own = nil
	return nil
}

// Embed builds the embed pipeline: catalog → embeddings and rejects files under Output.
// With earlier embeddings to reuse, only the rows without one are embedded, and a refresh
// records what changed since the previous run (ChangesFile).
func Embed(s beam.Scope, p *EmbedPlan) {
	o := p.Options
	dir := blob.Join(o.Output, EmbeddingsDir)
	cfg := embed.Config{
		Config:     o.imageWork(o.Model, p.Provenance.ModelSHA256, o.Root, p.Catalog.Rows),
		BatchSize:  o.BatchSize,
		Pieces:     blob.Join(dir, embeddings.PiecesDir),
		Provenance: p.Provenance,
	}
	rows := catalogio.Read(s, p.Catalog)
	var embs, rejs beam.PCollection
	if len(p.Earlier.Previous)+len(p.Earlier.Pieces) == 0 {
		embs, rejs = embed.Embed(s, rows, cfg)
	} else {
		reused, toEmbed, changed := embed.Reuse(s, rows, p.Earlier, cfg, p.Manifest.Preprocess)
		var fresh beam.PCollection
		fresh, rejs = embed.Embed(s, toEmbed, cfg)
		embs = beam.Flatten(s, reused, fresh)
		if p.Previous != "" {
			sink.Changes(s, changed, blob.Join(o.Output, ChangesFile), p.Previous)
		}
	}
	sink.Embeddings(s, embs, dir, o.EmbeddingShards, p.Provenance)
	sink.Rejects(s, rejs, RejectsFile(o.Output, embed.StageEmbed))
}

// Name is the stage's name.
func (p *EmbedPlan) Name() string { return embed.StageEmbed }

// Outputs are the embeddings' completion marker and the changes file of an earlier
// refresh.
func (p *EmbedPlan) Outputs() []string {
	return []string{MarkersOf(p.Options.Output).Embeddings, blob.Join(p.Options.Output, ChangesFile)}
}

// Describe says what is about to run.
func (p *EmbedPlan) Describe() string {
	d := fmt.Sprintf("embed: %d catalog rows, model %s (D=%d)", p.Catalog.Rows, p.Manifest.Name, p.Manifest.Dim)
	for _, n := range p.Notes {
		d += "; " + n
	}
	return d + ", running…"
}

// Build adds the embed pipeline to s.
func (p *EmbedPlan) Build(s beam.Scope) { Embed(s, p) }

// Summarize counts the embeddings and rejects and checks that every catalog row came out
// once, as one or the other.
func (p *EmbedPlan) Summarize(ctx context.Context, res beam.PipelineResult) (*Summary, error) {
	out := p.Options.Output
	dir := blob.Join(out, EmbeddingsDir)
	m, err := embeddings.ReadManifest(ctx, dir)
	if err != nil {
		return nil, err
	}
	file := RejectsFile(out, embed.StageEmbed)
	n, reasons, err := readRejects(ctx, file)
	if err != nil {
		return nil, err
	}
	sum := &Summary{Stage: p.Name(), RejectReasons: reasons, Batches: latency(res, embed.StageEmbed, embed.MetricBatchLatency), Lines: []Line{
		{Label: "catalog rows", Count: p.Catalog.Rows, Where: fmt.Sprintf("%s (%s)", p.Options.Catalog, p.Catalog.Snapshot)},
		{Label: "embeddings", Count: m.Rows, Where: fmt.Sprintf("%s (%d file(s), D=%d, model %s)", dir, len(m.Shards), m.Provenance.Dim, m.Provenance.ModelName)},
		{Label: "rejects", Count: n, Where: file},
	}}
	if len(p.Earlier.Previous)+len(p.Earlier.Pieces) > 0 {
		reused, _ := counter(res, embed.StageEmbed, embed.MetricReused)
		made, _ := counter(res, embed.StageEmbed, embed.MetricImagesOK)
		sum.Lines = append(sum.Lines, Line{Label: "reused", Count: reused, Where: strings.Join(p.Notes, "; ")},
			Line{Label: "embedded", Count: made, Where: "new or changed images"})
		sum.Work = map[string]int64{"reused": reused, "embedded": made}
		if p.Previous != "" {
			removed, _ := counter(res, embed.StageEmbed, embed.MetricRemoved)
			changed, _ := counter(res, embed.StageEmbed, embed.MetricChanged)
			sum.Lines = append(sum.Lines, Line{Label: "removed", Count: removed, Where: "rows of the previous run gone from the catalog"},
				Line{Label: "changed", Count: changed, Where: blob.Join(out, ChangesFile)})
			sum.Work["removed"], sum.Work["changed"] = removed, changed
		}
	} else if len(p.Notes) > 0 {
		sum.Lines = append(sum.Lines, Line{Label: "embedded", Count: m.Rows, Where: strings.Join(p.Notes, "; ")})
		sum.Work = map[string]int64{"reused": 0, "embedded": m.Rows}
	}
	if m.Rows+n != p.Catalog.Rows {
		return sum, fmt.Errorf("row accounting mismatch: %d catalog rows but %d embeddings + %d rejects", p.Catalog.Rows, m.Rows, n)
	}
	return sum, nil
}

func ceilDiv(a, b int) int {
	if a <= 0 {
		return 1
	}
	return (a + b - 1) / b
}
