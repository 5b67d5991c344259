package main

import (
	"context"
	"errors"
	"flag"

	"github.com/stirpipe/stirpipe/pipelines"
)

// runFlags registers the whole job: embed → neighbors → rerank → evaluate, each stage a
// Beam pipeline on the chosen runner that reads the previous stage's files.
func runFlags(fs *flag.FlagSet) func(context.Context) error {
	var j pipelines.Job
	finish := embedOptionFlags(fs, &j.Embed)
	latest := fs.String("latest", "auto", "pointer file moved to this run once every stage has succeeded (it holds the run's URI); "+
		"auto: LATEST beside the run folder when --output has a {date} or {datetime} placeholder; none: no pointer")
	neighborsOptionFlags(fs, &j.Neighbors)
	fs.StringVar(&j.Rerank.Model, "pair_model", defaultPairModel, "STIR pairwise model, local or gs://; empty: no reranking")
	rerankOptionFlags(fs, &j.Rerank)
	ksFlags(fs, &j.Evaluate.KS)
	return func(ctx context.Context) error {
		templated, err := finish()
		if err != nil {
			return err
		}
		paths := embedPaths(&j.Embed)
		paths["--pair_model"] = &j.Rerank.Model
		if j.Embed.Workers, err = placeWorkers(paths, j.Embed.Runtime.Provider); err != nil {
			return err
		}
		var printErr error
		err = j.Run(ctx, execute, announce, func(sum *pipelines.Summary) {
			printErr = errors.Join(printErr, printSummary(sum))
		})
		if err = errors.Join(err, printErr); err != nil {
			return err
		}
		if pointer := latestTarget(*latest, j.Embed.Output, templated); pointer != "" {
			return pointLatest(ctx, pointer, j.Embed.Output)
		}
		return nil
	}
}
