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
	"github.com/stirpipe/stirpipe/schemas/neighbors"
	"github.com/stirpipe/stirpipe/transforms/search"
	"github.com/stirpipe/stirpipe/transforms/sink"
)

// NeighborsOptions configure the neighbours pipeline.
type NeighborsOptions struct {
	// Embeddings is the embeddings output directory ("" = Output/embeddings).
	Embeddings string
	// Output is the run's output directory; the lists go to Output/neighbors.
	Output string
	// K is the number of neighbours per query.
	K int
	// ShardSize is the number of gallery rows per shard.
	ShardSize int
	// TileSize is the number of queries per tile and per output file.
	TileSize int
	// Format is "parquet" or "arrow".
	Format string
	// Threads, Provider and CUDADevice configure the engine.
	Threads    int
	Provider   string
	CUDADevice int
	// Library is the ONNX Runtime shared library ("" = default search).
	Library string
	// Progress prints progress lines.
	Progress bool
	// Workers says where the work runs.
	Workers Workers
}

// NeighborsPlan is a checked neighbours job.
type NeighborsPlan struct {
	Options NeighborsOptions
	Config  search.Config
}

// listExt maps --format to the lists' file extension.
var listExt = map[string]string{"parquet": neighbors.ExtParquet, "arrow": neighbors.ExtArrow}

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
		errs = append(errs, fmt.Errorf("--format must be parquet or arrow, got %q", o.Format))
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
	snapshot, err := neighbors.ManifestSHA256(ctx, o.Embeddings)
	if err != nil {
		return nil, err
	}
	plan, err := search.PlanFor(ctx, r)
	if err != nil {
		return nil, err
	}
	if err := ort.Init(o.Library); err != nil {
		return nil, err
	}
	cfg := search.Config{
		Embeddings: o.Embeddings,
		Output:     blob.Join(o.Output, NeighborsDir),
		Ext:        ext,
		Engine: knn.Options{K: o.K, Normalized: prov.Normalized, ExcludeSelf: true, ExcludeSameSequence: true,
			Threads: o.Threads, Provider: o.Provider, CUDADevice: o.CUDADevice},
		ShardSize: o.ShardSize,
		TileSize:  o.TileSize,
		Library:   o.Workers.library(o.Library),
		Plan:      plan,
		Progress:  o.Progress,
		Provenance: neighbors.Provenance{
			Stage:              neighbors.StageNeighbors,
			EmbeddingsURI:      o.Embeddings,
			EmbeddingsSnapshot: snapshot,
			ModelName:          prov.ModelName,
			ModelSHA256:        prov.ModelSHA256,
			K:                  o.K,
			Distance:           prov.Distance,
			Engine:             "onnxruntime-gemm/exact",
			ShardSize:          o.ShardSize,
			Exclusions:         neighbors.ExcludeSelf + "," + neighbors.ExcludeSequence,
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
	rejs := search.Search(s, p.Config)
	sink.Rejects(s, rejs, RejectsFile(p.Options.Output, search.Stage))
}
