package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/stirpipe/stirpipe/models/imageio"
	"github.com/stirpipe/stirpipe/models/manifest"
	"github.com/stirpipe/stirpipe/models/ort"
	"github.com/stirpipe/stirpipe/models/pairwise"
	"github.com/stirpipe/stirpipe/pipelines"
	"github.com/stirpipe/stirpipe/schemas/lists"
)

// rerankConfig holds the rerank benchmark's flags.
type rerankConfig struct {
	Model       string `json:"pair_model"`
	EmbedModel  string `json:"embed_model"`
	Images      int    `json:"images"`
	Size        int    `json:"size"`
	Seed        int64  `json:"seed"`
	K           int    `json:"k"`
	TopN        int    `json:"top_n"`
	BatchPairs  int    `json:"pair_batch"`
	CacheImages int    `json:"image_cache"`
	modelRun
	MaxMP float64 `json:"max_megapixels"`
}

func (c rerankConfig) validate() error {
	var errs []error
	if c.Model == "" || c.EmbedModel == "" {
		errs = append(errs, errors.New("--pair_model and --embed_model are required: the STIR pairwise model, and the embedder that makes the neighbour lists"))
	}
	if c.Images < 8 {
		errs = append(errs, fmt.Errorf("--images must be ≥ 8, got %d", c.Images))
	}
	if c.Size < 32 || c.Size > 4096 {
		errs = append(errs, fmt.Errorf("--size must be in [32, 4096] pixels, got %d", c.Size))
	}
	if c.TopN < 2 || c.K < c.TopN {
		errs = append(errs, fmt.Errorf("--top_n must be ≥ 2 and --k ≥ --top_n, got top_n %d and k %d", c.TopN, c.K))
	}
	if c.BatchPairs < 1 || c.BatchPairs > 4096 || c.CacheImages < 1 {
		errs = append(errs, fmt.Errorf("--pair_batch must be in [1, 4096] and --image_cache ≥ 1, got %d and %d", c.BatchPairs, c.CacheImages))
	}
	return errors.Join(append(errs, c.modelRun.validate()...)...)
}

// limits are stir rerank's image limits: its --max_megapixels, the default byte limit.
func (c rerankConfig) limits() imageio.Limits {
	return imageio.Limits{MaxPixels: int64(c.MaxMP * 1e6)}
}

func runRerankBench(ctx context.Context, args []string) int {
	var c rerankConfig
	fs := flag.NewFlagSet("rerank", flag.ContinueOnError)
	fs.StringVar(&c.Model, "pair_model", "models/zoo/vits16/pairwise.json", "STIR pairwise model manifest (or the ONNX file beside it)")
	fs.StringVar(&c.EmbedModel, "embed_model", "models/zoo/vits16/embedder.json", "embedder of the neighbour lists (same preprocessing as the pairwise model)")
	fs.IntVar(&c.Images, "images", 160, "images in the benchmark catalog (whole products of 4 views); half are validation rows, each a query: pairs = images/2 × top_n")
	fs.IntVar(&c.Size, "size", 500, "nominal side of the generated JPEGs in pixels")
	fs.Int64Var(&c.Seed, "seed", 1, "synthetic catalog seed")
	fs.IntVar(&c.K, "k", 10, "neighbours per list (stir neighbors --k)")
	fs.IntVar(&c.TopN, "top_n", 5, "candidates rescored per query (stir rerank --top_n)")
	fs.IntVar(&c.BatchPairs, "pair_batch", 10, "pairs per forward pass, in the pipeline and the loop (stir rerank --pair_batch)")
	fs.IntVar(&c.CacheImages, "image_cache", 512, "preprocessed images kept per bundle (stir rerank --image_cache)")
	c.modelRun.register(fs, "rerank", 8, "run the pipeline; false: only the loop (pairs/s of the model alone)")
	fs.Float64Var(&c.MaxMP, "max_megapixels", 40, "image pixel limit (as stir rerank's flag)")
	setUsage(fs, "bench rerank: the STIR rerank stage's pairs/s (stir rerank on prism, child process, start to exit)",
		"next to a plain ONNX Runtime loop over the same pairs, pre-decoded, with the same session settings and batches.",
		"The neighbour lists come from the real embed and neighbours stages, once per catalog (reused).")
	return runBench("rerank", fs, args, &c.Work, &c.JSON, func() error { return c.validate() },
		func(log io.Writer) (*rerankResult, error) { return benchRerank(ctx, c, log) }, printRerankReport)
}

