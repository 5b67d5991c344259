package main

import (
	"context"
	"flag"

	"github.com/stirpipe/stirpipe/models/imageio"
	"github.com/stirpipe/stirpipe/pipelines"
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
	progressFlag(fs, &o.Shared)
	rerankOptionFlags(fs, &o)
	runtimeFlags(fs, &o.Shared)
	return func(ctx context.Context) error {
		o.Limits = imageio.Limits{MaxPixels: int64(maxMP * 1e6)}
		w, err := placeWorkers(map[string]*string{"--output": &o.Output, "--lists": &o.Lists, "--catalog": &o.Catalog,
			"--root": &o.Root, "--pair_model": &o.Model}, o.Runtime.Provider)
		if err != nil {
			return err
		}
		o.Workers = w
		plan, err := pipelines.PrepareRerank(ctx, o)
		if err != nil {
			return err
		}
		return runStage(ctx, plan)
	}
}
