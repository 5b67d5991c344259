package pipelines

import (
	"context"
	"fmt"

	"github.com/stirpipe/stirpipe/schemas/blob"
	"github.com/stirpipe/stirpipe/transforms/neighbors"
	"github.com/stirpipe/stirpipe/transforms/rerank"
)

// Job is the whole job on a catalog: embed → neighbors → rerank → evaluate, each stage a
// pipeline on the same runner that reads the previous stage's files under Embed.Output.
type Job struct {
	// Embed configures the first stage; its shared options are every stage's.
	Embed EmbedOptions
	// Neighbors, Rerank and Evaluate hold the later stages' own options; their shared
	// options, inputs and outputs are set from Embed. Rerank.Model "" skips reranking.
	Neighbors NeighborsOptions
	Rerank    RerankOptions
	Evaluate  EvaluateOptions
}

// Run checks the whole job before any work (every stage's flags, the metrics' cutoffs
// against k, the pairwise model against the embedder), withdraws the metrics, then runs
// the stages in turn, each withdrawing its own outputs first: started is told of each
// stage as it starts, and done receives its summary.
func (j Job) Run(ctx context.Context, run Runner, started func(Stage), done func(*Summary)) error {
	e, n, r, ev := j.Embed, j.Neighbors, j.Rerank, j.Evaluate
	n.Shared = e.Shared
	ev.Lists, ev.Output = blob.Join(e.Output, NeighborsDir), blob.Join(e.Output, MetricsFile)
	first, err := PrepareEmbed(ctx, e)
	if err != nil {
		return err
	}
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
		r.Shared, r.Catalog, r.Root = e.Shared, first.Options.Catalog, first.Options.Root
		if err := r.checkAhead(ctx, first.Manifest, n.K); err != nil {
			return fmt.Errorf("rerank: %w", err)
		}
		ev.Compare = blob.Join(e.Output, RerankedDir)
	}
	ev.Catalog = first.Options.Catalog
	// Each stage withdraws its own outputs as it starts; the metrics go now, so that a job
	// that fails leaves no result that looks like its own.
	if err := Withdraw(ctx, MarkersOf(e.Output).Metrics); err != nil {
		return err
	}
	if first.Previous != "" { // the later stages refresh from the same run
		n.Previous, r.Previous = e.Previous, e.Previous
	}
	// Each later stage is prepared once the one before it has written its files.
	type step struct {
		name    string
		prepare func() (Stage, error)
	}
	steps := []step{
		{"", func() (Stage, error) { return first, nil }}, // its errors name themselves
		{neighbors.Stage, func() (Stage, error) { return PrepareNeighbors(ctx, n) }},
		{rerank.Stage, func() (Stage, error) { return PrepareRerank(ctx, r) }},
		{EvaluateStage, func() (Stage, error) { return PrepareEvaluate(ctx, ev) }},
	}
	if r.Model == "" {
		steps = append(steps[:2], steps[3])
	}
	work := map[string]map[string]int64{}
	for _, step := range steps {
		st, err := step.prepare()
		if err == nil {
			var sum *Summary
			if ev, ok := st.(*EvaluatePlan); ok && len(work) > 0 {
				ev.Options.Work = work
			}
			sum, err = RunStage(ctx, st, run, started)
			if sum != nil {
				if len(sum.Work) > 0 {
					work[sum.Stage] = sum.Work
				}
				done(sum)
			}
		}
		if err != nil && step.name != "" {
			return fmt.Errorf("%s: %w", step.name, err)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
