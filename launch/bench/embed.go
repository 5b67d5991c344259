package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/stirpipe/stirpipe/models/imageio"
	"github.com/stirpipe/stirpipe/models/imagemodel"
	"github.com/stirpipe/stirpipe/models/manifest"
)

// embedConfig holds the embed benchmark's flags.
type embedConfig struct {
	Model  string `json:"model"`
	Images int    `json:"images"`
	Size   int    `json:"size"`
	Seed   int64  `json:"seed"`
	modelRun
	BatchSize  int     `json:"batch_size"`
	Steady     bool    `json:"steady"`
	DecodeLoop bool    `json:"decode_loop"`
	Warmup     bool    `json:"warmup"`
	MaxMP      float64 `json:"max_megapixels"`
	MaxFileMB  int64   `json:"max_file_mb"`
}

func (c embedConfig) validate() error {
	var errs []error
	if c.Model == "" {
		errs = append(errs, errors.New("--model is required: the embedder manifest (.json) or ONNX file"))
	}
	if c.Images < 2 {
		errs = append(errs, fmt.Errorf("--images must be ≥ 2, got %d", c.Images))
	}
	if c.Size < 32 || c.Size > 4096 {
		errs = append(errs, fmt.Errorf("--size must be in [32, 4096] pixels, got %d", c.Size))
	}
	if c.BatchSize < 1 || c.BatchSize > 4096 {
		errs = append(errs, fmt.Errorf("--batch_size must be in [1, 4096], got %d", c.BatchSize))
	}
	return errors.Join(append(errs, c.modelRun.validate()...)...)
}

func (c embedConfig) limits() imageio.Limits {
	return imageio.Limits{MaxPixels: int64(c.MaxMP * 1e6), MaxBytes: c.MaxFileMB << 20}
}

func runEmbed(ctx context.Context, args []string) int {
	var c embedConfig
	fs := flag.NewFlagSet("embed", flag.ContinueOnError)
	fs.StringVar(&c.Model, "model", "models/zoo/vits16/embedder.json", "embedder manifest (or the ONNX file beside it)")
	fs.IntVar(&c.Images, "images", 512, "images in the benchmark catalog (rounded up to whole products of 4 views)")
	fs.IntVar(&c.Size, "size", 500, "nominal side of the generated JPEGs in pixels")
	fs.Int64Var(&c.Seed, "seed", 1, "synthetic catalog seed")
	fs.IntVar(&c.BatchSize, "batch_size", 8, "images per forward pass, in the pipeline and the loop")
	fs.BoolVar(&c.Steady, "steady", true, "also run the pipeline on the first half of the catalog: steady-state rate = extra images / extra wall")
	fs.BoolVar(&c.DecodeLoop, "decode_loop", true, "also time a loop that decodes each batch from the files on every core, then runs it (the pipeline's schedule, without Beam)")
	fs.BoolVar(&c.Warmup, "warmup", true, "run the pipeline once on the half catalog, untimed, before measuring (warms the page cache)")
	c.modelRun.register(fs, "embed", 10, "run the pipeline; false: only the loops (diagnostics)")
	fs.Float64Var(&c.MaxMP, "max_megapixels", 40, "image pixel limit (as stir embed's flag)")
	fs.Int64Var(&c.MaxFileMB, "max_file_mb", 64, "image file size limit in MiB (as stir embed's flag)")
	setUsage(fs, "bench embed: the embed pipeline's images/s (stir embed on prism, child process, start to exit)",
		"next to a plain ONNX Runtime loop over pre-decoded tensors with the same session settings.")
	return runBench("embed", fs, args, &c.Work, &c.JSON, func() error { return c.validate() },
		func(log io.Writer) (*embedResult, error) { return benchEmbed(ctx, c, log) }, printReport)
}

