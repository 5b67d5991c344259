package main

import (
	"context"
	"flag"
	"runtime"
	"time"

	"github.com/stirpipe/stirpipe/models/imageio"
	"github.com/stirpipe/stirpipe/models/ort"
	"github.com/stirpipe/stirpipe/pipelines"
	"github.com/stirpipe/stirpipe/schemas/blob"
)

// defaultModel is the small trained embedder shipped with the repository (models/zoo/stir-tiny).
const defaultModel = "models/zoo/stir-tiny/embedder.json"

// runtimeFlags registers the ONNX Runtime flags shared by every model-running command.
func runtimeFlags(fs *flag.FlagSet, s *pipelines.Shared) {
	o := &s.Runtime
	fs.StringVar(&s.Library, "onnxruntime_lib", "", "ONNX Runtime "+ort.RequiredVersion+" shared library; empty: $STIR_ONNXRUNTIME_LIB, then .local/onnxruntime/ (make ort installs it there), then the system loader")
	fs.IntVar(&o.IntraOpThreads, "threads", runtime.NumCPU(), "ONNX Runtime intra-op threads per session")
	fs.IntVar(&o.InterOpThreads, "inter_op_threads", 1, "ONNX Runtime inter-op threads per session")
	fs.StringVar(&o.GraphOptLevel, "graph_opt", "all", "ONNX Runtime graph optimisation level: all, extended, basic or disabled")
	fs.StringVar(&o.Provider, "provider", "cpu", "execution provider: cpu, or cuda (needs the GPU build of ONNX Runtime)")
	fs.IntVar(&o.CUDADevice, "cuda_device", 0, "CUDA device id when --provider=cuda")
	fs.BoolVar(&o.Spin, "spin", false, "let ONNX Runtime's threads spin-wait between operators (faster only when nothing else needs the cores)")
}

// progressFlag registers --progress.
func progressFlag(fs *flag.FlagSet, s *pipelines.Shared) {
	fs.BoolVar(&s.Progress, "progress", true, "print progress lines (items, rate, ETA) while running")
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
	fs.IntVar(&o.CatalogShards, "catalog_shards", 0, "parallel catalog readers, each reading its own part of the file; 0: one per 1,000 rows")
	fs.StringVar(&o.Previous, "previous", "", "earlier run to refresh from: what did not change is reused (embeddings; for run also neighbour lists and STIR pair scores); "+
		"latest: the run that the LATEST pointer beside --output names (a full run while there is none); empty: none. A rerun on the same --output always reuses its finished work")
	fs.Float64Var(&maxMP, "max_megapixels", 40, "refuse images over this many megapixels before decoding them")
	fs.Int64Var(&maxMB, "max_file_mb", 64, "refuse image files over this many MiB")
	progressFlag(fs, &o.Shared)
	runtimeFlags(fs, &o.Shared)
	return func() (bool, error) {
		o.Limits = imageio.Limits{MaxPixels: int64(maxMP * 1e6), MaxBytes: maxMB << 20}
		out, templated, err := expandOutput(o.Output, time.Now())
		if err != nil {
			return false, err
		}
		o.Output = out
		if o.Previous == "latest" {
			if o.Previous, err = readLatest(context.Background(), blob.Join(blob.Dir(out), LatestFile)); err != nil {
				return false, err
			}
		}
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
		plan, err := pipelines.PrepareEmbed(ctx, o)
		if err != nil {
			return err
		}
		return runStage(ctx, plan)
	}
}
