package main

import (
	"github.com/stirpipe/stirpipe/models/ort/orttest"

	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stirpipe/stirpipe/models/imagemodel"
	"github.com/stirpipe/stirpipe/models/manifest"
	"github.com/stirpipe/stirpipe/schemas/catalog"
)

// tinyModel is the committed tiny embedder, relative to this package.
const tinyModel = "../../models/zoo/vit-tiny/embedder.json"

func TestMain(m *testing.M) { orttest.Main(m, "launch/bench") }

func TestNewStat(t *testing.T) {
	tests := []struct {
		name string
		in   []float64
		want stat
	}{
		{"empty", nil, stat{}},
		{"one", []float64{3}, stat{Median: 3, Min: 3, Max: 3, N: 1}},
		{"odd", []float64{5, 1, 3}, stat{Median: 3, Min: 1, Max: 5, N: 3}},
		{"even", []float64{4, 1, 3, 10}, stat{Median: 3.5, Min: 1, Max: 10, N: 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(tt.in)
			if got := newStat(tt.in); got != tt.want {
				t.Errorf("newStat(%v) = %+v, want %+v", tt.in, got, tt.want)
			}
			if !slices.Equal(in, tt.in) {
				t.Errorf("newStat reordered its input: %v, was %v", tt.in, in)
			}
		})
	}
}

// TestSteadyState checks the N/2N arithmetic on runs that follow wall = fixed + rows/rate.
func TestSteadyState(t *testing.T) {
	tests := []struct {
		name        string
		fixed, rate float64
		half, full  int64
		significant bool
	}{
		{"slow start", 4, 20, 256, 512, true},
		{"quick start", 0.2, 20, 256, 512, false},
		{"odd sizes", 3, 7.5, 100, 300, true},
		{"just under the threshold", 1.5, 7.5, 100, 300, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wall := func(rows int64) float64 { return tt.fixed + float64(rows)/tt.rate }
			r := &embedResult{}
			for rep := 1; rep <= 3; rep++ {
				jitter := float64(rep-2) * 0.01 // equal in both runs of a rep: cancels in the difference
				r.Pipeline = append(r.Pipeline, pipelineRun{Rep: rep, Rows: tt.full, childRun: childRun{WallS: wall(tt.full) + jitter}, Rate: float64(tt.full) / (wall(tt.full) + jitter)})
				r.PipelineHalf = append(r.PipelineHalf, pipelineRun{Rep: rep, Rows: tt.half, childRun: childRun{WallS: wall(tt.half) + jitter}})
				r.Loops = append(r.Loops, loopRun{Rep: rep, Variant: variantPlain, Rate: tt.rate})
			}
			r.summarize([]string{variantPlain})
			st := r.Summary.Steady
			if st == nil {
				t.Fatal("no steady-state summary")
			}
			if math.Abs(st.Rate.Median-tt.rate) > 1e-9 || math.Abs(st.Rate.Max-tt.rate) > 1e-9 {
				t.Errorf("steady rate %+v, want %v", st.Rate, tt.rate)
			}
			if math.Abs(st.FixedS.Median-tt.fixed) > 1e-9 {
				t.Errorf("fixed cost %+v, want %v", st.FixedS, tt.fixed)
			}
			if math.Abs(st.Ratio-1) > 1e-9 {
				t.Errorf("steady ratio to the loop %v, want 1", st.Ratio)
			}
			if st.Significant != tt.significant {
				t.Errorf("significant = %v (share %.3f), want %v", st.Significant, st.FixedShare, tt.significant)
			}
			wantRatio := float64(tt.full) / wall(tt.full) / tt.rate
			if math.Abs(r.Summary.Ratio-wantRatio) > 1e-9 {
				t.Errorf("end-to-end ratio %v, want %v", r.Summary.Ratio, wantRatio)
			}
		})
	}
}

