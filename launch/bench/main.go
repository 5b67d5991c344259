// Command bench measures the pipeline against the model alone, so that the cost of the
// pipeline's plumbing (decoding, Beam, prism, sinks) is a number, not a guess.
//
//	bench embed --model models/zoo/vits16/embedder.json --images 512 --size 500 --work out/bench
//
// The embed benchmark generates a synthetic JPEG catalog once (models/synth, reused while
// its options stay the same), builds the stir program, and then alternates, --reps times:
//
//   - the real embed pipeline as a child process (stir embed on prism), timed from process
//     start to exit, with the child's peak RSS;
//   - a plain loop over the same ONNX Runtime session settings fed tensors decoded and
//     preprocessed beforehand, in batches of the same size;
//   - optionally the pipeline on half the images, so that the difference of the two
//     pipeline walls gives a steady-state rate free of start-up costs;
//   - optionally a loop that decodes each batch from the files on every core and then runs
//     it, as the pipeline does, but without Beam: it separates the decoding cost from the
//     pipeline's overhead.
//
// It prints medians with min/max, the ratio of the medians, and writes every run to a JSON
// file in --work.
//
//	bench rerank --pair_model models/zoo/vits16/pairwise.json --images 160 --work out/bench
//
// The rerank benchmark makes neighbour lists for a generated catalog once (the real stir
// embed and stir neighbors), then alternates stir rerank on prism (child process, start to
// exit, peak RSS) with a plain loop over the same pairwise session fed the same pairs'
// pre-decoded tensors in the stage's batches, and checks that both gave the same scores.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

func main() {
	if len(os.Args) < 2 || isHelp(os.Args[1]) {
		usage()
		if len(os.Args) < 2 {
			os.Exit(2)
		}
		return
	}
	switch os.Args[1] {
	case "embed":
		os.Exit(runEmbed(context.Background(), os.Args[2:]))
	case "neighbors":
		os.Exit(runNeighborsBench(context.Background(), os.Args[2:]))
	case "rerank":
		os.Exit(runRerankBench(context.Background(), os.Args[2:]))
	case "refresh":
		os.Exit(runRefreshBench(context.Background(), os.Args[2:]))
	default:
		fmt.Fprintf(os.Stderr, "bench: unknown benchmark %q\n\n", os.Args[1])
		usage()
		os.Exit(2)
	}
}

func isHelp(s string) bool { return s == "help" || s == "-h" || s == "-help" || s == "--help" }

func usage() {
	fmt.Fprintln(os.Stderr, "bench: throughput benchmarks of the stir pipelines.")
	fmt.Fprintln(os.Stderr, "\nUsage: bench BENCHMARK [flags]    (bench BENCHMARK --help lists its flags)")
	fmt.Fprintln(os.Stderr, "\nBenchmarks:")
	fmt.Fprintln(os.Stderr, "  embed    embed pipeline (stir embed on prism) vs a plain ONNX Runtime loop on pre-decoded tensors")
	fmt.Fprintln(os.Stderr, "  neighbors exact k-NN engine vs FAISS on SOP-scale random vectors; neighbours stage wall time and peak RSS")
	fmt.Fprintln(os.Stderr, "  rerank   STIR rerank stage (stir rerank on prism) vs a plain ONNX Runtime loop on the same pre-decoded pairs")
	fmt.Fprintln(os.Stderr, "  refresh  stir run --previous on a catalog with 1 % of its rows changed vs a full run on it: wall time, work, identical files")
}

// runBench is the flow every benchmark shares: parse and check its flags, default the
// results file to WORK/bench-NAME.json, measure, then print and write what was measured,
// even when a later step failed. validate and measure run after parsing (closures over the
// flag variables). It returns the process exit code.
func runBench[R any](name string, fs *flag.FlagSet, args []string, work, jsonPath *string,
	validate func() error, measure func(log io.Writer) (*R, error), report func(io.Writer, *R)) int {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "bench %s: unexpected arguments %q (every input is a --flag)\n", name, fs.Args())
		return 2
	}
	if err := validate(); err != nil {
		fmt.Fprintf(os.Stderr, "bench %s: %v\n", name, err)
		return 2
	}
	if *jsonPath == "" {
		*jsonPath = filepath.Join(*work, "bench-"+name+".json")
	}
	res, err := measure(os.Stderr)
	if res != nil {
		report(os.Stdout, res)
		if werr := writeJSON(*jsonPath, res); werr != nil {
			err = errors.Join(err, werr)
		} else {
			fmt.Fprintf(os.Stdout, "results: %s\n", *jsonPath)
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench %s: %v\n", name, err)
		return 1
	}
	return 0
}
