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
}

// EmbedPlan is a checked embed job: everything the pipeline needs, known before it runs.
type EmbedPlan struct {
	Options EmbedOptions
	// Catalog is the scanned catalog, which the workers read piece by piece.
	Catalog    *catalog.Scan
	Manifest   *manifest.Manifest
	Provenance embeddings.Provenance
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
	return &EmbedPlan{
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
	}, nil
}

// Embed builds the embed pipeline: catalog → embeddings and rejects files under Output.
func Embed(s beam.Scope, p *EmbedPlan) {
	o := p.Options
	rows := catalogio.Read(s, p.Catalog)
	embs, rejs := embed.Embed(s, rows, embed.Config{
		Config:    o.imageWork(o.Model, p.Provenance.ModelSHA256, o.Root, p.Catalog.Rows),
		BatchSize: o.BatchSize,
	})
	sink.Embeddings(s, embs, blob.Join(o.Output, EmbeddingsDir), o.EmbeddingShards, p.Provenance)
	sink.Rejects(s, rejs, RejectsFile(o.Output, embed.StageEmbed))
}

// Name is the stage's name.
func (p *EmbedPlan) Name() string { return embed.StageEmbed }

// Outputs are the embeddings' completion marker.
func (p *EmbedPlan) Outputs() []string { return []string{MarkersOf(p.Options.Output).Embeddings} }

// Describe says what is about to run.
func (p *EmbedPlan) Describe() string {
	return fmt.Sprintf("embed: %d catalog rows, model %s (D=%d), running…", p.Catalog.Rows, p.Manifest.Name, p.Manifest.Dim)
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
