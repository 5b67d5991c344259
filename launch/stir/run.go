package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/stirpipe/stirpipe/pipelines"
	"github.com/stirpipe/stirpipe/schemas/blob"
)

// runFlags registers the whole job: embed → neighbors → evaluate, each stage a Beam
// pipeline on the chosen runner that reads the previous stage's files.
func runFlags(fs *flag.FlagSet) func(context.Context) error {
	var e pipelines.EmbedOptions
	var n pipelines.NeighborsOptions
	var ev pipelines.EvaluateOptions
	finish := embedOptionFlags(fs, &e)
	neighborsOptionFlags(fs, &n)
	ksFlags(fs, &ev.KS)
	return func(ctx context.Context) error {
		finish()
		plan, err := runEmbed(ctx, e)
		if err != nil {
			return err
		}
		n.Output, n.Library, n.Provider, n.CUDADevice, n.Progress = e.Output, e.Library, e.Runtime.Provider, e.Runtime.CUDADevice, e.Progress
		if err := runNeighbors(ctx, n); err != nil {
			return fmt.Errorf("neighbors: %w", err)
		}
		ev.Lists = blob.Join(e.Output, pipelines.NeighborsDir)
		ev.Catalog = plan.Options.Catalog
		ev.Output = blob.Join(e.Output, pipelines.MetricsFile)
		if err := runEvaluate(ctx, ev); err != nil {
			return fmt.Errorf("evaluate: %w", err)
		}
		return nil
	}
}
