package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"

	"github.com/stirpipe/stirpipe/models/imageio"
	"github.com/stirpipe/stirpipe/pipelines"
	"github.com/stirpipe/stirpipe/schemas/blob"
	"github.com/stirpipe/stirpipe/schemas/neighbors"
	"github.com/stirpipe/stirpipe/schemas/rejects"
	"github.com/stirpipe/stirpipe/transforms/rerank"
)

// defaultPairModel is the small STIR model shipped with the repository.
const defaultPairModel = "models/zoo/stir-tiny/pairwise.json"

// rerankOptionFlags registers the rerank stage's own flags (shared by run).
func rerankOptionFlags(fs *flag.FlagSet, o *pipelines.RerankOptions) {
	fs.IntVar(&o.TopN, "top_n", 5, "candidates per query rescored by the STIR model (≥ 2, ≤ k)")
	fs.IntVar(&o.BatchPairs, "pair_batch", 10, "pairs per forward pass of the STIR model (whole queries are batched together)")
	fs.IntVar(&o.CacheImages, "image_cache", 512, "preprocessed images kept per bundle, so an image is decoded once, not once per pair")
}

func rerankFlags(fs *flag.FlagSet) func(context.Context) error {
	var o pipelines.RerankOptions
	var maxMP float64
	fs.StringVar(&o.Output, "output", "", "run directory (required): reads OUTPUT/neighbors, writes OUTPUT/reranked")
	fs.StringVar(&o.Lists, "lists", "", "neighbours directory to rerank; empty: OUTPUT/neighbors")
	fs.StringVar(&o.Catalog, "catalog", "", "catalog of the lists; empty: the one named in their provenance")
	fs.StringVar(&o.Root, "root", "", "dataset root of the catalog's paths; empty: the catalog's directory")
	fs.StringVar(&o.Model, "pair_model", defaultPairModel, "STIR pairwise model: ONNX file or its manifest, local or gs://")
	fs.Float64Var(&maxMP, "max_megapixels", 40, "refuse images over this many megapixels before decoding them")
	fs.BoolVar(&o.Progress, "progress", true, "print progress lines while running")
	rerankOptionFlags(fs, &o)
	runtimeFlags(fs, &o.Runtime, &o.Library)
	return func(ctx context.Context) error {
		o.Limits = imageio.Limits{MaxPixels: int64(maxMP * 1e6)}
		w, err := placeWorkers(map[string]*string{"--output": &o.Output, "--lists": &o.Lists, "--catalog": &o.Catalog,
			"--root": &o.Root, "--pair_model": &o.Model}, o.Runtime.Provider)
		if err != nil {
			return err
		}
		o.Workers = w
		return runRerank(ctx, o)
	}
}

func runRerank(ctx context.Context, o pipelines.RerankOptions) error {
	start := time.Now()
	plan, err := pipelines.PrepareRerank(ctx, o)
	if err != nil {
		return err
	}
	if err := pipelines.Withdraw(ctx, pipelines.MarkersOf(o.Output).Reranked); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "rerank: %d queries, top_n=%d, pairwise model %s, running…\n", plan.Config.Total, plan.Config.TopN, plan.Provenance.PairModelName)
	p, s := beam.NewPipelineWithRoot()
	pipelines.Rerank(s, plan)
	res, err := execute(ctx, p)
	if err != nil {
		return err
	}
	out := blob.Join(o.Output, pipelines.RerankedDir)
	m, err := neighbors.ReadManifest(ctx, out)
	if err != nil {
		return err
	}
	rejFile := pipelines.RejectsFile(o.Output, rerank.Stage)
	rejs, err := rejects.ReadAll(ctx, rejFile)
	if err != nil {
		return err
	}
	fmt.Printf("rerank: done in %s\n", time.Since(start).Round(time.Millisecond))
	fmt.Printf("  lists       %7d  %s (top_n=%d, model %s)\n", m.Rows, out, m.TopN, m.PairModelName)
	fmt.Printf("  kept as-is  %7d  %s\n", len(rejs), rejFile)
	for _, c := range res.Metrics().AllMetrics().Counters() {
		if c.Key.Namespace == "rerank" && c.Key.Name == "pairs_scored" {
			fmt.Printf("  pairs       %7d  scored in %.1f s (%.1f pairs/s)\n", c.Result(), time.Since(start).Seconds(), float64(c.Result())/time.Since(start).Seconds())
		}
	}
	for _, d := range res.Metrics().AllMetrics().Distributions() {
		if r := d.Result(); d.Key.Namespace == "rerank" && d.Key.Name == "batch_latency_ms" && r.Count > 0 {
			fmt.Printf("  batches     %7d  mean %.0f ms (min %d, max %d)\n", r.Count, float64(r.Sum)/float64(r.Count), r.Min, r.Max)
		}
	}
	if m.Rows != plan.Config.Total {
		return fmt.Errorf("row accounting mismatch: %d lists in, %d out", plan.Config.Total, m.Rows)
	}
	return nil
}
