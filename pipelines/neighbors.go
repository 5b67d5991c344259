package pipelines

import (
	"context"
	"errors"
	"fmt"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"

	"github.com/stirpipe/stirpipe/models/knn"
	"github.com/stirpipe/stirpipe/models/ort"
	"github.com/stirpipe/stirpipe/schemas/blob"
	"github.com/stirpipe/stirpipe/schemas/changes"
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
	// Previous is the previous run a refresh starts from ("" = none): its lists are reused
	// where the embed stage's changes file (ChangesFile) allows.
	Previous string
}

// NeighborsPlan is a checked neighbours job.
type NeighborsPlan struct {
	Options NeighborsOptions
	Config  neighbors.Config
	// Notes say what the stage reuses, or why it cannot.
	Notes []string
	// finished says Output already holds this stage's complete output for the same inputs.
	finished bool
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
	p := &NeighborsPlan{Options: o, Config: cfg}
	if m, err := lists.ReadManifest(ctx, cfg.Output); err == nil && m.Provenance == cfg.Provenance {
		p.finished = true
		p.Notes = append(p.Notes, "complete from an earlier run on the same embeddings")
		return p, nil
	}
	if o.Previous != "" {
		p.Config.Refresh, err = refreshLists(ctx, o, cfg.Provenance)
		if err != nil {
			p.Notes = append(p.Notes, fmt.Sprintf("full search: the previous lists cannot be reused: %v", err))
		} else {
			p.Notes = append(p.Notes, "refresh from "+o.Previous)
		}
	}
	return p, nil
}

// refreshLists checks that the previous run's lists can seed this run's: they were made by
// the same search from the embeddings that this run's changes file was computed against.
func refreshLists(ctx context.Context, o NeighborsOptions, want lists.Provenance) (neighbors.Refresh, error) {
	dir := blob.Join(o.Previous, NeighborsDir)
	m, err := lists.ReadManifest(ctx, dir)
	if err != nil {
		return neighbors.Refresh{}, err
	}
	got := m.Provenance
	if got.Stage != lists.StageNeighbors || got.K != want.K || got.ModelSHA256 != want.ModelSHA256 || got.Distance != want.Distance ||
		got.Exclusions != want.Exclusions || got.Engine != want.Engine {
		return neighbors.Refresh{}, fmt.Errorf("%s: made with k=%d, model %s, %s, exclusions %q, engine %s; this run: k=%d, model %s, %s, exclusions %q, engine %s",
			dir, got.K, got.ModelSHA256, got.Distance, got.Exclusions, got.Engine, want.K, want.ModelSHA256, want.Distance, want.Exclusions, want.Engine)
	}
	uri := blob.Join(o.Output, ChangesFile)
	ch, err := changes.Read(ctx, uri)
	if err != nil {
		return neighbors.Refresh{}, fmt.Errorf("no record of what changed: %w", err)
	}
	prevEmb := blob.Join(o.Previous, EmbeddingsDir)
	if ch.Previous != prevEmb {
		return neighbors.Refresh{}, fmt.Errorf("%s compares with %s, not %s", uri, ch.Previous, prevEmb)
	}
	if snap, err := lists.ManifestSHA256(ctx, prevEmb); err != nil || snap != got.EmbeddingsSnapshot {
		return neighbors.Refresh{}, fmt.Errorf("%s were not made from the embeddings now in %s", dir, prevEmb)
	}
	files := make([]string, len(m.Shards))
	for i, sh := range m.Shards {
		files[i] = blob.Join(dir, sh.File)
	}
	return neighbors.Refresh{Lists: files, Changes: uri}, nil
}

// Finished reports that Output already holds this stage's complete output, made from the
// same embeddings with the same options: the stage need not run.
func (p *NeighborsPlan) Finished() bool { return p.finished }

// Tidy removes the partial files that a run killed after writing the lists' manifest left.
func (p *NeighborsPlan) Tidy(ctx context.Context) error { return lists.RemoveTmp(ctx, p.Config.Output) }

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
	d := fmt.Sprintf("neighbors: %d queries × %d gallery rows, k=%d, %d shard(s) × %d tile(s)",
		c.Plan.Queries, c.Plan.Galleries, c.Engine.K, c.Shards(), c.Tiles())
	for _, n := range p.Notes {
		d += "; " + n
	}
	return d + ", running…"
}

// Build adds the neighbours pipeline to s.
func (p *NeighborsPlan) Build(s beam.Scope) { Neighbors(s, p) }

// Summarize counts the lists and rejects and checks that every query has a list or a
// reject.
func (p *NeighborsPlan) Summarize(ctx context.Context, res beam.PipelineResult) (*Summary, error) {
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
	switch {
	case p.finished:
		sum.Lines = append(sum.Lines, Line{Label: "reused", Count: m.Rows, Where: p.Notes[0]})
		sum.Work = map[string]int64{"reused": m.Rows, "searched": 0}
	case c.Refresh.On():
		reused, _ := counter(res, neighbors.Stage, neighbors.MetricListsReused)
		full, _ := counter(res, neighbors.Stage, neighbors.MetricQueriesInFull)
		sum.Lines = append(sum.Lines, Line{Label: "reused", Count: reused, Where: "lists merged with a search among the changed rows only"},
			Line{Label: "searched", Count: full, Where: "queries searched in full (new, changed, or a neighbour changed)"})
		sum.Work = map[string]int64{"reused": reused, "searched": full}
	case len(p.Notes) > 0:
		sum.Lines = append(sum.Lines, Line{Label: "searched", Count: m.Rows, Where: p.Notes[0]})
		sum.Work = map[string]int64{"reused": 0, "searched": m.Rows}
	}
	if m.Rows > c.Plan.Queries {
		return sum, fmt.Errorf("row accounting mismatch: %d queries but %d lists", c.Plan.Queries, m.Rows)
	}
	return sum, nil
}
