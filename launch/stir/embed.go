package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"

	"github.com/stirpipe/stirpipe/models/imageio"
	"github.com/stirpipe/stirpipe/models/ort"
	"github.com/stirpipe/stirpipe/pipelines"
	"github.com/stirpipe/stirpipe/schemas/blob"
	"github.com/stirpipe/stirpipe/schemas/embeddings"
	"github.com/stirpipe/stirpipe/schemas/rejects"
)

// defaultModel is the small trained embedder shipped with the repository (models/zoo/stir-tiny).
const defaultModel = "models/zoo/stir-tiny/embedder.json"

// runtimeFlags registers the ONNX Runtime flags shared by every model-running command.
func runtimeFlags(fs *flag.FlagSet, o *ort.Options, lib *string) {
	fs.StringVar(lib, "onnxruntime_lib", "", "ONNX Runtime "+ort.RequiredVersion+" shared library; empty: $STIR_ONNXRUNTIME_LIB, then .local/onnxruntime/ (make ort installs it there), then the system loader")
	fs.IntVar(&o.IntraOpThreads, "threads", runtime.NumCPU(), "ONNX Runtime intra-op threads per session")
	fs.IntVar(&o.InterOpThreads, "inter_op_threads", 1, "ONNX Runtime inter-op threads per session")
	fs.StringVar(&o.GraphOptLevel, "graph_opt", "all", "ONNX Runtime graph optimisation level: all, extended, basic or disabled")
	fs.StringVar(&o.Provider, "provider", "cpu", "execution provider: cpu, or cuda (needs the GPU build of ONNX Runtime)")
	fs.IntVar(&o.CUDADevice, "cuda_device", 0, "CUDA device id when --provider=cuda")
	fs.BoolVar(&o.Spin, "spin", false, "let ONNX Runtime's threads spin-wait between operators (faster only when nothing else needs the cores)")
}

// embedOptionFlags registers the embed stage's flags (shared by run); call the returned
// function after parsing to finish the options: it sets the image limits and expands
// --output's placeholders, reporting whether there were any.
func embedOptionFlags(fs *flag.FlagSet, o *pipelines.EmbedOptions) func() (templated bool, err error) {
	var maxMP float64
	var maxMB int64
	fs.StringVar(&o.Catalog, "catalog", "", "catalog file, OML CSV or Parquet, local or gs:// (required)")
	fs.StringVar(&o.Format, "catalog_format", "", "catalog format: csv or parquet; empty: from the file extension")
	fs.StringVar(&o.Root, "root", "", "dataset root that catalog paths are relative to; empty: the catalog's directory")
	fs.StringVar(&o.Output, "output", "", "run directory, local or gs:// (required); gets embeddings/ and rejects/; {date} and {datetime} are replaced by the launch time (UTC)")
	fs.StringVar(&o.Model, "model", defaultModel, "embedder: ONNX file or its manifest (.json beside it), local or gs:// (a remote model is copied once into $STIR_CACHE_DIR/models)")
	fs.IntVar(&o.BatchSize, "batch_size", 8, "images per forward pass")
	fs.IntVar(&o.EmbeddingShards, "embedding_shards", 0, "number of embeddings Parquet files; 0: one per 50,000 rows")
	fs.IntVar(&o.CatalogShards, "catalog_shards", 0, "parallel catalog readers; 0: one per 20,000 rows")
	fs.Float64Var(&maxMP, "max_megapixels", 40, "refuse images over this many megapixels before decoding them")
	fs.Int64Var(&maxMB, "max_file_mb", 64, "refuse image files over this many MiB")
	fs.BoolVar(&o.Progress, "progress", true, "print progress lines (items, rate, ETA) while running")
	runtimeFlags(fs, &o.Runtime, &o.Library)
	return func() (bool, error) {
		o.Limits = imageio.Limits{MaxPixels: int64(maxMP * 1e6), MaxBytes: maxMB << 20}
		out, templated, err := expandOutput(o.Output, time.Now())
		if err != nil {
			return false, err
		}
		o.Output = out
		return templated, nil
	}
}