func TestPrepareCatalog(t *testing.T) {
	work := t.TempDir()
	var log bytes.Buffer
	bc, err := prepareCatalog(work, 22, 48, 3, &log)
	if err != nil {
		t.Fatal(err)
	}
	if bc.Reused {
		t.Error("first call reports a reused catalog")
	}
	// 22 images round up to 6 products of 4 views; the half holds products 0–2.
	if bc.FullRows != 24 || bc.HalfRows != 12 {
		t.Errorf("rows full %d, half %d; want 24 and 12", bc.FullRows, bc.HalfRows)
	}
	for _, tt := range []struct {
		file      string
		rows      int
		maxLabels int64
	}{{bc.Full, 24, 6}, {bc.Half, 12, 3}} {
		cat, err := catalog.Load(context.Background(), tt.file, catalog.Options{Root: bc.Dir})
		if err != nil {
			t.Fatalf("%s does not load as a catalog: %v", tt.file, err)
		}
		if len(cat.Rows) != tt.rows {
			t.Errorf("%s: %d rows, want %d", tt.file, len(cat.Rows), tt.rows)
		}
		for _, r := range cat.Rows {
			if r.Label >= tt.maxLabels || !strings.HasSuffix(r.Path, ".jpg") || r.HasBox {
				t.Errorf("%s line %d: label %d, path %s, box %v; want a label < %d and an unboxed JPEG", tt.file, r.Line, r.Label, r.Path, r.HasBox, tt.maxLabels)
			}
		}
	}
	again, err := prepareCatalog(work, 22, 48, 3, &log)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Reused || again.FullRows != 24 {
		t.Errorf("second call: reused %v, rows %d; want a reused catalog of 24 rows", again.Reused, again.FullRows)
	}
	// Other options live in another directory; a stale stamp regenerates.
	if err := os.WriteFile(filepath.Join(bc.Dir, stampFile), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	regen, err := prepareCatalog(work, 22, 48, 3, &log)
	if err != nil {
		t.Fatal(err)
	}
	if regen.Reused {
		t.Error("a catalog with a stale stamp was reused")
	}
}

func TestWriteHalfErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, csv, want string
	}{
		{"no label column", "path,split\nimages/a.jpg,train\n", "no label column"},
		{"bad label", "label,path\nx,images/a.jpg\n", "line 2, column label"},
		{"no rows", "label,path\n", "no rows"},
		{"nothing below", "label,path\n5,images/a.jpg\n", "no rows with a label below"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_")+".csv")
			if err := os.WriteFile(src, []byte(tt.csv), 0o644); err != nil {
				t.Fatal(err)
			}
			_, _, err := writeHalf(src, src+".half", 2)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("writeHalf error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// TestLoops checks that every loop variant embeds every image, and that decoding each
// batch from the files gives the same embeddings as feeding the pre-decoded tensors.
func TestLoops(t *testing.T) {
	ctx := context.Background()
	bc, err := prepareCatalog(t.TempDir(), 19, 64, 5, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := manifest.Load(tinyModel)
	if err != nil {
		t.Fatal(err)
	}
	c := embedConfig{modelRun: modelRun{Threads: 1, InterOp: 1, GraphOpt: "all"}, MaxMP: 40, MaxFileMB: 64}
	e, err := imagemodel.OpenEmbedder(m, c.runtime())
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	dec, err := decodeAll(ctx, bc.Full, m, c.limits())
	if err != nil {
		t.Fatal(err)
	}
	if dec.N != bc.FullRows || dec.DecodeS <= 0 || dec.PrepS <= 0 {
		t.Fatalf("decoded %d images (decode %v s, preprocess %v s), want %d with positive costs", dec.N, dec.DecodeS, dec.PrepS, bc.FullRows)
	}
	const bs = 3 // 20 images: six full batches and a partial one
	tests := []struct {
		name   string
		fw     forward
		decode bool
	}{
		{variantPlain, e.EmbedInto, false},
		{variantDecode, e.EmbedInto, true},
	}
	var want []float32
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []float32
			var sizes []int
			record := func(dst, batch []float32, n int) error {
				err := tt.fw(dst, batch, n)
				got = append(got, dst...) // one batch in flight at a time: calls come in order
				sizes = append(sizes, n)
				return err
			}
			r, err := runLoop(tt.name, record, dec, m.Dim, bs, tt.decode)
			if err != nil {
				t.Fatal(err)
			}
			if r.Images != dec.N || r.WallS <= 0 || math.Abs(r.Rate-float64(dec.N)/r.WallS) > 1e-9 {
				t.Errorf("run %+v: want %d images at images/wall", r, dec.N)
			}
			if want := []int{3, 3, 3, 3, 3, 3, 2}; !slices.Equal(sizes, want) {
				t.Errorf("batch sizes %v, want %v", sizes, want)
			}
			if len(got) != dec.N*m.Dim {
				t.Fatalf("%d output values, want %d", len(got), dec.N*m.Dim)
			}
			for i := 0; i < dec.N; i++ {
				if err := e.Check(got[i*m.Dim : (i+1)*m.Dim]); err != nil {
					t.Errorf("image %d: %v", i, err)
				}
			}
			if want == nil {
				want = got
				return
			}
			for i := range got {
				if math.Abs(float64(got[i]-want[i])) > 1e-5 {
					t.Fatalf("value %d (image %d) = %v, the plain loop gave %v", i, i/m.Dim, got[i], want[i])
				}
			}
		})
	}
}

// TestBenchEmbedEndToEnd runs the whole benchmark on the tiny model: build stir, run the
// pipeline as a child process, the loops, the summary and the JSON file.
func TestBenchEmbedEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the stir program")
	}
	work := t.TempDir()
	var log bytes.Buffer
	c := embedConfig{Model: tinyModel, Images: 16, Size: 64, Seed: 1, BatchSize: 4,
		modelRun: modelRun{Work: work, Reps: 2, Threads: 1, InterOp: 1, GraphOpt: "all", Pipeline: true, JSON: filepath.Join(work, "r.json")},
		Steady:   true, DecodeLoop: true, Warmup: false, MaxMP: 40, MaxFileMB: 64}
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	res, err := benchEmbed(context.Background(), c, &log)
	if err != nil {
		t.Fatalf("%v\nlog:\n%s", err, log.String())
	}
	if len(res.Pipeline) != 2 || len(res.PipelineHalf) != 2 || len(res.Loops) != 4 {
		t.Fatalf("%d pipeline, %d half and %d loop runs; want 2, 2 and 4", len(res.Pipeline), len(res.PipelineHalf), len(res.Loops))
	}
	for _, p := range append(slices.Clone(res.Pipeline), res.PipelineHalf...) {
		if p.WallS <= 0 || p.MaxRSSKiB <= 0 || p.UserS <= 0 || p.Batches == 0 || p.PrepareS <= 0 || p.PrepareS >= p.WallS {
			t.Errorf("pipeline run %+v: want a positive wall, RSS, CPU, batch count, and the preflight inside the wall", p)
		}
	}
	for _, p := range res.Pipeline {
		// wait4's figure is the larger of the child's peak and this process's at the exec
		// (the kernel's two counters may differ by a few pages).
		if p.MaxRSSKiB > p.RusageMaxRSSKiB+p.RusageMaxRSSKiB/50 {
			t.Errorf("child VmHWM %d KiB exceeds wait4's ru_maxrss %d KiB", p.MaxRSSKiB, p.RusageMaxRSSKiB)
		}
	}
	if res.Pipeline[0].Rows != 16 || res.PipelineHalf[0].Rows != 8 {
		t.Errorf("embedded %d and %d rows, want 16 and 8", res.Pipeline[0].Rows, res.PipelineHalf[0].Rows)
	}
	if s := res.Summary; s.Ratio <= 0 || s.PipelineRSSMiB.Min <= 0 || len(s.Loops) != 2 || s.Steady == nil {
		t.Errorf("summary %+v: want a ratio, RSS, two loop variants and a steady-state block", s)
	}
	var out bytes.Buffer
	printReport(&out, res)
	checkReport(t, out.String(), "pipeline, end to end", "plain loop, pre-decoded tensors", "ratio pipeline / plain loop", "peak RSS", "load average at start", "STEADY-STATE")
	back := jsonRoundTrip(t, c.JSON, res)
	if back.Summary.Ratio != res.Summary.Ratio || len(back.Pipeline) != 2 || back.Config.Model != tinyModel {
		t.Errorf("results JSON round trip lost data: %+v", back.Summary)
	}
}

