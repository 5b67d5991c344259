package main

import (
	"context"
	"flag"
	"runtime"

	"github.com/stirpipe/stirpipe/pipelines"
)

// neighborsOptionFlags registers the neighbours stage's flags (shared by run).
func neighborsOptionFlags(fs *flag.FlagSet, o *pipelines.NeighborsOptions) {
	fs.IntVar(&o.K, "k", 100, "neighbours per query (OML keeps 100)")
	fs.IntVar(&o.ShardSize, "shard_size", 20000, "gallery rows per shard: a worker holds one shard (4·D bytes a row) at a time")
	fs.IntVar(&o.TileSize, "tile_size", 2048, "queries per tile and per neighbours file (a worker holds one tile's vectors and lists while it searches a shard)")
	fs.StringVar(&o.Format, "lists_format", "parquet", "neighbour-list file format: parquet, or arrow (Arrow IPC)")
	fs.IntVar(&o.Threads, "search_threads", runtime.NumCPU(), "cores the exact search uses per worker")
}

func neighborsFlags(fs *flag.FlagSet) func(context.Context) error {
	var o pipelines.NeighborsOptions
	fs.StringVar(&o.Output, "output", "", "run directory (required): lists go to OUTPUT/neighbors")
	fs.StringVar(&o.Embeddings, "embeddings", "", "embeddings directory; empty: OUTPUT/embeddings")
	fs.StringVar(&o.Library, "onnxruntime_lib", "", "ONNX Runtime shared library (see stir embed --help)")
	fs.StringVar(&o.Runtime.Provider, "provider", "cpu", "execution provider of the search: cpu or cuda")
	fs.IntVar(&o.Runtime.CUDADevice, "cuda_device", 0, "CUDA device id when --provider=cuda")
	progressFlag(fs, &o.Shared)
	neighborsOptionFlags(fs, &o)
	return func(ctx context.Context) error {
		w, err := placeWorkers(map[string]*string{"--output": &o.Output, "--embeddings": &o.Embeddings}, o.Runtime.Provider)
		if err != nil {
			return err
		}
		o.Workers = w
		plan, err := pipelines.PrepareNeighbors(ctx, o)
		if err != nil {
			return err
		}
		return runStage(ctx, plan)
	}
}