// benchEmbed prepares the inputs and runs every measurement; log gets progress lines.
func benchEmbed(ctx context.Context, c embedConfig, log io.Writer) (*embedResult, error) {
	res := &embedResult{Config: c, runInfo: startRun()}
	if err := os.MkdirAll(c.Work, 0o755); err != nil {
		return nil, err
	}
	m, err := loadModel(c.Model)
	if err != nil {
		return nil, err
	}
	if m.Kind != manifest.KindEmbedder {
		return nil, fmt.Errorf("--model %s is a %s model, want an embedder", c.Model, m.Kind)
	}
	res.ModelName, res.ModelDim = m.Name, m.Dim

	cat, err := prepareCatalog(c.Work, c.Images, c.Size, c.Seed, log)
	if err != nil {
		return nil, err
	}
	res.Catalog = *cat
	bin, err := childStir(ctx, c.Stir, c.Pipeline, c.Work, log)
	if err != nil {
		return nil, err
	}

	if res.ORTVersion, err = initORT(c.Library); err != nil {
		return nil, err
	}
	e, err := imagemodel.OpenEmbedder(m, c.runtime())
	if err != nil {
		return nil, err
	}
	defer e.Close()
	res.ModelSHA256 = e.ModelSHA256()
	// One forward pass on zeros, before anything else is allocated: this process's peak RSS
	// then is what the session itself costs, to compare with the pipeline's.
	warmIn := make([]float32, c.BatchSize*e.InputLen())
	warmOut := make([]float32, c.BatchSize*m.Dim)
	if err := e.EmbedInto(warmOut, warmIn, c.BatchSize); err != nil {
		return nil, fmt.Errorf("warm-up forward pass: %w", err)
	}
	res.SessionRSSMiB = float64(selfMaxRSSKiB()) / 1024
	fmt.Fprintf(log, "loop: decoding and preprocessing %d images up front …\n", cat.FullRows)
	dec, err := decodeAll(ctx, cat.Full, m, c.limits())
	if err != nil {
		return nil, err
	}
	if dec.N != cat.FullRows {
		return nil, fmt.Errorf("decoded %d images but the catalog has %d rows", dec.N, cat.FullRows)
	}
	res.Decode = decodeCost{Images: dec.N, ReadMS: 1000 * dec.ReadS / float64(dec.N),
		DecodeMS: 1000 * dec.DecodeS / float64(dec.N), PreprocessMS: 1000 * dec.PrepS / float64(dec.N)}

	type variant struct {
		name   string
		fw     forward
		decode bool
	}
	variants := []variant{{variantPlain, e.EmbedInto, false}}
	if c.DecodeLoop {
		variants = append(variants, variant{variantDecode, e.EmbedInto, true})
	}
	// One untimed forward pass per other session: the first run allocates.
	for _, v := range variants[1:] {
		if err := v.fw(warmOut, warmIn, c.BatchSize); err != nil {
			return nil, fmt.Errorf("warm-up forward pass (%s): %w", v.name, err)
		}
	}

	logs := filepath.Join(c.Work, "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return nil, err
	}
	child := func(rep int, catalogPath, tag string) (pipelineRun, error) {
		a := childArgs{Bin: bin, Model: c.Model, BatchSize: c.BatchSize, Flags: c.childFlags(), Catalog: catalogPath,
			Output: filepath.Join(c.Work, "run-"+tag),
			Log:    filepath.Join(logs, fmt.Sprintf("pipeline-%s-rep%d.log", tag, rep))}
		r, err := runPipeline(ctx, a)
		r.Rep = rep
		if err == nil {
			what := fmt.Sprintf("rep %d", rep)
			if rep == 0 {
				what = "warm-up"
			}
			fmt.Fprintf(log, "%s: pipeline %-4s      %4d images in %6.2f s = %6.2f images/s, peak RSS %d MiB, CPU %.1f s, others' CPU %.1f s\n",
				what, tag, r.Rows, r.WallS, r.Rate, r.MaxRSSKiB>>10, r.UserS+r.SysS, r.OthersCPUS)
		}
		return r, err
	}
	if c.Warmup && c.Pipeline {
		fmt.Fprintln(log, "warm-up: pipeline on the half catalog (untimed) …")
		if _, err := child(0, cat.Half, "half"); err != nil {
			return nil, err
		}
	}
	last := c.Reps
	if c.QuietReps > 0 {
		last = c.MaxReps
	}
	for rep := 1; rep <= last; rep++ {
		if rep > c.Reps && len(res.quiet().Reps) >= c.QuietReps {
			break
		}
		if c.Pipeline {
			p, err := child(rep, cat.Full, "full")
			if err != nil {
				return nil, err
			}
			if p.Rows != int64(cat.FullRows) {
				return nil, fmt.Errorf("pipeline embedded %d of %d rows; see %s", p.Rows, cat.FullRows, p.Log)
			}
			res.Pipeline = append(res.Pipeline, p)
		}
		for i, v := range variants {
			if c.Pipeline && c.Steady && i == 1 {
				// Alternate: full pipeline, plain loop, half pipeline, other loops.
				h, err := child(rep, cat.Half, "half")
				if err != nil {
					return nil, err
				}
				res.PipelineHalf = append(res.PipelineHalf, h)
			}
			r, err := runLoop(v.name, v.fw, dec, m.Dim, c.BatchSize, v.decode)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", v.name, err)
			}
			r.Rep = rep
			res.Loops = append(res.Loops, r)
			fmt.Fprintf(log, "rep %d: %-18s %4d images in %6.2f s = %6.2f images/s, CPU %.1f s, others' CPU %.1f s\n",
				rep, v.name, r.Images, r.WallS, r.Rate, r.CPUS, r.OthersCPUS)
		}
		if c.Pipeline && c.Steady && len(variants) == 1 {
			h, err := child(rep, cat.Half, "half")
			if err != nil {
				return nil, err
			}
			res.PipelineHalf = append(res.PipelineHalf, h)
		}
	}
	res.finish()
	var names []string
	for _, v := range variants {
		names = append(names, v.name)
	}
	res.summarize(names)
	return res, nil
}