// TestFlags: every benchmark refuses bad flags with exit code 2, and --help exits 0.
func TestFlags(t *testing.T) {
	runs := map[string]func(context.Context, []string) int{"embed": runEmbed, "neighbors": runNeighborsBench, "rerank": runRerankBench, "refresh": runRefreshBench}
	tests := []struct {
		bench, name string
		args        []string
		code        int
	}{
		{"embed", "help", []string{"--help"}, 0},
		{"embed", "stray argument", []string{"extra"}, 2},
		{"embed", "bad reps", []string{"--reps", "0"}, 2},
		{"embed", "bad graph opt", []string{"--graph_opt", "most"}, 2},
		{"embed", "unknown flag", []string{"--nope"}, 2},
		{"embed", "negative quiet reps", []string{"--quiet_reps", "-1"}, 2},
		{"embed", "max reps below quiet reps", []string{"--quiet_reps", "4", "--max_reps", "3"}, 2},
		{"embed", "quiet reps without pipeline", []string{"--quiet_reps", "2", "--pipeline=false"}, 2},
		{"neighbors", "help", []string{"--help"}, 0},
		{"neighbors", "stray argument", []string{"extra"}, 2},
		{"neighbors", "bad reps", []string{"--reps", "0"}, 2},
		{"neighbors", "k too large", []string{"--rows", "10", "--k", "10"}, 2},
		{"neighbors", "bad files", []string{"--files", "0"}, 2},
		{"neighbors", "unknown flag", []string{"--nope"}, 2},
		{"rerank", "help", []string{"--help"}, 0},
		{"rerank", "stray argument", []string{"extra"}, 2},
		{"rerank", "top_n 1", []string{"--top_n", "1"}, 2},
		{"rerank", "k below top_n", []string{"--k", "3", "--top_n", "5"}, 2},
		{"rerank", "bad batch", []string{"--pair_batch", "0"}, 2},
		{"rerank", "too few images", []string{"--images", "4"}, 2},
		{"rerank", "max reps below quiet reps", []string{"--quiet_reps", "4", "--max_reps", "3"}, 2},
		{"rerank", "quiet reps without pipeline", []string{"--quiet_reps", "2", "--pipeline=false"}, 2},
		{"rerank", "bad graph opt", []string{"--graph_opt", "most"}, 2},
		{"refresh", "help", []string{"--help"}, 0},
		{"refresh", "bad reps", []string{"--reps", "0"}, 2},
		{"refresh", "too few products", []string{"--products", "3"}, 2},
		{"refresh", "stray argument", []string{"extra"}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.bench+" "+tt.name, func(t *testing.T) {
			if got := runs[tt.bench](context.Background(), tt.args); got != tt.code {
				t.Errorf("%s bench %q = %d, want %d", tt.bench, tt.args, got, tt.code)
			}
		})
	}
}

