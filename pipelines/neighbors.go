package pipelines

import (
	"context"
	"errors"
	"fmt"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"

	"github.com/stirpipe/stirpipe/models/knn"
	"github.com/stirpipe/stirpipe/models/ort"
	"github.com/stirpipe/stirpipe/schemas/blob"
	"github.com/stirpipe/stirpipe/schemas/embeddings"
	"github.com/stirpipe/stirpipe/schemas/lists"
	"github.com/stirpipe/stirpipe/transforms/neighbors"
	"github.com/stirpipe/stirpipe/transforms/sink"
)

// NeighborsOptions configure the neighbours pipeline; of the shared options it uses the
// output, the runtime's provider and device, the library, progress and workers.
type NeighborsOptions struct {
	Shared
	// Embeddings is the embeddings output directory ("" = Output/embeddings).
	Embeddings string
	// K is the number of neighbours per query.
	K int
	// ShardSize is the number of gallery rows per shard.
	ShardSize int
	// TileSize is the number of queries per tile and per output file.
	TileSize int
	// Format is "parquet" or "arrow".
	Format string
	// Threads is the number of cores the engine uses.
	Threads int
}

// NeighborsPlan is a checked neighbours job.
type NeighborsPlan struct {
	Options NeighborsOptions
	Config  neighbors.Config
}

// listExt maps --format to the lists' file extension.
var listExt = map[string]string{"parquet": lists.ExtParquet, "arrow": lists.ExtArrow}

// Check reports every problem of the flags at once, without reading anything.
func (o NeighborsOptions) Check() error {
	var errs []error
	if o.Output == "" {
		errs = append(errs, errors.New("--output is required: the run's output directory"))
	}
	if o.K < 1 {
		errs = append(errs, fmt.Errorf("--k must be ≥ 1, got %d", o.K))
	}
	if o.ShardSize < 1 || o.TileSize < 1 {
		errs = append(errs, fmt.Errorf("--shard_size and --tile_size must be ≥ 1, got %d and %d", o.ShardSize, o.TileSize))
	}
	if listExt[o.Format] == "" {
		errs = append(errs, fmt.Errorf("--lists_format must be parquet or arrow, got %q", o.Format))
	}
	return errors.Join(errs...)
}

// PrepareNeighbors checks the options and the embeddings output, counts its queries and
// gallery rows, and loads ONNX Runtime, so that a bad input stops the job before work.
func PrepareNeighbors(ctx context.Context, o NeighborsOptions) (*NeighborsPlan, error) {
	if err := o.Check(); err != nil {
		return nil, err
	}
	ext := listExt[o.Format]
	if o.Embeddings == "" {
		o.Embeddings = blob.Join(o.Output, EmbeddingsDir)
	}
	r, err := embeddings.Open(ctx, o.Embeddings)
	if err != nil {
		return nil, err
	}
	prov := r.Provenance()
	snapshot, err := lists.ManifestSHA256(ctx, o.Embeddings)
	if err != nil {
		return nil, err
	}
	plan, err := neighbors.PlanFor(ctx, r)
	if err != nil {
		return nil, err
	}
	if err := ort.Init(o.Library); err != nil {
		return nil, err
	}
	cfg := neighbors.Config{
		Embeddings: o.Embeddings,
		Output:     blob.Join(o.Output, NeighborsDir),
		Ext:        ext,
		Engine: knn.Options{K: o.K, Normalized: prov.Normalized, ExcludeSelf: true, ExcludeSameSequence: true,
			Threads: o.Threads, Provider: o.Runtime.Provider, CUDADevice: o.Runtime.CUDADevice},
		ShardSize: o.ShardSize,
		TileSize:  o.TileSize,
		Library:   o.Workers.library(o.Library),
		Plan:      plan,
		Progress:  o.Progress,
		Provenance: lists.Provenance{
			Stage:              lists.StageNeighbors,
			EmbeddingsURI:      o.Embeddings,
			EmbeddingsSnapshot: snapshot,
			ModelName:          prov.ModelName,
			ModelSHA256:        prov.ModelSHA256,
			K:                  o.K,
			Distance:           prov.Distance,
			Engine:             "onnxruntime-gemm/exact",
			ShardSize:          o.ShardSize,
			Exclusions:         lists.ExcludeSelf + "," + lists.ExcludeSequence,
			CatalogURI:         prov.CatalogURI,
			CatalogSnapshot:    prov.CatalogSnapshot,
			Producer:           "stirpipe neighbors",
		},
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("neighbors of %s: %w", o.Embeddings, err)
	}
	return &NeighborsPlan{Options: o, Config: cfg}, nil
}

// Neighbors builds the neighbours pipeline: embeddings → neighbour lists (and the rejects
// of vectors that cannot be searched).
func Neighbors(s beam.Scope, p *NeighborsPlan) {
	rejs := neighbors.Search(s, p.Config)
	sink.Rejects(s, rejs, RejectsFile(p.Options.Output, neighbors.Stage))
}

// Name is the stage's name.
func (p *NeighborsPlan) Name() string { return neighbors.Stage }

// Outputs are the lists' completion marker.
func (p *NeighborsPlan) Outputs() []string { return []string{MarkersOf(p.Options.Output).Neighbors} }

// Describe says what is about to run.
func (p *NeighborsPlan) Describe() string {
	c := p.Config
	return fmt.Sprintf("neighbors: %d queries × %d gallery rows, k=%d, %d shard(s) × %d tile(s), running…",
		c.Plan.Queries, c.Plan.Galleries, c.Engine.K, c.Shards(), c.Tiles())
}

// Build adds the neighbours pipeline to s.
func (p *NeighborsPlan) Build(s beam.Scope) { Neighbors(s, p) }

// Summarize counts the lists and rejects and checks that every query has a list or a
// reject.
func (p *NeighborsPlan) Summarize(ctx context.Context, _ beam.PipelineResult) (*Summary, error) {
	c := p.Config
	m, err := lists.ReadManifest(ctx, c.Output)
	if err != nil {
		return nil, err
	}
	file := RejectsFile(p.Options.Output, neighbors.Stage)
	n, reasons, err := readRejects(ctx, file)
	if err != nil {
		return nil, err
	}
	sum := &Summary{Stage: p.Name(), RejectReasons: reasons, Lines: []Line{
		{Label: "queries", Count: c.Plan.Queries, Where: c.Embeddings},
		{Label: "lists", Count: m.Rows, Where: fmt.Sprintf("%s (%d file(s), k=%d, engine %s)", c.Output, len(m.Shards), m.Provenance.K, m.Provenance.Engine)},
		{Label: "rejects", Count: n, Where: file},
	}}
	if m.Rows > c.Plan.Queries {
		return sum, fmt.Errorf("row accounting mismatch: %d queries but %d lists", c.Plan.Queries, m.Rows)
	}
	return sum, nil
}
