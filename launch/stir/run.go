package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/stirpipe/stirpipe/pipelines"
	"github.com/stirpipe/stirpipe/schemas/blob"
)

// runFlags registers the whole job: embed → neighbors → rerank → evaluate, each stage a
// Beam pipeline on the chosen runner that reads the previous stage's files.
func runFlags(fs *flag.FlagSet) func(context.Context) error {
	var e pipelines.EmbedOptions
	var n pipelines.NeighborsOptions
	var r pipelines.RerankOptions
	var ev pipelines.EvaluateOptions
	finish := embedOptionFlags(fs, &e)
	latest := fs.String("latest", "auto", "pointer file moved to this run once every stage has succeeded (it holds the run's URI); "+
		"auto: LATEST beside the run folder when --output has a {date} or {datetime} placeholder; none: no pointer")
	neighborsOptionFlags(fs, &n)
	fs.StringVar(&r.Model, "pair_model", defaultPairModel, "STIR pairwise model, local or gs://; empty: no reranking")
	rerankOptionFlags(fs, &r)
	ksFlags(fs, &ev.KS)
	return func(ctx context.Context) error {
		templated, err := finish()
		if err != nil {
			return err
		}
		paths := embedPaths(&e)
		paths["--pair_model"] = &r.Model
		w, err := placeWorkers(paths, e.Runtime.Provider)
		if err != nil {
			return err
		}
		e.Workers, n.Workers, r.Workers = w, w, w
		// Before the first stage: the later stages' flags and the pairwise model (a bad one
		// would otherwise surface after embedding), then every output this job rewrites is
		// withdrawn.
		n.Output, n.Library, n.Provider, n.CUDADevice, n.Progress = e.Output, e.Library, e.Runtime.Provider, e.Runtime.CUDADevice, e.Progress
		ev.Lists, ev.Output = blob.Join(e.Output, pipelines.NeighborsDir), blob.Join(e.Output, pipelines.MetricsFile)
		plan, err := runEmbed(ctx, e, func(plan *pipelines.EmbedPlan) error {
			if err := n.Check(); err != nil {
				return fmt.Errorf("neighbors: %w", err)
			}
			if err := ev.Check(); err != nil {
				return fmt.Errorf("evaluate: %w", err)
			}
			if n.K < ev.KS.MaxK() {
				return fmt.Errorf("--k = %d, but the metrics ask for k up to %d: raise --k or lower the cutoffs", n.K, ev.KS.MaxK())
			}
			if r.Model != "" {
				r.Output, r.Catalog, r.Root, r.Runtime, r.Library, r.Limits, r.Progress = e.Output, plan.Options.Catalog, plan.Options.Root, e.Runtime, e.Library, e.Limits, e.Progress
				if err := pipelines.CheckRerank(ctx, r, plan.Manifest, n.K); err != nil {
					return fmt.Errorf("rerank: %w", err)
				}
			}
			return pipelines.Withdraw(ctx, pipelines.MarkersOf(e.Output).All()...)
		})
		if err != nil {
			return err
		}
		if err := runNeighbors(ctx, n); err != nil {
			return fmt.Errorf("neighbors: %w", err)
		}
		if r.Model != "" {
			if err := runRerank(ctx, r); err != nil {
				return fmt.Errorf("rerank: %w", err)
			}
			ev.Compare = blob.Join(e.Output, pipelines.RerankedDir)
		}
		ev.Catalog = plan.Options.Catalog
		if err := runEvaluate(ctx, ev); err != nil {
			return fmt.Errorf("evaluate: %w", err)
		}
		if pointer := latestTarget(*latest, e.Output, templated); pointer != "" {
			return pointLatest(ctx, pointer, e.Output)
		}
		return nil
	}
}