// TestQuiet checks that repetitions disturbed by other processes drop out of the quiet
// summary, whichever of their runs was disturbed.
func TestQuiet(t *testing.T) {
	const cpus = 2
	run := func(rep int, rows int64, wall, others float64) pipelineRun {
		return pipelineRun{Rep: rep, Rows: rows, Rate: float64(rows) / wall, childRun: childRun{WallS: wall, OthersCPUS: others}}
	}
	tests := []struct {
		name      string
		pipe      []pipelineRun
		half      []pipelineRun
		loopOther []float64 // others' CPU during each rep's loop run of 10 s
		wantReps  []int
	}{
		{"all quiet", []pipelineRun{run(1, 100, 10, 0), run(2, 100, 11, 0.5)}, nil, []float64{0, 0.9}, []int{1, 2}},
		{"busy pipeline", []pipelineRun{run(1, 100, 10, 1.1), run(2, 100, 10, 0)}, nil, []float64{0, 0}, []int{2}},
		{"busy loop", []pipelineRun{run(1, 100, 10, 0), run(2, 100, 10, 0)}, nil, []float64{0, 5}, []int{1}},
		{"busy half", []pipelineRun{run(1, 100, 10, 0), run(2, 100, 10, 0)}, []pipelineRun{run(1, 50, 6, 3), run(2, 50, 6, 0)}, []float64{0, 0}, []int{2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &embedResult{runInfo: runInfo{CPUs: cpus}, Pipeline: tt.pipe, PipelineHalf: tt.half}
			for i, o := range tt.loopOther {
				r.Loops = append(r.Loops, loopRun{Rep: i + 1, Variant: variantPlain, WallS: 10, Rate: 12, OthersCPUS: o},
					loopRun{Rep: i + 1, Variant: variantDecode, WallS: 10, Rate: 11, OthersCPUS: 100})
			}
			q := r.quiet()
			if !slices.Equal(q.Reps, tt.wantReps) {
				t.Fatalf("quiet reps %v, want %v", q.Reps, tt.wantReps)
			}
			var rates []float64
			for _, p := range tt.pipe {
				if slices.Contains(tt.wantReps, p.Rep) {
					rates = append(rates, p.Rate)
				}
			}
			if want := newStat(rates); q.PipelineRate != want || math.Abs(q.Ratio-want.Median/12) > 1e-12 {
				t.Errorf("quiet pipeline %+v ratio %v, want %+v and ratio %v", q.PipelineRate, q.Ratio, want, want.Median/12)
			}
			if tt.half != nil && q.SteadyRate.N != len(tt.wantReps) {
				t.Errorf("steady-state estimates from %d reps, want %d", q.SteadyRate.N, len(tt.wantReps))
			}
		})
	}
}

