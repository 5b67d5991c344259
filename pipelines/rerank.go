package pipelines

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"

	"github.com/stirpipe/stirpipe/models/manifest"
	"github.com/stirpipe/stirpipe/models/ort"
	"github.com/stirpipe/stirpipe/models/pairwise"
	"github.com/stirpipe/stirpipe/schemas/blob"
	"github.com/stirpipe/stirpipe/schemas/catalog"
	"github.com/stirpipe/stirpipe/schemas/changes"
	"github.com/stirpipe/stirpipe/schemas/embeddings"
	"github.com/stirpipe/stirpipe/schemas/lists"
	"github.com/stirpipe/stirpipe/transforms/catalogio"
	"github.com/stirpipe/stirpipe/transforms/evaluate"
	"github.com/stirpipe/stirpipe/transforms/rerank"
	"github.com/stirpipe/stirpipe/transforms/sink"
)

// RerankOptions configure the rerank pipeline.
type RerankOptions struct {
	Shared
	// Lists is the neighbours output to rerank ("" = Output/neighbors).
	Lists string
	// Catalog is the catalog the lists come from ("" = the one their provenance names);
	// Root is its dataset root ("" = the catalog's directory).
	Catalog, Root string
	// Model is the pairwise model's manifest or ONNX file.
	Model string
	// TopN is the number of head candidates rescored per query.
	TopN int
	// BatchPairs is the number of pairs per forward pass; CacheImages bounds the images
	// kept per bundle.
	BatchPairs, CacheImages int
	// Previous is the previous run a refresh starts from ("" = none): its pair scores are
	// reused where neither image changed (ChangesFile).
	Previous string
}

// RerankPlan is a checked rerank job.
type RerankPlan struct {
	Options RerankOptions
	// Catalog is read on the workers, piece by piece, and joined to the lists.
	Catalog    *catalog.Scan
	Config     rerank.Config
	Files      []string
	Provenance lists.Provenance
	// Notes say what the stage reuses, or why it cannot.
	Notes []string
	// finished says Output already holds this stage's complete output for the same inputs.
	finished bool
}

// PrepareRerank checks top_n against the lists, the catalog against the lists'
// provenance, and the pairwise model against its graph and against the embedder's
// preprocessing, before any image is read.
func PrepareRerank(ctx context.Context, o RerankOptions) (*RerankPlan, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	if o.Lists == "" {
		o.Lists = blob.Join(o.Output, NeighborsDir)
	}
	m, err := lists.ReadManifest(ctx, o.Lists)
	if err != nil {
		return nil, err
	}
	if m.Provenance.Stage != lists.StageNeighbors {
		return nil, fmt.Errorf("%s holds %s lists: rerank the neighbours output", o.Lists, m.Provenance.Stage)
	}
	if err := o.checkTopN(m.Provenance.K); err != nil {
		return nil, err
	}
	if o.Catalog == "" {
		o.Catalog = m.Provenance.CatalogURI
	}
	if o.Root == "" {
		o.Root = blob.Dir(o.Catalog)
	}
	cat, err := scanCatalog(ctx, o.Catalog, catalog.Options{Root: o.Root}, 0)
	if err != nil {
		return nil, err
	}
	if cat.Snapshot != m.Provenance.CatalogSnapshot {
		return nil, fmt.Errorf("the lists in %s were computed from catalog snapshot %s, but %s is %s: rerank with that catalog, or rerun the pipeline", o.Lists, m.Provenance.CatalogSnapshot, o.Catalog, cat.Snapshot)
	}
	em, err := embedderOf(ctx, m.Provenance.EmbeddingsURI)
	if err != nil {
		return nil, err
	}
	pm, sha, err := o.pairModel(ctx, em)
	if err != nil {
		return nil, err
	}
	in, err := lists.ManifestSHA256(ctx, o.Lists)
	if err != nil {
		return nil, err
	}
	prov := m.Provenance
	prov.Stage, prov.PairModelName, prov.PairModelSHA256, prov.TopN = lists.StageReranked, pm.Name, sha, o.TopN
	prov.InputURI, prov.InputSnapshot, prov.Producer = o.Lists, in, "stirpipe rerank"
	files := make([]string, len(m.Shards))
	for i, sh := range m.Shards {
		files[i] = sh.File
	}
	out := blob.Join(o.Output, RerankedDir)
	p := &RerankPlan{
		Options: o, Files: files, Provenance: prov, Catalog: cat,
		Config: rerank.Config{Config: o.imageWork(o.Model, sha, o.Root, m.Rows), Catalog: o.Catalog,
			TopN: o.TopN, BatchPairs: o.BatchPairs, CacheImages: o.CacheImages,
			Pieces: blob.Join(out, lists.PiecesDir), Provenance: prov},
	}
	if done, err := lists.ReadManifest(ctx, out); err == nil && done.Provenance == prov {
		p.finished = true
		p.Notes = append(p.Notes, "complete from an earlier run on the same lists")
		return p, nil
	}
	if p.Config.Earlier.Pieces, err = lists.ListPieces(ctx, out); err != nil {
		return nil, err
	}
	if n := len(p.Config.Earlier.Pieces); n > 0 {
		p.Notes = append(p.Notes, fmt.Sprintf("resume: %d file(s) of finished lists in %s", n, out))
	}
	if o.Previous != "" {
		if err := p.refreshFrom(ctx); err != nil {
			p.Notes = append(p.Notes, fmt.Sprintf("full scoring: the previous pair scores cannot be reused: %v", err))
		} else {
			p.Notes = append(p.Notes, "refresh from "+o.Previous)
		}
	}
	return p, nil
}