// benchRerank prepares the catalog, the lists and the pairs, and runs every measurement;
// log gets progress lines.
func benchRerank(ctx context.Context, c rerankConfig, log io.Writer) (*rerankResult, error) {
	res := &rerankResult{Config: c, runInfo: startRun()}
	if err := os.MkdirAll(c.Work, 0o755); err != nil {
		return nil, err
	}
	pm, err := loadModel(c.Model)
	if err != nil {
		return nil, err
	}
	em, err := loadModel(c.EmbedModel)
	if err != nil {
		return nil, err
	}
	if err := pairwise.Compatible(pm, em); err != nil {
		return nil, err
	}
	res.ModelName = pm.Name

	cat, err := prepareCatalog(c.Work, c.Images, c.Size, c.Seed, log)
	if err != nil {
		return nil, err
	}
	res.Catalog = *cat
	bin, err := childStir(ctx, c.Stir, true, c.Work, log)
	if err != nil {
		return nil, err
	}
	logs := filepath.Join(c.Work, "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return nil, err
	}
	if res.Lists, err = prepareLists(ctx, c, cat, bin, logs, log); err != nil {
		return nil, err
	}

	if res.ORTVersion, err = initORT(c.Library); err != nil {
		return nil, err
	}
	sc, err := pairwise.Open(pm, c.runtime())
	if err != nil {
		return nil, err
	}
	defer sc.Close()
	res.ModelSHA256 = sc.ModelSHA256()
	// One forward pass of a full batch on zeros before anything else is allocated: this
	// process's peak RSS then is what the session costs, to compare with the pipeline's.
	zeros := make([]float32, c.BatchPairs*sc.InputLen())
	if _, err := sc.Score(zeros, zeros, c.BatchPairs); err != nil {
		return nil, fmt.Errorf("warm-up forward pass: %w", err)
	}
	res.SessionRSSMiB = float64(selfMaxRSSKiB()) / 1024

	recs, err := readLists(ctx, res.Lists.Dir)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "loop: decoding and preprocessing the images of %d queries' heads up front …\n", len(recs))
	ps, err := preparePairs(ctx, recs, cat.Full, pm, c.limits(), c.TopN, c.BatchPairs)
	if err != nil {
		return nil, err
	}
	res.Lists.Queries, res.Lists.Pairs, res.Lists.Images, res.Lists.Batches = len(recs), ps.Pairs(), ps.NumImages(), ps.NumBatches()
	res.Decode = ps.Cost

	last := c.Reps
	if c.QuietReps > 0 {
		last = c.MaxReps
	}
	for rep := 1; rep <= last; rep++ {
		if rep > c.Reps && len(res.quiet().Reps) >= c.QuietReps {
			break
		}
		if c.Pipeline {
			out := filepath.Join(c.Work, "run-rerank")
			p, err := runRerankChild(ctx, c, bin, res.Lists.Dir, cat.Full, out, filepath.Join(logs, fmt.Sprintf("rerank-rep%d.log", rep)))
			if err != nil {
				return nil, err
			}
			p.Rep = rep
			if p.Pairs != int64(ps.Pairs()) || p.Queries != int64(len(recs)) {
				return nil, fmt.Errorf("pipeline reranked %d queries with %d pairs, the lists hold %d queries with %d head pairs; see %s",
					p.Queries, p.Pairs, len(recs), ps.Pairs(), p.Log)
			}
			res.Pipeline = append(res.Pipeline, p)
			fmt.Fprintf(log, "rep %d: pipeline %5d pairs in %6.2f s = %6.2f pairs/s, peak RSS %d MiB, CPU %.1f s, others' CPU %.1f s\n",
				rep, p.Pairs, p.WallS, p.Rate, p.MaxRSSKiB>>10, p.UserS+p.SysS, p.OthersCPUS)
			got, err := readPairScores(ctx, filepath.Join(out, pipelines.RerankedDir))
			if err != nil {
				return nil, err
			}
			if res.pipelineScores == nil {
				res.pipelineScores = got
			}
		}
		r, scores, err := runPairLoop(sc.Score, ps)
		if err != nil {
			return nil, fmt.Errorf("loop: %w", err)
		}
		r.Rep = rep
		res.Loops = append(res.Loops, r)
		fmt.Fprintf(log, "rep %d: loop     %5d pairs in %6.2f s = %6.2f pairs/s, CPU %.1f s, others' CPU %.1f s\n",
			rep, r.Pairs, r.WallS, r.Rate, r.CPUS, r.OthersCPUS)
		if res.loopScores == nil {
			res.loopScores = ps.byQuery(scores)
		}
	}
	if res.pipelineScores != nil {
		d, err := compareScores(res.pipelineScores, res.loopScores)
		if err != nil {
			return nil, fmt.Errorf("the pipeline and the loop did not score the same pairs: %w", err)
		}
		res.ScoresMaxAbsDiff = d
		if d > scoreTolerance {
			return nil, fmt.Errorf("the pipeline's pair scores differ from the loop's by up to %g (tolerance %g): not the same pairs or inputs", d, scoreTolerance)
		}
	}
	res.finish()
	res.summarize()
	return res, nil
}

// scoreTolerance bounds the difference between a pair's score in the pipeline and in the
// loop (sigmoid outputs; batch composition may differ by float rounding only).
const scoreTolerance = 1e-4

// listsInfo describes the benchmark's neighbour lists.
type listsInfo struct {
	// Dir is the neighbours directory (RUN/neighbors) the rerank stage reads.
	Dir    string `json:"dir"`
	Reused bool   `json:"reused"`
	// Queries and Pairs count the lists and their head pairs (Σ min(top_n, len));
	// Images the distinct images of those pairs; Batches the loop's forward passes.
	Queries int `json:"queries"`
	Pairs   int `json:"pairs"`
	Images  int `json:"distinct_images"`
	Batches int `json:"batches"`
}