// embedPaths are the embed stage's paths that its workers read or write.
func embedPaths(o *pipelines.EmbedOptions) map[string]*string {
	return map[string]*string{"--catalog": &o.Catalog, "--root": &o.Root, "--output": &o.Output, "--model": &o.Model}
}

func embedFlags(fs *flag.FlagSet) func(context.Context) error {
	var o pipelines.EmbedOptions
	finish := embedOptionFlags(fs, &o)
	return func(ctx context.Context) error {
		if _, err := finish(); err != nil {
			return err
		}
		w, err := placeWorkers(embedPaths(&o), o.Runtime.Provider)
		if err != nil {
			return err
		}
		o.Workers = w
		_, err = runEmbed(ctx, o, func(*pipelines.EmbedPlan) error {
			return pipelines.Withdraw(ctx, pipelines.MarkersOf(o.Output).Embeddings)
		})
		return err
	}
}

// runEmbed runs the embed stage; ready runs once its inputs are checked, before any work
// (the caller's own checks, and withdrawing the outputs it will rewrite).
func runEmbed(ctx context.Context, o pipelines.EmbedOptions, ready func(*pipelines.EmbedPlan) error) (*pipelines.EmbedPlan, error) {
	start := time.Now()
	plan, err := pipelines.PrepareEmbed(ctx, o)
	if err != nil {
		return nil, err
	}
	if err := ready(plan); err != nil {
		return nil, err
	}
	p, s := beam.NewPipelineWithRoot()
	pipelines.Embed(s, plan)
	fmt.Fprintf(os.Stderr, "embed: %d catalog rows, model %s (D=%d), running…\n", len(plan.Catalog.Rows), plan.Manifest.Name, plan.Manifest.Dim)
	res, err := execute(ctx, p)
	if err != nil {
		return nil, err
	}
	return plan, embedSummary(ctx, plan, res, time.Since(start))
}

// embedSummary prints the run's counts and checks that every catalog row came out once,
// as an embedding or a reject.
func embedSummary(ctx context.Context, plan *pipelines.EmbedPlan, res beam.PipelineResult, took time.Duration) error {
	out := plan.Options.Output
	embDir := blob.Join(out, pipelines.EmbeddingsDir)
	m, err := embeddings.ReadManifest(ctx, embDir)
	if err != nil {
		return err
	}
	rejFile := pipelines.RejectsFile(out, "embed")
	rejs, err := rejects.ReadAll(ctx, rejFile)
	if err != nil {
		return err
	}
	byReason := map[string]int{}
	for _, r := range rejs {
		byReason[r.Stage+"/"+r.Reason]++
	}
	var reasons []string
	for k, n := range byReason {
		reasons = append(reasons, fmt.Sprintf("%s %d", k, n))
	}
	sort.Strings(reasons)
	w := os.Stdout
	fmt.Fprintf(w, "embed: done in %s\n", took.Round(time.Millisecond))
	fmt.Fprintf(w, "  catalog rows  %7d  %s (%s)\n", len(plan.Catalog.Rows), plan.Options.Catalog, plan.Catalog.Snapshot)
	fmt.Fprintf(w, "  embeddings    %7d  %s (%d file(s), D=%d, model %s)\n", m.Rows, embDir, len(m.Shards), m.Dim, m.ModelName)
	fmt.Fprintf(w, "  rejects       %7d  %s\n", len(rejs), rejFile)
	if len(reasons) > 0 {
		fmt.Fprintf(w, "    by reason: %s\n", strings.Join(reasons, ", "))
	}
	if res != nil {
		{
			for _, d := range res.Metrics().AllMetrics().Distributions() {
				if d.Key.Namespace == "embed" && d.Key.Name == "batch_latency_ms" {
					r := d.Result()
					if r.Count > 0 {
						fmt.Fprintf(w, "  batches       %7d  mean %.0f ms (min %d, max %d)\n", r.Count, float64(r.Sum)/float64(r.Count), r.Min, r.Max)
					}
				}
			}
		}
	}
	if got := m.Rows + int64(len(rejs)); got != int64(len(plan.Catalog.Rows)) {
		return fmt.Errorf("row accounting mismatch: %d catalog rows but %d embeddings + %d rejects", len(plan.Catalog.Rows), m.Rows, len(rejs))
	}
	return nil
}
