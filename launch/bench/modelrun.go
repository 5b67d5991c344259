package main

import (
	"errors"
	"flag"
	"fmt"
	"strconv"

	"github.com/stirpipe/stirpipe/models/manifest"
	"github.com/stirpipe/stirpipe/models/ort"
)

// modelRun holds the flags the embed and rerank benchmarks share: where they work, how
// often they repeat, the stir binary, and the ONNX Runtime settings of both the pipeline
// and the loop.
type modelRun struct {
	Work      string `json:"work"`
	Reps      int    `json:"reps"`
	QuietReps int    `json:"quiet_reps"`
	MaxReps   int    `json:"max_reps"`
	Threads   int    `json:"intra_op_threads"`
	InterOp   int    `json:"inter_op_threads"`
	GraphOpt  string `json:"graph_opt"`
	Spin      bool   `json:"spin"`
	Library   string `json:"onnxruntime_lib,omitempty"`
	Provider  string `json:"provider,omitempty"`
	Device    int    `json:"cuda_device,omitempty"`
	Pipeline  bool   `json:"pipeline"`
	Stir      string `json:"stir,omitempty"`
	JSON      string `json:"json"`
}

// register adds the shared flags to fs for the benchmark called name.
func (r *modelRun) register(fs *flag.FlagSet, name string, maxReps int, pipelineHelp string) {
	fs.StringVar(&r.Work, "work", "out/bench", "work directory: generated inputs (made once, reused), stir binary, run outputs, logs, results JSON")
	fs.IntVar(&r.Reps, "reps", 3, "repetitions of every measurement, alternating pipeline and loop runs")
	fs.IntVar(&r.QuietReps, "quiet_reps", 0, "on a shared machine: keep repeating (up to --max_reps) until this many reps ran undisturbed by other processes; 0: off")
	fs.IntVar(&r.MaxReps, "max_reps", maxReps, "most repetitions with --quiet_reps")
	fs.IntVar(&r.Threads, "threads", 2, "ONNX Runtime intra-op threads, in the pipeline and the loop")
	fs.IntVar(&r.InterOp, "inter_op_threads", 1, "ONNX Runtime inter-op threads")
	fs.StringVar(&r.GraphOpt, "graph_opt", "all", "ONNX Runtime graph optimisation level: all, extended, basic or disabled")
	fs.BoolVar(&r.Spin, "spin", false, "let ONNX Runtime's threads spin-wait between operators (stir's --spin), in the pipeline and the loop")
	fs.StringVar(&r.Library, "onnxruntime_lib", "", "ONNX Runtime shared library; empty: $STIR_ONNXRUNTIME_LIB, then .local/onnxruntime/")
	fs.StringVar(&r.Provider, "provider", "cpu", "execution provider, in the pipeline and the loop: cpu, or cuda (needs ONNX Runtime's CUDA build)")
	fs.IntVar(&r.Device, "cuda_device", 0, "CUDA device id when --provider=cuda")
	fs.BoolVar(&r.Pipeline, "pipeline", true, pipelineHelp)
	fs.StringVar(&r.Stir, "stir", "", "prebuilt stir binary; empty: go build -o WORK/stir ./launch/stir")
	fs.StringVar(&r.JSON, "json", "", "results file; empty: WORK/bench-"+name+".json")
}

// validate reports every problem with the shared flags.
func (r modelRun) validate() []error {
	var errs []error
	if r.Work == "" {
		errs = append(errs, errors.New("--work is required: the directory for the generated inputs, binaries and results"))
	}
	if r.Reps < 1 {
		errs = append(errs, fmt.Errorf("--reps must be ≥ 1, got %d", r.Reps))
	}
	if r.QuietReps < 0 {
		errs = append(errs, fmt.Errorf("--quiet_reps must be ≥ 0 (0 = off), got %d", r.QuietReps))
	}
	if r.QuietReps > 0 && r.MaxReps < max(r.Reps, r.QuietReps) {
		errs = append(errs, fmt.Errorf("--max_reps (%d) must be at least --reps (%d) and --quiet_reps (%d)", r.MaxReps, r.Reps, r.QuietReps))
	}
	if r.QuietReps > 0 && !r.Pipeline {
		errs = append(errs, errors.New("--quiet_reps needs the pipeline runs (--pipeline)"))
	}
	if err := r.runtime().Validate(); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// setUsage sets fs's help text: what the benchmark measures (one line each), how to call it,
// and its flags with their defaults.
func setUsage(fs *flag.FlagSet, about ...string) {
	fs.Usage = func() {
		w := fs.Output()
		for _, line := range about {
			fmt.Fprintln(w, line)
		}
		fmt.Fprintf(w, "\nUsage: bench %s [flags]   (run from the repository root)\n\nFlags:\n", fs.Name())
		fs.PrintDefaults()
	}
}

// loadModel reads a benchmark model's manifest; the zoo's ViT-S/16 graphs are made on demand.
func loadModel(path string) (*manifest.Manifest, error) {
	m, err := manifest.Load(path)
	if err != nil {
		return nil, fmt.Errorf("%w (for ViT-S/16 run `make vits16` first)", err)
	}
	return m, nil
}

// childFlags are the stir flags every timed child run shares: the ONNX Runtime settings,
// the prism runner, no progress lines.
func (r modelRun) childFlags() []string {
	args := []string{"--threads", strconv.Itoa(r.Threads), "--inter_op_threads", strconv.Itoa(r.InterOp),
		"--graph_opt", r.GraphOpt, "--progress=false", "--runner", "prism",
		"--provider", r.Provider, "--cuda_device", strconv.Itoa(r.Device)}
	if r.Spin {
		args = append(args, "--spin")
	}
	if r.Library != "" {
		args = append(args, "--onnxruntime_lib", r.Library)
	}
	return args
}

// runtime is the ONNX Runtime session options of the pipeline and the loop.
func (r modelRun) runtime() ort.Options {
	return ort.Options{IntraOpThreads: r.Threads, InterOpThreads: r.InterOp, GraphOptLevel: r.GraphOpt, Spin: r.Spin,
		Provider: r.Provider, CUDADevice: r.Device}
}