// listsStamp records what a lists directory was made from.
type listsStamp struct {
	Catalog    string `json:"catalog"`
	EmbedModel string `json:"embed_model"`
	EmbedSHA   string `json:"embed_model_sha256"`
	K          int    `json:"k"`
}

// prepareLists runs the real embed and neighbours stages on the catalog, once: a lists
// directory made from the same catalog, embedder and k is reused.
func prepareLists(ctx context.Context, c rerankConfig, cat *benchCatalog, bin, logs string, log io.Writer) (listsInfo, error) {
	em, err := manifest.Load(c.EmbedModel)
	if err != nil {
		return listsInfo{}, err
	}
	sha, err := ort.FileSHA256(em.Model)
	if err != nil {
		return listsInfo{}, err
	}
	stamp, err := json.Marshal(listsStamp{Catalog: cat.Full, EmbedModel: c.EmbedModel, EmbedSHA: sha, K: c.K})
	if err != nil {
		return listsInfo{}, err
	}
	run := filepath.Join(cat.Dir+"-lists", fmt.Sprintf("%s-k%d", em.Name, c.K))
	info := listsInfo{Dir: filepath.Join(run, pipelines.NeighborsDir)}
	stampPath := filepath.Join(run, "bench-lists.json")
	old, _ := os.ReadFile(stampPath)
	if _, err := lists.ReadManifest(ctx, info.Dir); err == nil && cat.Reused && bytes.Equal(old, stamp) {
		info.Reused = true
		fmt.Fprintf(log, "lists: reusing %s\n", info.Dir)
		return info, nil
	}
	if err := os.RemoveAll(run); err != nil {
		return info, err
	}
	fmt.Fprintf(log, "lists: stir embed (%s) and stir neighbors (k=%d) on %s …\n", em.Name, c.K, cat.Full)
	steps := []struct {
		name string
		args []string
	}{
		{"embed", []string{"embed", "--catalog", cat.Full, "--output", run, "--model", c.EmbedModel, "--batch_size", "8"}},
		{"neighbors", []string{"neighbors", "--output", run, "--k", strconv.Itoa(c.K)}},
	}
	for _, s := range steps {
		args := append(s.args, "--progress=false", "--runner", "prism")
		if s.name == "embed" {
			args = append(args, "--threads", strconv.Itoa(c.Threads))
		}
		if c.Library != "" {
			args = append(args, "--onnxruntime_lib", c.Library)
		}
		r, err := runChild(ctx, bin, args, s.name+": ", filepath.Join(logs, "lists-"+s.name+".log"))
		if err != nil {
			return info, fmt.Errorf("making the neighbour lists: %w", err)
		}
		fmt.Fprintf(log, "lists: %s done in %.1f s\n", s.name, r.WallS)
	}
	if err := os.WriteFile(stampPath, stamp, 0o644); err != nil {
		return info, err
	}
	return info, nil
}

// readLists reads every list of a neighbours directory, in file order.
func readLists(ctx context.Context, dir string) ([]lists.Record, error) {
	r, err := lists.Open(ctx, dir)
	if err != nil {
		return nil, err
	}
	recs, err := r.ReadAll(ctx)
	if err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		return nil, fmt.Errorf("%s holds no lists", dir)
	}
	return recs, nil
}

// rerankPipelineRun is one timed run of stir rerank as a child process.
type rerankPipelineRun struct {
	Rep     int     `json:"rep"`
	Queries int64   `json:"queries"`
	Pairs   int64   `json:"pairs"`
	Rate    float64 `json:"pairs_per_s"`
	childRun
}

// runRerankChild runs stir rerank once on the lists and times it from process start to exit.
func runRerankChild(ctx context.Context, c rerankConfig, bin, lists, catalogPath, out, logPath string) (rerankPipelineRun, error) {
	run := rerankPipelineRun{childRun: childRun{Log: logPath}}
	if err := os.RemoveAll(out); err != nil {
		return run, err
	}
	args := append([]string{"rerank", "--output", out, "--lists", lists, "--catalog", catalogPath,
		"--pair_model", c.Model, "--top_n", strconv.Itoa(c.TopN), "--pair_batch", strconv.Itoa(c.BatchPairs),
		"--image_cache", strconv.Itoa(c.CacheImages), "--max_megapixels", strconv.FormatFloat(c.MaxMP, 'g', -1, 64)},
		c.childFlags()...)
	var err error
	run.childRun, err = runChild(ctx, bin, args, "rerank: ", logPath)
	if err != nil {
		return run, err
	}
	recs, err := readLists(ctx, filepath.Join(out, pipelines.RerankedDir))
	if err != nil {
		return run, fmt.Errorf("reading the run's reranked lists: %w", err)
	}
	run.Queries = int64(len(recs))
	for _, rec := range recs {
		run.Pairs += int64(len(rec.PairScores))
	}
	run.Rate = float64(run.Pairs) / run.WallS
	return run, nil
}
