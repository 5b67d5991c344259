// Command stir runs the image-retrieval pipeline's jobs: flags in, a summary and an exit
// code out. The stages themselves, and the checks of a whole job, are in package pipelines.
//
//	stir run       --catalog CATALOG --output RUN   the whole job: embed → neighbors → rerank → evaluate
//	stir embed     --catalog CATALOG --output RUN   catalog → RUN/embeddings, RUN/rejects/embed.parquet
//	stir neighbors --output RUN                     RUN/embeddings → RUN/neighbors
//	stir rerank    --output RUN                     RUN/neighbors → RUN/reranked (STIR)
//	stir evaluate  --lists DIR --output FILE        lists → metrics.json (before and after with --compare)
//	stir synth     --out DIR                        a synthetic product catalog for demos and tests
//
// Jobs run on the embedded prism runner by default; --runner=direct, or --runner=universal
// with --endpoint (Flink, Spark job servers), or --runner=dataflow with its flags run the
// same pipeline elsewhere. The binary is also the Beam worker: started with --worker by a
// runner, it serves work instead of launching a job; a runner with separate workers is
// handed this executable (launch/worker checks that it fits them).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	beamlog "github.com/apache/beam/sdks/v2/go/pkg/beam/log"
)

// command is one job of the program.
type command struct {
	name, summary string
	flags         func(fs *flag.FlagSet) func(ctx context.Context) error
}

var commands = []command{
	{"run", "the whole job on a catalog: embed → neighbors → rerank → evaluate, each stage writing its files under --output", runFlags},
	{"embed", "embed every image of a catalog with an ONNX model (catalog → embeddings, rejects)", embedFlags},
	{"neighbors", "exact top-k neighbour lists of every query, over a sharded gallery (embeddings → neighbors)", neighborsFlags},
	{"rerank", "rerank each query's top candidates with the STIR pairwise model (neighbors → reranked)", rerankFlags},
	{"evaluate", "OML retrieval metrics of neighbour lists, or of lists before and after reranking (→ metrics.json)", evaluateFlags},
	{"synth", "generate a synthetic product catalog (images + OML CSV) for demos, tests and benchmarks", synthFlags},
}

func main() {
	if len(os.Args) < 2 || strings.HasPrefix(os.Args[1], "-") {
		// Started by a runner as a worker (--worker), or asked for help.
		if len(os.Args) >= 2 && !isHelp(os.Args[1]) {
			flag.Parse()
			dieWithParent()
			beam.Init()
		}
		usage(os.Stderr)
		os.Exit(2)
	}
	name := os.Args[1]
	if isHelp(name) {
		usage(os.Stdout)
		return
	}
	var cmd *command
	for i := range commands {
		if commands[i].name == name {
			cmd = &commands[i]
		}
	}
	if cmd == nil {
		fmt.Fprintf(os.Stderr, "stir: unknown command %q\n\n", name)
		usage(os.Stderr)
		os.Exit(2)
	}
	run := cmd.flags(flag.CommandLine)
	logLevel := flag.String("log_level", "warn", "runner log level: debug, info, warn or error")
	flag.CommandLine.Usage = func() { commandUsage(cmd) }
	os.Args = append(os.Args[:1], os.Args[2:]...)
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "stir %s: unexpected arguments %q (every input is a --flag)\n", name, flag.Args())
		os.Exit(2)
	}
	beamlog.LogLevel = *logLevel
	beam.Init()
	if err := run(context.Background()); errors.Is(err, errDryRun) {
		fmt.Fprintf(os.Stderr, "stir %s: %v\n", name, err)
		return
	} else if err != nil {
		fmt.Fprintf(os.Stderr, "stir %s: %v\n", name, err)
		os.Exit(1)
	}
}

func isHelp(s string) bool { return s == "help" || s == "-h" || s == "-help" || s == "--help" }

func usage(w *os.File) {
	fmt.Fprintln(w, "stir: offline image retrieval with STIR reranking, as Apache Beam jobs.")
	fmt.Fprintln(w, "\nUsage: stir COMMAND [flags]    (stir COMMAND --help lists a command's flags)")
	fmt.Fprintln(w, "\nCommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
}

// runnerFlags are the Beam flags a user of a job needs most; Beam defines them.
var runnerFlags = []string{"runner", "endpoint", "environment_type", "environment_config", "worker_binary", "job_name",
	"project", "region", "temp_location", "staging_location", "sdk_container_image", "worker_machine_type", "num_workers",
	"max_num_workers", "dataflow_service_options", "dry_run"}

func commandUsage(c *command) {
	w := flag.CommandLine.Output()
	fmt.Fprintf(w, "stir %s: %s\n\nUsage: stir %s [flags]\n\nFlags:\n", c.name, c.summary, c.name)
	own := flag.NewFlagSet(c.name, flag.ContinueOnError)
	c.flags(own)
	own.SetOutput(w)
	own.PrintDefaults()
	if c.name == "synth" {
		return
	}
	fmt.Fprintln(w, "\nRunner flags (Apache Beam; defaults run locally on the embedded prism runner):")
	for _, name := range runnerFlags {
		if f := flag.CommandLine.Lookup(name); f != nil {
			def := f.DefValue
			if name == "runner" && def == "" {
				def = "prism"
			}
			fmt.Fprintf(w, "  --%s (default %q)\n    \t%s\n", name, def, f.Usage)
		}
	}
	fmt.Fprintln(w, "  (every other Beam pipeline option is accepted too)")
}
