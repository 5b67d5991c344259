package main

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
)

// The committed tiny STIR models, relative to this package.
const (
	tinyPairModel  = "../../models/zoo/stir-tiny/pairwise.json"
	tinyEmbedModel = "../../models/zoo/stir-tiny/embedder.json"
)

// TestBenchRerankEndToEnd runs the whole rerank benchmark on the tiny models: build stir,
// make the lists with stir embed and stir neighbors, run stir rerank as a child process
// and the loop, compare their scores, summarise, and write the JSON file; a second run
// reuses the catalog and the lists.
func TestBenchRerankEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the stir program")
	}
	work := t.TempDir()
	var log bytes.Buffer
	// 16 images: 4 products, 2 of them validation: 8 queries × top_n 3 = 24 pairs,
	// packed 1 query (3 pairs) per pass of at most 4.
	c := rerankConfig{Model: tinyPairModel, EmbedModel: tinyEmbedModel, Images: 16, Size: 64, Seed: 1, K: 4, TopN: 3,
		BatchPairs: 4, CacheImages: 64, MaxMP: 40,
		modelRun: modelRun{Work: work, Reps: 2, Threads: 1, InterOp: 1, GraphOpt: "all", Pipeline: true, JSON: filepath.Join(work, "r.json")}}
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	res, err := benchRerank(context.Background(), c, &log)
	if err != nil {
		t.Fatalf("%v\nlog:\n%s", err, log.String())
	}
	if l := res.Lists; l.Queries != 8 || l.Pairs != 24 || l.Batches != 8 || l.Images == 0 || l.Images > 8 || l.Reused {
		t.Errorf("lists %+v: want 8 fresh queries, 24 pairs in 8 passes over at most the 8 validation images", l)
	}
	if len(res.Pipeline) != 2 || len(res.Loops) != 2 {
		t.Fatalf("%d pipeline and %d loop runs, want 2 and 2", len(res.Pipeline), len(res.Loops))
	}
	for _, p := range res.Pipeline {
		if p.Pairs != 24 || p.Queries != 8 || p.WallS <= 0 || p.MaxRSSKiB <= 0 || p.UserS <= 0 || p.PrepareS <= 0 || p.PrepareS >= p.WallS {
			t.Errorf("pipeline run %+v: want 24 pairs of 8 queries, a positive wall, RSS and CPU, and the preflight inside the wall", p)
		}
		if p.Batches != 8 {
			t.Errorf("pipeline ran %d forward passes, the loop 8: not the same batches", p.Batches)
		}
	}
	for _, l := range res.Loops {
		if l.Pairs != 24 || l.Batches != 8 || l.WallS <= 0 || l.Rate <= 0 {
			t.Errorf("loop run %+v: want 24 pairs in 8 passes at a positive rate", l)
		}
	}
	if res.ScoresMaxAbsDiff > scoreTolerance {
		t.Errorf("pipeline and loop scores differ by %g", res.ScoresMaxAbsDiff)
	}
	if s := res.Summary; s.Ratio <= 0 || s.PipelineRSSMiB.Min <= 0 || s.LoopRate.N != 2 || s.RatioPerRep.N != 2 || s.Quiet == nil {
		t.Errorf("summary %+v: want a ratio, RSS, two loop rates, two per-rep ratios and a quiet block", s)
	}
	var out bytes.Buffer
	printRerankReport(&out, res)
	checkReport(t, out.String(), "pipeline, end to end (stir rerank, prism)", "plain loop, pre-decoded pairs", "ratio pipeline / plain loop",
		"peak RSS", "max |Δ|", "SOP's 302510 pairs", "[2] pipeline")
	back := jsonRoundTrip(t, c.JSON, res)
	if back.Summary.Ratio != res.Summary.Ratio || len(back.Pipeline) != 2 || back.Config.Model != tinyPairModel {
		t.Errorf("results JSON round trip lost data: %+v", back.Summary)
	}

	// Again, loop only, with the binary built above: the catalog and lists are reused.
	c.Pipeline, c.Reps, c.Stir = false, 1, filepath.Join(work, "stir")
	again, err := benchRerank(context.Background(), c, &log)
	if err != nil {
		t.Fatalf("%v\nlog:\n%s", err, log.String())
	}
	if !again.Catalog.Reused || !again.Lists.Reused || len(again.Pipeline) != 0 || len(again.Loops) != 1 || again.Summary.Quiet != nil {
		t.Errorf("second run: catalog reused %v, lists reused %v, %d pipeline and %d loop runs; want reuse, 0 and 1",
			again.Catalog.Reused, again.Lists.Reused, len(again.Pipeline), len(again.Loops))
	}
}

// TestRerankQuiet checks that a repetition drops out of the quiet summary when either of
// its runs was disturbed.
func TestRerankQuiet(t *testing.T) {
	r := &rerankResult{runInfo: runInfo{CPUs: 2}}
	for rep, o := range [][2]float64{{0, 0}, {3, 0}, {0, 3}, {0.5, 0.5}} { // others' CPU: pipeline, loop (10 s runs)
		r.Pipeline = append(r.Pipeline, rerankPipelineRun{Rep: rep + 1, Pairs: 100, Rate: 10, childRun: childRun{WallS: 10, OthersCPUS: o[0]}})
		r.Loops = append(r.Loops, pairLoopRun{Rep: rep + 1, Pairs: 100, WallS: 8, Rate: 12.5, OthersCPUS: o[1]})
	}
	r.summarize()
	q := r.Summary.Quiet
	if q == nil || len(q.Reps) != 2 || q.Reps[0] != 1 || q.Reps[1] != 4 {
		t.Fatalf("quiet %+v, want reps [1 4]", q)
	}
	if q.Ratio != 0.8 || r.Summary.Ratio != 0.8 || r.Summary.RatioPerRep.N != 4 {
		t.Errorf("ratios: quiet %v, all %v (%d per rep); want 0.8, 0.8, 4", q.Ratio, r.Summary.Ratio, r.Summary.RatioPerRep.N)
	}
}