// refreshFrom checks that the previous run's reranked lists can lend their pair scores:
// the same pairwise model, and made, through its lists, from the embeddings that this
// run's changes file was computed against.
func (p *RerankPlan) refreshFrom(ctx context.Context) error {
	o := p.Options
	dir := blob.Join(o.Previous, RerankedDir)
	m, err := lists.ReadManifest(ctx, dir)
	if err != nil {
		return err
	}
	if m.Provenance.PairModelSHA256 != p.Provenance.PairModelSHA256 {
		return fmt.Errorf("%s: pairwise model %s, this run's is %s", dir, m.Provenance.PairModelSHA256, p.Provenance.PairModelSHA256)
	}
	prevLists, prevEmb := blob.Join(o.Previous, NeighborsDir), blob.Join(o.Previous, EmbeddingsDir)
	lm, err := lists.ReadManifest(ctx, prevLists)
	if err != nil {
		return err
	}
	if snap, err := lists.ManifestSHA256(ctx, prevLists); err != nil || snap != m.Provenance.InputSnapshot {
		return fmt.Errorf("%s was not made from the lists now in %s", dir, prevLists)
	}
	if snap, err := lists.ManifestSHA256(ctx, prevEmb); err != nil || snap != lm.Provenance.EmbeddingsSnapshot {
		return fmt.Errorf("%s were not made from the embeddings now in %s", prevLists, prevEmb)
	}
	uri := blob.Join(o.Output, ChangesFile)
	ch, err := changes.Read(ctx, uri)
	if err != nil {
		return fmt.Errorf("no record of what changed: %w", err)
	}
	if ch.Previous != prevEmb {
		return fmt.Errorf("%s compares with %s, not %s", uri, ch.Previous, prevEmb)
	}
	p.Config.Earlier.Changes = uri
	for _, sh := range m.Shards {
		p.Config.Earlier.Previous = append(p.Config.Earlier.Previous, blob.Join(dir, sh.File))
	}
	return nil
}

// Finished reports that Output already holds this stage's complete output, made from the
// same lists with the same model and top_n: the stage need not run.
func (p *RerankPlan) Finished() bool { return p.finished }

// Tidy removes the pieces that a run killed after writing the lists' manifest left.
func (p *RerankPlan) Tidy(ctx context.Context) error {
	return lists.RemovePieces(ctx, blob.Join(p.Options.Output, RerankedDir))
}

// checkAhead checks the rerank stage of a whole job before its first stage runs, so that a
// bad flag or pairwise model stops the job before hours of embedding: the flags, top_n
// against the lists' k, and the pairwise model against its graph and against the embedder
// that will make the lists. PrepareRerank checks the same again on the real outputs.
func (o RerankOptions) checkAhead(ctx context.Context, embedder *manifest.Manifest, k int) error {
	if err := o.check(); err != nil {
		return err
	}
	if err := o.checkTopN(k); err != nil {
		return err
	}
	_, _, err := o.pairModel(ctx, embedder)
	return err
}

// check reports every problem of the flags at once.
func (o RerankOptions) check() error {
	var errs []error
	if o.Output == "" {
		errs = append(errs, errors.New("--output is required: the run directory"))
	}
	if o.Model == "" {
		errs = append(errs, errors.New("--pair_model is required: the STIR pairwise model"))
	}
	if o.TopN < 2 {
		errs = append(errs, fmt.Errorf("--top_n must be ≥ 2 (reranking fewer than two candidates changes no order), got %d", o.TopN))
	}
	if o.BatchPairs < 1 || o.CacheImages < 1 {
		errs = append(errs, fmt.Errorf("--pair_batch and --image_cache must be ≥ 1, got %d and %d", o.BatchPairs, o.CacheImages))
	}
	return errors.Join(errs...)
}

func (o RerankOptions) checkTopN(k int) error {
	if o.TopN > k {
		return fmt.Errorf("--top_n = %d is larger than the lists (k = %d): choose top_n ≤ %d", o.TopN, k, k)
	}
	return nil
}

// pairModel opens the pairwise model and checks it against the embedder whose lists it
// reranks (same preprocessing) and against its graph in ONNX Runtime; it returns the
// manifest and the ONNX file's hash.
func (o RerankOptions) pairModel(ctx context.Context, embedder *manifest.Manifest) (*manifest.Manifest, string, error) {
	pm, err := manifest.Open(ctx, o.Model)
	if err != nil {
		return nil, "", err
	}
	if err := pairwise.Compatible(pm, embedder); err != nil {
		return nil, "", err
	}
	if err := ort.Init(o.Library); err != nil {
		return nil, "", err
	}
	sha, err := pairwise.Verify(pm, o.Workers.preflight(o.Runtime))
	return pm, sha, err
}