func TestReadHWM(t *testing.T) {
	v, ok := readHWM("/proc/self/status")
	if !ok || v <= 0 || v > selfMaxRSSKiB()+1024 {
		t.Errorf("readHWM(/proc/self/status) = %d, %v; want a positive peak near getrusage's %d KiB", v, ok, selfMaxRSSKiB())
	}
	dir := t.TempDir()
	for _, tt := range []struct{ name, text string }{
		{"no field", "Name:\tx\nVmRSS:\t 12 kB\n"},
		{"not a number", "VmHWM:\t many kB\n"},
	} {
		p := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_"))
		if err := os.WriteFile(p, []byte(tt.text), 0o644); err != nil {
			t.Fatal(err)
		}
		if v, ok := readHWM(p); ok {
			t.Errorf("%s: readHWM = %d, true; want false", tt.name, v)
		}
	}
	if _, ok := readHWM(filepath.Join(dir, "missing")); ok {
		t.Error("readHWM of a missing file reports a value")
	}
}

// checkReport fails t for each of wants that the printed report lacks.
func checkReport(t *testing.T, report string, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
}

// jsonRoundTrip writes res to path as the benchmark does and decodes it back.
func jsonRoundTrip[T any](t *testing.T, path string, res *T) T {
	t.Helper()
	if err := writeJSON(path, res); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var back T
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatalf("results JSON does not decode: %v", err)
	}
	return back
}
