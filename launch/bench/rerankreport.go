package main

import (
	"fmt"
	"io"
)

// sopPairs is the number of pairs STIR scores to rerank Stanford Online Products' test
// split: 60,502 queries × top_n 5.
const sopPairs = 302510

// rerankResult is everything one rerank benchmark invocation measured; it is the JSON file.
type rerankResult struct {
	Config rerankConfig `json:"config"`
	runInfo
	ModelName   string       `json:"pair_model_name"`
	ModelSHA256 string       `json:"pair_model_sha256"`
	Catalog     benchCatalog `json:"catalog"`
	Lists       listsInfo    `json:"lists"`
	// Decode is the loop's untimed up-front decoding, per catalog image.
	Decode decodeCost `json:"loop_predecode_cost"`
	// SessionRSSMiB is the bench process's peak RSS after opening the session and one
	// forward pass of a full batch, before decoding: the memory of the model alone.
	SessionRSSMiB float64             `json:"session_only_peak_rss_mib"`
	Pipeline      []rerankPipelineRun `json:"pipeline_runs"`
	Loops         []pairLoopRun       `json:"loop_runs"`
	// ScoresMaxAbsDiff is the largest difference between a pair's score in the pipeline's
	// output and in the loop (both runs of the first rep).
	ScoresMaxAbsDiff float64       `json:"scores_max_abs_diff"`
	Summary          rerankSummary `json:"summary"`

	pipelineScores, loopScores map[string][]float32
}

// rerankSummary holds the figures the table prints.
type rerankSummary struct {
	PipelineRate   stat `json:"pipeline_pairs_per_s"`
	PipelineWall   stat `json:"pipeline_wall_s"`
	PipelineRSSMiB stat `json:"pipeline_peak_rss_mib"`
	RusageRSSMiB   stat `json:"pipeline_rusage_maxrss_mib"`
	PipelineCPU    stat `json:"pipeline_cpu_s"`
	PipelineOthers stat `json:"pipeline_others_cpu_s"`
	PrepareS       stat `json:"pipeline_preflight_s"`
	InferenceS     stat `json:"pipeline_inference_s"`
	BatchMeanMS    stat `json:"pipeline_batch_mean_ms"`
	LoopRate       stat `json:"loop_pairs_per_s"`
	LoopWall       stat `json:"loop_wall_s"`
	LoopCPU        stat `json:"loop_cpu_s"`
	LoopOthers     stat `json:"loop_others_cpu_s"`
	// Ratio is median pipeline pairs/s over median loop pairs/s; RatioPerRep is
	// pipeline/loop within each repetition.
	Ratio       float64 `json:"ratio_of_medians"`
	RatioPerRep stat    `json:"ratio_per_rep"`
	// Quiet repeats the main figures over the repetitions no other process disturbed.
	Quiet *quietSummary `json:"undisturbed,omitempty"`
}

func (r *rerankResult) summarize() {
	var s rerankSummary
	var rate, wall, rss, rusage, cpu, others, prep, infer, batch []float64
	for _, p := range r.Pipeline {
		rate, wall, cpu, others = append(rate, p.Rate), append(wall, p.WallS), append(cpu, p.UserS+p.SysS), append(others, p.OthersCPUS)
		rss, rusage = append(rss, float64(p.MaxRSSKiB)/1024), append(rusage, float64(p.RusageMaxRSSKiB)/1024)
		prep, infer, batch = append(prep, p.PrepareS), append(infer, p.InferenceS), append(batch, p.BatchMeanMS)
	}
	s.PipelineRate, s.PipelineWall, s.PipelineCPU, s.PipelineOthers = newStat(rate), newStat(wall), newStat(cpu), newStat(others)
	s.PipelineRSSMiB, s.RusageRSSMiB, s.PrepareS, s.InferenceS = newStat(rss), newStat(rusage), newStat(prep), newStat(infer)
	s.BatchMeanMS = newStat(batch)
	var lrate, lwall, lcpu, lothers, per []float64
	for _, l := range r.Loops {
		lrate, lwall, lcpu, lothers = append(lrate, l.Rate), append(lwall, l.WallS), append(lcpu, l.CPUS), append(lothers, l.OthersCPUS)
		if p := r.pipelineRun(l.Rep); p != nil {
			per = append(per, div(p.Rate, l.Rate))
		}
	}
	s.LoopRate, s.LoopWall, s.LoopCPU, s.LoopOthers = newStat(lrate), newStat(lwall), newStat(lcpu), newStat(lothers)
	s.Ratio = div(s.PipelineRate.Median, s.LoopRate.Median)
	s.RatioPerRep = newStat(per)
	s.Quiet = r.quiet()
	r.Summary = s
}

func (r *rerankResult) pipelineRun(rep int) *rerankPipelineRun {
	for i := range r.Pipeline {
		if r.Pipeline[i].Rep == rep {
			return &r.Pipeline[i]
		}
	}
	return nil
}

