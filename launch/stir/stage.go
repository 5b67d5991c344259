package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/stirpipe/stirpipe/pipelines"
)

// runStage runs one prepared stage on the chosen runner and prints its summary.
func runStage(ctx context.Context, st pipelines.Stage) error {
	sum, err := pipelines.RunStage(ctx, st, execute, announce)
	if sum != nil {
		if perr := printSummary(sum); err == nil {
			err = perr
		}
	}
	return err
}

// announce says on stderr what is about to run.
func announce(st pipelines.Stage) {
	if d := st.Describe(); d != "" {
		fmt.Fprintln(os.Stderr, d)
	}
}

// printSummary prints what a stage did: its counts, or its metrics.
func printSummary(sum *pipelines.Summary) error {
	if sum.Metrics != nil {
		return printMetrics(*sum.Metrics, sum.MetricsFile)
	}
	w := os.Stdout
	fmt.Fprintf(w, "%s: done in %s\n", sum.Stage, sum.Took.Round(time.Millisecond))
	for _, l := range sum.Lines {
		fmt.Fprintf(w, "  %-12s %7d  %s", l.Label, l.Count, l.Where)
		if s := sum.Took.Seconds(); l.Rate && s > 0 {
			fmt.Fprintf(w, " in %.1f s (%.1f %s/s)", s, float64(l.Count)/s, l.Label)
		}
		fmt.Fprintln(w)
	}
	if len(sum.RejectReasons) > 0 {
		fmt.Fprintf(w, "    by reason: %s\n", strings.Join(sum.RejectReasons, ", "))
	}
	if b := sum.Batches; b != nil {
		fmt.Fprintf(w, "  %-12s %7d  mean %.0f ms (min %d, max %d)\n", "batches", b.Count, b.Mean(), b.Min, b.Max)
	}
	return nil
}