// embedderOf describes the embedder that produced an embeddings output (its name and
// preprocessing, from the provenance), for checking a pairwise model against it.
func embedderOf(ctx context.Context, embeddingsDir string) (*manifest.Manifest, error) {
	em, err := embeddings.ReadManifest(ctx, embeddingsDir)
	if err != nil {
		return nil, fmt.Errorf("the embeddings the lists were computed from: %w", err)
	}
	var pre manifest.Preprocess
	if err := json.Unmarshal([]byte(em.Provenance.Preprocess), &pre); err != nil {
		return nil, fmt.Errorf("embeddings %s: preprocessing in provenance: %w", embeddingsDir, err)
	}
	return &manifest.Manifest{Name: em.Provenance.ModelName, Preprocess: pre}, nil
}

// Rerank builds the rerank pipeline: neighbours → reranked lists (and rejects).
func Rerank(s beam.Scope, p *RerankPlan) {
	in := evaluate.ReadLists(s, p.Options.Lists, p.Files)
	rows := catalogio.Read(s, p.Catalog)
	out, rejs := rerank.Rerank(s, in, rows, p.Config)
	sink.Lists(s, out, blob.Join(p.Options.Output, RerankedDir), max(1, len(p.Files)), lists.ExtParquet, p.Provenance)
	sink.Rejects(s, rejs, RejectsFile(p.Options.Output, rerank.Stage))
}

// Name is the stage's name.
func (p *RerankPlan) Name() string { return rerank.Stage }

// Outputs are the reranked lists' completion marker.
func (p *RerankPlan) Outputs() []string { return []string{MarkersOf(p.Options.Output).Reranked} }

// Describe says what is about to run.
func (p *RerankPlan) Describe() string {
	d := fmt.Sprintf("rerank: %d queries, top_n=%d, pairwise model %s", p.Config.Total, p.Config.TopN, p.Provenance.PairModelName)
	for _, n := range p.Notes {
		d += "; " + n
	}
	return d + ", running…"
}

// Build adds the rerank pipeline to s.
func (p *RerankPlan) Build(s beam.Scope) { Rerank(s, p) }

// Summarize counts the reranked lists, the lists kept as they were and the pairs scored,
// and checks that every list came out once.
func (p *RerankPlan) Summarize(ctx context.Context, res beam.PipelineResult) (*Summary, error) {
	out := blob.Join(p.Options.Output, RerankedDir)
	m, err := lists.ReadManifest(ctx, out)
	if err != nil {
		return nil, err
	}
	file := RejectsFile(p.Options.Output, rerank.Stage)
	n, reasons, err := readRejects(ctx, file)
	if err != nil {
		return nil, err
	}
	sum := &Summary{Stage: p.Name(), RejectReasons: reasons, Batches: latency(res, rerank.Stage, rerank.MetricBatchLatency), Lines: []Line{
		{Label: "lists", Count: m.Rows, Where: fmt.Sprintf("%s (top_n=%d, model %s)", out, m.Provenance.TopN, m.Provenance.PairModelName)},
		{Label: "kept as-is", Count: n, Where: file},
	}}
	if pairs, ok := counter(res, rerank.Stage, rerank.MetricPairsScored); ok || res != nil {
		sum.Lines = append(sum.Lines, Line{Label: "pairs", Count: pairs, Where: "scored", Rate: true})
	}
	switch {
	case p.finished:
		sum.Lines = append(sum.Lines, Line{Label: "reused", Count: m.Rows, Where: p.Notes[0]})
		sum.Work = map[string]int64{"lists_reused": m.Rows, "pairs_scored": 0}
	case len(p.Config.Earlier.Previous)+len(p.Config.Earlier.Pieces) > 0:
		reused, _ := counter(res, rerank.Stage, rerank.MetricPairsReused)
		queries, _ := counter(res, rerank.Stage, rerank.MetricQueriesReused)
		scored, _ := counter(res, rerank.Stage, rerank.MetricPairsScored)
		sum.Lines = append(sum.Lines, Line{Label: "pairs reused", Count: reused, Where: strings.Join(p.Notes, "; ")},
			Line{Label: "lists reused", Count: queries, Where: "every head pair scored before"})
		sum.Work = map[string]int64{"pairs_reused": reused, "pairs_scored": scored, "lists_reused": queries}
	case len(p.Notes) > 0:
		scored, _ := counter(res, rerank.Stage, rerank.MetricPairsScored)
		sum.Lines = append(sum.Lines, Line{Label: "scored", Count: m.Rows, Where: p.Notes[0]})
		sum.Work = map[string]int64{"pairs_reused": 0, "pairs_scored": scored, "lists_reused": 0}
	}
	if m.Rows != p.Config.Total {
		return sum, fmt.Errorf("row accounting mismatch: %d lists in, %d out", p.Config.Total, m.Rows)
	}
	return sum, nil
}