// quiet summarises the repetitions whose pipeline and loop runs no other process
// disturbed; nil without pipeline runs.
func (r *rerankResult) quiet() *quietSummary {
	if len(r.Pipeline) == 0 {
		return nil
	}
	q := &quietSummary{}
	var pipe, loop []float64
	for _, l := range r.Loops {
		p := r.pipelineRun(l.Rep)
		if p == nil || disturbed(p.OthersCPUS, p.WallS, r.CPUs) || disturbed(l.OthersCPUS, l.WallS, r.CPUs) {
			continue
		}
		q.Reps = append(q.Reps, l.Rep)
		pipe, loop = append(pipe, p.Rate), append(loop, l.Rate)
	}
	q.PipelineRate, q.LoopRate = newStat(pipe), newStat(loop)
	q.Ratio = div(q.PipelineRate.Median, q.LoopRate.Median)
	return q
}

// printRerankReport writes the compact table.
func printRerankReport(w io.Writer, r *rerankResult) {
	c, s := r.Config, r.Summary
	fmt.Fprintf(w, "\nrerank benchmark: pairwise model %s (%s), ONNX Runtime %s\n", r.ModelName, c.Model, r.ORTVersion)
	fmt.Fprintf(w, "  %d queries × top_n %d = %d pairs over %d distinct ~%d px JPEGs (lists: %s, k=%d)\n",
		r.Lists.Queries, c.TopN, r.Lists.Pairs, r.Lists.Images, c.Size, r.Lists.Dir, c.K)
	fmt.Fprintf(w, "  %d pairs per forward pass (%d passes), intra-op %d, inter-op %d, graph opt %s, spin %v, %d rep(s)\n",
		c.BatchPairs, r.Lists.Batches, c.Threads, c.InterOp, c.GraphOpt, c.Spin, len(r.Loops))
	row := printRunHeader(w, r.CPUs, r.GOMAXPROCS, r.LoadStart, r.LoadEnd, r.Decode, "pairs/s")
	if len(r.Pipeline) > 0 {
		row("pipeline, end to end (stir rerank, prism)", s.PipelineRate, s.PipelineWall, s.PipelineCPU, s.PipelineOthers)
	}
	row("plain loop, pre-decoded pairs", s.LoopRate, s.LoopWall, s.LoopCPU, s.LoopOthers)
	fmt.Fprintln(w, "  (wall, CPU: medians in s; CPU is the measured process's user+sys; others: CPU the rest of the machine used meanwhile)")
	fmt.Fprintf(w, "  per rep:")
	for _, l := range r.Loops {
		if p := r.pipelineRun(l.Rep); p != nil {
			fmt.Fprintf(w, "  [%d] pipeline %.2f, loop %.2f (%.3f)", l.Rep, p.Rate, l.Rate, div(p.Rate, l.Rate))
		} else {
			fmt.Fprintf(w, "  [%d] loop %.2f", l.Rep, l.Rate)
		}
	}
	fmt.Fprintln(w)
	if len(r.Pipeline) > 0 {
		fmt.Fprintf(w, "\n  ratio pipeline / plain loop (medians)        %8.3f   (per rep %.3f … %.3f; target ≥ 0.90)\n",
			s.Ratio, s.RatioPerRep.Min, s.RatioPerRep.Max)
		if q := s.Quiet; q != nil {
			fmt.Fprintf(w, "  undisturbed reps (others used < %.0f%% of the CPUs in each run): %d of %d", 100*disturbedShare, len(q.Reps), len(r.Pipeline))
			if len(q.Reps) > 0 {
				fmt.Fprintf(w, " %v: pipeline %.2f, loop %.2f pairs/s, ratio %.3f", q.Reps, q.PipelineRate.Median, q.LoopRate.Median, q.Ratio)
			}
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "  pipeline peak RSS (VmHWM of the child)       %8.0f MiB (min %.0f, max %.0f; this process with the session + one batch: %.0f MiB)\n",
			s.PipelineRSSMiB.Median, s.PipelineRSSMiB.Min, s.PipelineRSSMiB.Max, r.SessionRSSMiB)
		fmt.Fprintf(w, "  pipeline time split (medians): preflight done at %.2f s; forward passes %.2f s of %.2f s wall (%.0f%%, from rerank/batch_latency_ms)\n",
			s.PrepareS.Median, s.InferenceS.Median, s.PipelineWall.Median, 100*div(s.InferenceS.Median, s.PipelineWall.Median))
		fmt.Fprintf(w, "  forward passes per run: pipeline %d (median of the runs' mean pass %.0f ms), loop %d (median wall / passes %.0f ms)\n",
			r.Pipeline[0].Batches, s.BatchMeanMS.Median, r.Lists.Batches, 1000*div(s.LoopWall.Median, float64(r.Lists.Batches)))
		fmt.Fprintf(w, "  pair scores, pipeline vs loop: max |Δ| %.2g over the same %d pairs\n", r.ScoresMaxAbsDiff, r.Lists.Pairs)
	}
	if rate := s.LoopRate.Median; rate > 0 {
		fmt.Fprintf(w, "\n  at the loop's %.2f pairs/s: %.0f pairs per worker-hour of this size (%d intra-op threads); SOP's %d pairs: %.1f worker-hours\n",
			rate, 3600*rate, c.Threads, sopPairs, sopPairs/rate/3600)
	}
	if rate := s.PipelineRate.Median; rate > 0 {
		fmt.Fprintf(w, "  at the pipeline's %.2f pairs/s: %.0f pairs per worker-hour; SOP: %.1f worker-hours\n",
			rate, 3600*rate, sopPairs/rate/3600)
	}
}
