package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/stirpipe/stirpipe/models/metrics"
	"github.com/stirpipe/stirpipe/pipelines"
)

// ksFlags registers the metric cutoff flags.
func ksFlags(fs *flag.FlagSet, ks *metrics.Options) {
	list := func(name string, dst *[]int, def string, what string) {
		*dst = mustInts(def)
		fs.Func(name, fmt.Sprintf("comma-separated cutoffs of %s (default %s)", what, def), func(v string) error {
			xs, err := parseInts(v)
			*dst = xs
			return err
		})
	}
	list("cmc", &ks.CMC, "1,5,10", "cmc@k")
	list("precision", &ks.Precision, "5,10", "precision@k")
	list("map", &ks.MAP, "5,10", "map@k")
}

func parseInts(v string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(v, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not an integer", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func mustInts(v string) []int {
	xs, err := parseInts(v)
	if err != nil {
		panic(err)
	}
	return xs
}

func evaluateFlags(fs *flag.FlagSet) func(context.Context) error {
	var o pipelines.EvaluateOptions
	fs.StringVar(&o.Lists, "lists", "", "neighbour lists to score: a neighbours (or reranked) directory (required)")
	fs.StringVar(&o.Compare, "compare", "", "second list directory (the reranked lists) scored against --lists: before, after and delta")
	fs.StringVar(&o.Catalog, "catalog", "", "the catalog the lists come from; when set, it must be the same snapshot")
	fs.StringVar(&o.Output, "output", "", "metrics.json to write (required)")
	ksFlags(fs, &o.KS)
	return func(ctx context.Context) error {
		if _, err := placeWorkers(map[string]*string{"--lists": &o.Lists, "--compare": &o.Compare, "--catalog": &o.Catalog,
			"--output": &o.Output}, ""); err != nil {
			return err
		}
		return runEvaluate(ctx, o)
	}
}

func runEvaluate(ctx context.Context, o pipelines.EvaluateOptions) error {
	plan, err := pipelines.PrepareEvaluate(ctx, o)
	if err != nil {
		return err
	}
	return runStage(ctx, plan)
}

// printMetrics prints a metrics document: the full table of a single evaluation, or for a
// comparison the OVERALL before/after/delta of every metric and, per category, the first
// cutoff of each metric before → after.
func printMetrics(doc metrics.Document, where string) error {
	w := os.Stdout
	if doc.Report != nil {
		fmt.Fprintln(w, "evaluate:")
		if err := metrics.WriteTable(w, *doc.Report); err != nil {
			return err
		}
	}
	if doc.Before != nil && doc.After != nil {
		fmt.Fprintf(w, "evaluate: embeddings (before) vs STIR reranking (after), %d queries\n", doc.After.Overall.Counts.Queries)
		fmt.Fprintf(w, "  %-14s %8s %8s %8s\n", "OVERALL", "before", "after", "delta")
		for _, m := range metrics.Metrics {
			for _, k := range doc.KS.Ks(m) {
				key := metrics.Key(m, k)
				fmt.Fprintf(w, "  %-14s %8.4f %8.4f %+8.4f\n", key, doc.Before.Overall.Metrics[key], doc.After.Overall.Metrics[key], doc.Delta.Overall.Metrics[key])
			}
		}
		var keys []string
		for _, m := range metrics.Metrics {
			if ks := doc.KS.Ks(m); len(ks) > 0 {
				keys = append(keys, metrics.Key(m, ks[0]))
			}
		}
		fmt.Fprintf(w, "  %-14s %7s", "category", "queries")
		for _, k := range keys {
			fmt.Fprintf(w, " %17s", k+" before→after")
		}
		fmt.Fprintln(w)
		for _, name := range doc.After.CategoryNames() {
			b, a := doc.Before.Categories[name], doc.After.Categories[name]
			fmt.Fprintf(w, "  %-14s %7d", name, a.Counts.Queries)
			for _, k := range keys {
				fmt.Fprintf(w, "     %.3f → %.3f", b.Metrics[k], a.Metrics[k])
			}
			fmt.Fprintln(w)
		}
	}
	fmt.Fprintf(w, "evaluate: metrics written to %s\n", where)
	return nil
}
