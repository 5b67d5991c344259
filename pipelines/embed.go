// Package pipelines holds the pipelines users run, each a short function that wires
// transforms to the stage files, plus the preflight that checks inputs, models and flags
// before any image is read.
package pipelines

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"

	"github.com/stirpipe/stirpipe/models/embedder"
	"github.com/stirpipe/stirpipe/models/imageio"
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
	// Catalog is the catalog file (CSV or Parquet), local or gs://.
	Catalog string
	// Format forces "csv" or "parquet" ("" = from the extension).
	Format string
	// Root is the dataset root for image paths ("" = the catalog's directory).
	Root string
	// Output is the run's output directory, local or gs://.
	Output string
	// Model is the embedder's manifest or ONNX file (local path).
	Model string
	// BatchSize is the number of images per forward pass.
	BatchSize int
	// Runtime configures ONNX Runtime sessions.
	Runtime ort.Options
	// Library is the ONNX Runtime shared library ("" = default search).
	Library string
	// Limits bound image bytes and pixels.
	Limits imageio.Limits
	// EmbeddingShards is the number of embeddings files (0 = one per 50,000 rows).
	EmbeddingShards int
	// CatalogShards is the number of parallel catalog readers (0 = one per 20,000 rows).
	CatalogShards int
	// Progress prints progress lines (local runs).
	Progress bool
	// Workers says where the work runs.
	Workers Workers
}

// EmbedPlan is a checked embed job: everything the pipeline needs, known before it runs.
type EmbedPlan struct {
	Options    EmbedOptions
	Catalog    *catalog.Catalog
	Manifest   *manifest.Manifest
	Provenance embeddings.Provenance
}

// PrepareEmbed checks flags, loads and validates the catalog, loads the ONNX Runtime
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
	cat, err := catalog.Load(ctx, o.Catalog, catalog.Options{Format: o.Format, Root: o.Root})
	if err != nil {
		return nil, err // catalog.Load names the catalog
	}
	o.Format = cat.Format
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
	sha, err := embedder.Verify(m, o.Workers.preflight(o.Runtime))
	if err != nil {
		return nil, err
	}
	pre, _ := json.Marshal(m.Preprocess)
	if o.EmbeddingShards == 0 {
		o.EmbeddingShards = ceilDiv(len(cat.Rows), 50_000)
	}
	if o.CatalogShards == 0 {
		o.CatalogShards = ceilDiv(len(cat.Rows), 20_000)
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
	rows := catalogio.Read(s, catalogio.Source{URI: o.Catalog, Format: o.Format, Snapshot: p.Catalog.Snapshot, Shards: o.CatalogShards})
	embs, rejs := embed.Embed(s, rows, embed.Config{
		Model:       o.Model,
		ModelSHA256: p.Provenance.ModelSHA256,
		Root:        o.Root,
		BatchSize:   o.BatchSize,
		Runtime:     o.Runtime,
		Library:     o.Workers.library(o.Library),
		Limits:      o.Limits,
		Total:       int64(len(p.Catalog.Rows)),
		Progress:    o.Progress,
	})
	sink.Embeddings(s, embs, blob.Join(o.Output, EmbeddingsDir), o.EmbeddingShards, p.Provenance)
	sink.Rejects(s, rejs, RejectsFile(o.Output, "embed"))
}

func ceilDiv(a, b int) int {
	if a <= 0 {
		return 1
	}
	return (a + b - 1) / b
}
