package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/stirpipe/stirpipe/schemas/blob"
)

// stat summarises repeated measurements.
type stat struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	N      int     `json:"n"`
}

// newStat returns the median (mean of the middle two for an even count), min and max of xs.
func newStat(xs []float64) stat {
	if len(xs) == 0 {
		return stat{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return stat{Median: med, Min: s[0], Max: s[n-1], N: n}
}

// decodeCost is the single-goroutine cost per image of the loop's up-front decoding.
type decodeCost struct {
	Images       int     `json:"images"`
	ReadMS       float64 `json:"read_ms_per_image"`
	DecodeMS     float64 `json:"decode_ms_per_image"`
	PreprocessMS float64 `json:"preprocess_ms_per_image"`
}

// runInfo says when and on what machine a benchmark ran; every results file starts with it.
type runInfo struct {
	Started    time.Time `json:"started"`
	Finished   time.Time `json:"finished"`
	LoadStart  []float64 `json:"loadavg_start"`
	LoadEnd    []float64 `json:"loadavg_end"`
	CPUs       int       `json:"cpus"`
	GOMAXPROCS int       `json:"gomaxprocs"`
	GoVersion  string    `json:"go_version"`
	ORTVersion string    `json:"onnxruntime_version"`
}

func startRun() runInfo {
	return runInfo{Started: time.Now().UTC(), LoadStart: loadAvg(),
		CPUs: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), GoVersion: runtime.Version()}
}

func (r *runInfo) finish() {
	r.LoadEnd = loadAvg()
	r.Finished = time.Now().UTC()
}

// embedResult is everything one benchmark invocation measured; it is the JSON file.
type embedResult struct {
	Config embedConfig `json:"config"`
	runInfo
	ModelName   string       `json:"model_name"`
	ModelSHA256 string       `json:"model_sha256"`
	ModelDim    int          `json:"model_dim"`
	Catalog     benchCatalog `json:"catalog"`
	Decode      decodeCost   `json:"loop_predecode_cost"`
	// SessionRSSMiB is the bench process's peak RSS after opening the session and one
	// forward pass, before decoding: the memory of the model alone.
	SessionRSSMiB float64       `json:"session_only_peak_rss_mib"`
	Pipeline      []pipelineRun `json:"pipeline_runs"`
	PipelineHalf  []pipelineRun `json:"pipeline_half_runs,omitempty"`
	Loops         []loopRun     `json:"loop_runs"`
	Summary       summary       `json:"summary"`
}

// summary holds the figures the table prints.
type summary struct {
	// PipelineRate is the end-to-end images/s: embedded rows / child wall time.
	PipelineRate   stat `json:"pipeline_images_per_s"`
	PipelineWall   stat `json:"pipeline_wall_s"`
	PipelineRSSMiB stat `json:"pipeline_peak_rss_mib"`
	RusageRSSMiB   stat `json:"pipeline_rusage_maxrss_mib"`
	PipelineCPU    stat `json:"pipeline_cpu_s"`
	PipelineOthers stat `json:"pipeline_others_cpu_s"`
	PrepareS       stat `json:"pipeline_preflight_s"`
	InferenceS     stat `json:"pipeline_inference_s"`
	// Ratio is median pipeline images/s over median plain-loop images/s.
	Ratio float64 `json:"ratio_of_medians"`
	// RatioPerRep is pipeline/loop within each repetition.
	RatioPerRep stat          `json:"ratio_per_rep"`
	Loops       []loopSummary `json:"loops"`
	Steady      *steadyState  `json:"steady_state,omitempty"`
	// Quiet repeats the main figures over the repetitions no other process disturbed.
	Quiet *quietSummary `json:"undisturbed,omitempty"`
}

// disturbedShare is the share of the machine's CPU capacity that other processes may use
// during a run before the run counts as disturbed.
const disturbedShare = 0.05

// disturbed reports whether other processes used more than disturbedShare of the CPUs
// during a run of wall seconds.
func disturbed(othersCPU, wall float64, cpus int) bool {
	return othersCPU > disturbedShare*wall*float64(max(cpus, 1))
}

// quietSummary holds the figures of the undisturbed repetitions: those whose pipeline
// run(s) and plain-loop run were all undisturbed.
type quietSummary struct {
	Reps         []int   `json:"reps"`
	PipelineRate stat    `json:"pipeline_images_per_s"`
	LoopRate     stat    `json:"loop_images_per_s"`
	Ratio        float64 `json:"ratio_of_medians"`
	SteadyRate   stat    `json:"steady_images_per_s"`
}

// loopSummary summarises one loop variant.
type loopSummary struct {
	Variant string  `json:"variant"`
	Rate    stat    `json:"images_per_s"`
	Wall    stat    `json:"wall_s"`
	CPU     stat    `json:"cpu_s"`
	Others  stat    `json:"others_cpu_s"`
	Ratio   float64 `json:"pipeline_over_this"`
}

// steadyState is the pipeline's rate once started, from runs on N and 2N images:
// wall = fixed + rows/rate.
type steadyState struct {
	HalfRows int64 `json:"half_rows"`
	FullRows int64 `json:"full_rows"`
	HalfWall stat  `json:"half_wall_s"`
	// Rate is (rows(2N) − rows(N)) / (wall(2N) − wall(N)) per repetition.
	Rate stat `json:"images_per_s"`
	// FixedS is the wall-time intercept: start-up and shut-down costs independent of N.
	FixedS stat `json:"fixed_s"`
	// FixedShare is median FixedS over the median full-catalog wall.
	FixedShare float64 `json:"fixed_share_of_wall"`
	// Ratio is median Rate over the plain loop's median rate.
	Ratio       float64 `json:"ratio_to_loop"`
	Significant bool    `json:"startup_significant"`
}

// significantShare is the share of the wall above which start-up counts as significant.
const significantShare = 0.05

func (r *embedResult) summarize(variants []string) {
	var s summary
	col := func(runs []pipelineRun, f func(pipelineRun) float64) []float64 {
		var out []float64
		for _, p := range runs {
			out = append(out, f(p))
		}
		return out
	}
	s.PipelineRate = newStat(col(r.Pipeline, func(p pipelineRun) float64 { return p.Rate }))
	s.PipelineWall = newStat(col(r.Pipeline, func(p pipelineRun) float64 { return p.WallS }))
	s.PipelineRSSMiB = newStat(col(r.Pipeline, func(p pipelineRun) float64 { return float64(p.MaxRSSKiB) / 1024 }))
	s.RusageRSSMiB = newStat(col(r.Pipeline, func(p pipelineRun) float64 { return float64(p.RusageMaxRSSKiB) / 1024 }))
	s.PipelineCPU = newStat(col(r.Pipeline, func(p pipelineRun) float64 { return p.UserS + p.SysS }))
	s.PipelineOthers = newStat(col(r.Pipeline, func(p pipelineRun) float64 { return p.OthersCPUS }))
	s.PrepareS = newStat(col(r.Pipeline, func(p pipelineRun) float64 { return p.PrepareS }))
	s.InferenceS = newStat(col(r.Pipeline, func(p pipelineRun) float64 { return p.InferenceS }))
	var plainRate float64
	for _, v := range variants {
		var rates, walls, cpus, others []float64
		for _, l := range r.Loops {
			if l.Variant == v {
				rates, walls, cpus = append(rates, l.Rate), append(walls, l.WallS), append(cpus, l.CPUS)
				others = append(others, l.OthersCPUS)
			}
		}
		ls := loopSummary{Variant: v, Rate: newStat(rates), Wall: newStat(walls), CPU: newStat(cpus), Others: newStat(others)}
		ls.Ratio = div(s.PipelineRate.Median, ls.Rate.Median)
		s.Loops = append(s.Loops, ls)
		if v == variantPlain {
			plainRate = ls.Rate.Median
			var per []float64
			for i, rate := range rates {
				if i < len(r.Pipeline) {
					per = append(per, div(r.Pipeline[i].Rate, rate))
				}
			}
			s.RatioPerRep = newStat(per)
		}
	}
	s.Ratio = div(s.PipelineRate.Median, plainRate)
	s.Quiet = r.quiet()
	if len(r.PipelineHalf) > 0 {
		st := &steadyState{HalfRows: r.PipelineHalf[0].Rows, FullRows: r.Pipeline[0].Rows}
		var rates, fixed, halfWalls []float64
		for i, h := range r.PipelineHalf {
			if i >= len(r.Pipeline) {
				break
			}
			f := r.Pipeline[i]
			halfWalls = append(halfWalls, h.WallS)
			dRows, dWall := float64(f.Rows-h.Rows), f.WallS-h.WallS
			if dRows <= 0 || dWall <= 0 {
				continue // load noise swamped the difference; no estimate from this rep
			}
			rates = append(rates, dRows/dWall)
			fixed = append(fixed, h.WallS-float64(h.Rows)*dWall/dRows)
		}
		st.HalfWall, st.Rate, st.FixedS = newStat(halfWalls), newStat(rates), newStat(fixed)
		st.FixedShare = div(st.FixedS.Median, s.PipelineWall.Median)
		st.Ratio = div(st.Rate.Median, plainRate)
		st.Significant = st.FixedShare > significantShare
		s.Steady = st
	}
	r.Summary = s
}

// quiet summarises the undisturbed repetitions; nil without pipeline runs.
func (r *embedResult) quiet() *quietSummary {
	if len(r.Pipeline) == 0 {
		return nil
	}
	q := &quietSummary{}
	var pipe, loop, steady []float64
	for i, p := range r.Pipeline {
		ok := !disturbed(p.OthersCPUS, p.WallS, r.CPUs)
		var h *pipelineRun
		if i < len(r.PipelineHalf) {
			h = &r.PipelineHalf[i]
			ok = ok && !disturbed(h.OthersCPUS, h.WallS, r.CPUs)
		}
		var l *loopRun
		for j := range r.Loops {
			if r.Loops[j].Rep == p.Rep && r.Loops[j].Variant == variantPlain {
				l = &r.Loops[j]
			}
		}
		if !ok || l == nil || disturbed(l.OthersCPUS, l.WallS, r.CPUs) {
			continue
		}
		q.Reps = append(q.Reps, p.Rep)
		pipe, loop = append(pipe, p.Rate), append(loop, l.Rate)
		if h != nil && p.WallS > h.WallS && p.Rows > h.Rows {
			steady = append(steady, float64(p.Rows-h.Rows)/(p.WallS-h.WallS))
		}
	}
	q.PipelineRate, q.LoopRate, q.SteadyRate = newStat(pipe), newStat(loop), newStat(steady)
	q.Ratio = div(q.PipelineRate.Median, q.LoopRate.Median)
	return q
}

func div(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// printReport writes the compact table.
func printReport(w io.Writer, r *embedResult) {
	c, s := r.Config, r.Summary
	fmt.Fprintf(w, "\nembed benchmark: model %s (%s, D=%d), ONNX Runtime %s\n", r.ModelName, c.Model, r.ModelDim, r.ORTVersion)
	reps := len(r.Pipeline)
	if reps == 0 {
		for _, l := range r.Loops {
			reps = max(reps, l.Rep)
		}
	}
	fmt.Fprintf(w, "  %d JPEGs of ~%d px (%s), batch %d, intra-op %d, inter-op %d, graph opt %s, %d rep(s)\n",
		r.Catalog.FullRows, c.Size, r.Catalog.Full, c.BatchSize, c.Threads, c.InterOp, c.GraphOpt, reps)
	row := printRunHeader(w, r.CPUs, r.GOMAXPROCS, r.LoadStart, r.LoadEnd, r.Decode, "images/s")
	if len(r.Pipeline) > 0 {
		row("pipeline, end to end (stir embed, prism)", s.PipelineRate, s.PipelineWall, s.PipelineCPU, s.PipelineOthers)
	}
	for _, l := range s.Loops {
		row(loopLabel(l.Variant), l.Rate, l.Wall, l.CPU, l.Others)
	}
	fmt.Fprintln(w, "  (wall, CPU: medians in s; CPU is the measured process's user+sys; others: CPU the rest of the machine used meanwhile)")
	if len(r.Pipeline) == 0 {
		return
	}
	fmt.Fprintf(w, "\n  ratio pipeline / plain loop (medians)        %8.3f   (per rep %.3f … %.3f; target ≥ 0.90)\n",
		s.Ratio, s.RatioPerRep.Min, s.RatioPerRep.Max)
	if q := s.Quiet; q != nil {
		fmt.Fprintf(w, "  undisturbed reps (others used < %.0f%% of the CPUs in each run): %d of %d", 100*disturbedShare, len(q.Reps), len(r.Pipeline))
		if len(q.Reps) > 0 {
			fmt.Fprintf(w, " %v: pipeline %.2f, loop %.2f images/s, ratio %.3f", q.Reps, q.PipelineRate.Median, q.LoopRate.Median, q.Ratio)
			if q.SteadyRate.N > 0 {
				fmt.Fprintf(w, ", steady state %.2f (ratio %.3f)", q.SteadyRate.Median, div(q.SteadyRate.Median, q.LoopRate.Median))
			}
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "  pipeline peak RSS (VmHWM of the child)       %8.0f MiB (min %.0f, max %.0f; this process with the session + one batch: %.0f MiB)\n",
		s.PipelineRSSMiB.Median, s.PipelineRSSMiB.Min, s.PipelineRSSMiB.Max, r.SessionRSSMiB)
	fmt.Fprintf(w, "    (wait4's ru_maxrss says %.0f MiB: Linux charges the child the high-water RSS of this process, whose memory it shared until exec)\n",
		s.RusageRSSMiB.Median)
	for _, l := range s.Loops[min(1, len(s.Loops)):] {
		fmt.Fprintf(w, "  ratio pipeline / %-27s %8.3f\n", l.Variant, l.Ratio)
	}
	fmt.Fprintf(w, "\n  pipeline time split (medians): preflight done at %.2f s (catalog, ONNX Runtime, model check);\n", s.PrepareS.Median)
	fmt.Fprintf(w, "    forward passes %.2f s of %.2f s wall (%.0f%%, from embed/batch_latency_ms)\n",
		s.InferenceS.Median, s.PipelineWall.Median, 100*div(s.InferenceS.Median, s.PipelineWall.Median))
	if st := s.Steady; st != nil {
		verdict := "not significant"
		if st.Significant {
			verdict = "SIGNIFICANT"
		}
		fmt.Fprintf(w, "  start-up/shut-down (wall intercept from %d- and %d-image runs): %.2f s (min %.2f, max %.2f) = %.0f%% of the wall: %s (threshold %.0f%%)\n",
			st.HalfRows, st.FullRows, st.FixedS.Median, st.FixedS.Min, st.FixedS.Max, 100*st.FixedShare, verdict, 100*significantShare)
		fmt.Fprintf(w, "  STEADY-STATE pipeline rate = %d / (wall(%d) − wall(%d)): %.2f images/s (min %.2f, max %.2f), ratio to plain loop %.3f\n",
			st.FullRows-st.HalfRows, st.FullRows, st.HalfRows, st.Rate.Median, st.Rate.Min, st.Rate.Max, st.Ratio)
		fmt.Fprintln(w, "    (secondary figure; the end-to-end rate above is the primary one)")
	}
}

func loopLabel(v string) string {
	switch v {
	case variantPlain:
		return "plain loop, pre-decoded tensors"
	case variantDecode:
		return "loop decoding each batch, then running it (no Beam)"
	}
	return v
}

func loadString(l []float64) string {
	if len(l) == 0 {
		return "unknown"
	}
	parts := make([]string, len(l))
	for i, v := range l {
		parts[i] = fmt.Sprintf("%.2f", v)
	}
	return strings.Join(parts, " ")
}

// writeJSON writes the results file, atomically (blob.WriteFile).
func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding %s: %w", path, err)
	}
	if err := blob.WriteFile(context.Background(), path, append(data, '\n')); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// printRunHeader prints the machine and decoding lines of a pipeline-vs-loop report and the
// head of its table of rates (in unit), and returns the function that prints a row.
func printRunHeader(w io.Writer, cpus, gomaxprocs int, loadStart, loadEnd []float64, d decodeCost, unit string) func(name string, rate, wall, cpu, others stat) {
	fmt.Fprintf(w, "  machine: %d CPUs, GOMAXPROCS %d; load average at start %s, at end %s\n",
		cpus, gomaxprocs, loadString(loadStart), loadString(loadEnd))
	fmt.Fprintf(w, "  loop pre-decode cost (one goroutine, untimed for the loop): read %.2f + decode %.1f + preprocess %.1f ms/image\n\n",
		d.ReadMS, d.DecodeMS, d.PreprocessMS)
	fmt.Fprintf(w, "  %-44s %8s %8s %8s %9s %8s %8s\n", unit, "median", "min", "max", "wall s", "CPU s", "others")
	return func(name string, rate, wall, cpu, others stat) {
		fmt.Fprintf(w, "  %-44s %8.2f %8.2f %8.2f %9.2f %8.1f %8.1f\n", name, rate.Median, rate.Min, rate.Max, wall.Median, cpu.Median, others.Median)
	}
}
