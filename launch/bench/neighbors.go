package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/stirpipe/stirpipe/models/knn"
)

// neighborsConfig holds the neighbours benchmark's flags.
type neighborsConfig struct {
	Rows       int    `json:"rows"`
	Dim        int    `json:"dim"`
	K          int    `json:"k"`
	Seed       uint64 `json:"seed"`
	Threads    int    `json:"threads"`
	Reps       int    `json:"reps"`
	IndexReps  int    `json:"index_reps"`
	Files      int    `json:"embeddings_files"`
	ShardSize  int    `json:"shard_size"`
	Work       string `json:"work"`
	Library    string `json:"onnxruntime_lib,omitempty"`
	FAISS      bool   `json:"faiss"`
	Python     string `json:"python"`
	Script     string `json:"faiss_script"`
	OpenBLAS   string `json:"openblas_dir"`
	Stage      bool   `json:"stage"`
	Stir       string `json:"stir,omitempty"`
	GCTrace    bool   `json:"stage_gctrace"`
	ExactCheck int    `json:"exact_check"`
	JSON       string `json:"json"`
}

func (c neighborsConfig) validate() error {
	var errs []error
	if c.Rows < 2 {
		errs = append(errs, fmt.Errorf("--rows must be ≥ 2, got %d", c.Rows))
	}
	if c.Dim < 1 {
		errs = append(errs, fmt.Errorf("--dim must be ≥ 1, got %d", c.Dim))
	}
	if c.K < 1 || c.K >= c.Rows {
		errs = append(errs, fmt.Errorf("--k must be in [1, rows−1 = %d] (self is excluded), got %d", c.Rows-1, c.K))
	}
	if c.Threads < 1 {
		errs = append(errs, fmt.Errorf("--threads must be ≥ 1, got %d", c.Threads))
	}
	if c.Reps < 1 {
		errs = append(errs, fmt.Errorf("--reps must be ≥ 1, got %d", c.Reps))
	}
	if c.IndexReps < 0 {
		errs = append(errs, fmt.Errorf("--index_reps must be ≥ 0 (0 = skip SearchIndex), got %d", c.IndexReps))
	}
	if c.Files < 1 || c.Files > c.Rows {
		errs = append(errs, fmt.Errorf("--files must be in [1, rows], got %d", c.Files))
	}
	if c.ShardSize < 1 {
		errs = append(errs, fmt.Errorf("--shard_size must be ≥ 1, got %d", c.ShardSize))
	}
	if c.Work == "" {
		errs = append(errs, errors.New("--work is required: the directory for the data, binaries and results"))
	}
	if c.ExactCheck < 0 {
		errs = append(errs, fmt.Errorf("--exact_check must be ≥ 0, got %d", c.ExactCheck))
	}
	return errors.Join(errs...)
}

// budgetBytes is the neighbours stage's memory budget: one gallery shard of embeddings
// plus a fixed allowance for the runtime, Beam, ONNX Runtime and the query tile.
func (c neighborsConfig) budgetBytes() int64 {
	return int64(c.ShardSize)*int64(c.Dim)*4 + stageAllowance
}

// stageAllowance is the fixed part of the neighbours stage's memory budget (300 MB).
const stageAllowance = 300_000_000

// runNeighborsBench is `bench neighbors`:
//
//	bench neighbors --work out/bench
//
// On --rows seeded random unit vectors (SOP scale by default), written once to WORK/X.f32
// and as an embeddings output of --files files (every row a validation query and gallery
// item, ids in row order), it times the exact engine's SearchSelf and one-sided
// SearchIndex in this process, runs the FAISS reference script on X.f32 (with OpenBLAS,
// fetched into --openblas_dir when the system has none), compares the two engines' ids
// query by query (with exact float64 distances for every difference), and runs the real
// neighbours stage (stir neighbors on prism) as a child process for its wall time, peak RSS
// against the budget (one gallery shard + 300 MB) and lists. It exits 1 when a step fails,
// not when a target is missed: the table says PASS or FAIL.
func runNeighborsBench(ctx context.Context, args []string) int {
	var c neighborsConfig
	fs := flag.NewFlagSet("neighbors", flag.ContinueOnError)
	fs.IntVar(&c.Rows, "rows", 60502, "random unit vectors, every one a query and a gallery item (SOP's test split: 60,502)")
	fs.IntVar(&c.Dim, "dim", 384, "embedding dimension")
	fs.IntVar(&c.K, "k", 100, "neighbours per query (self excluded)")
	fs.Uint64Var(&c.Seed, "seed", 1, "random vectors seed")
	fs.IntVar(&c.Threads, "threads", 2, "cores of the engine, FAISS and the stage")
	fs.IntVar(&c.Reps, "reps", 3, "repetitions of the engine's SearchSelf and of FAISS")
	fs.IntVar(&c.IndexReps, "index_reps", -1, "repetitions of the one-sided SearchIndex (-1 = --reps, 0 = skip)")
	fs.IntVar(&c.Files, "files", 4, "files of the embeddings output the stage reads")
	fs.IntVar(&c.ShardSize, "shard_size", 20000, "gallery rows per shard of the stage (its memory budget: shard bytes + 300 MB)")
	fs.StringVar(&c.Work, "work", "out/bench", "work directory: X.f32 and the embeddings (generated once, reused), stir binary, logs, results JSON")
	fs.StringVar(&c.Library, "onnxruntime_lib", "", "ONNX Runtime shared library; empty: $STIR_ONNXRUNTIME_LIB, then .local/onnxruntime/")
	fs.BoolVar(&c.FAISS, "faiss", true, "run the FAISS reference")
	fs.StringVar(&c.Python, "python", "/usr/bin/python3", "Python with Debian's python3-faiss")
	fs.StringVar(&c.Script, "faiss_script", "/work/shared/anchors/faiss_flat.py", "the FAISS reference script")
	fs.StringVar(&c.OpenBLAS, "openblas_dir", ".local/openblas", "where libopenblas0-pthread is unpacked when the system has no OpenBLAS")
	fs.BoolVar(&c.Stage, "stage", true, "run the neighbours stage (stir neighbors on prism) as a child process")
	fs.StringVar(&c.Stir, "stir", "", "prebuilt stir binary; empty: go build -o WORK/stir ./launch/stir")
	fs.BoolVar(&c.GCTrace, "stage_gctrace", false, "diagnostic: run the stage with GODEBUG=gctrace=1 (heap sizes in its log)")
	fs.IntVar(&c.ExactCheck, "exact_check", 100, "queries whose lists differ from FAISS's to check against a float64 brute force")
	fs.StringVar(&c.JSON, "json", "", "results file; empty: WORK/bench-neighbors.json")
	setUsage(fs, "bench neighbors: the exact k-NN engine (models/knn) against FAISS IndexFlatIP on the same",
		"random unit vectors (SOP scale), and the neighbours stage's wall time and peak RSS.")
	validate := func() error {
		if c.IndexReps < 0 {
			c.IndexReps = c.Reps
		}
		return c.validate()
	}
	return runBench("neighbors", fs, args, &c.Work, &c.JSON, validate,
		func(log io.Writer) (*neighborsResult, error) { return benchNeighbors(ctx, c, log) }, printNeighborsReport)
}

// neighborsResult is everything one invocation measured; it is the JSON file.
type neighborsResult struct {
	Config neighborsConfig `json:"config"`
	runInfo
	Data  dataInfo   `json:"data"`
	Self  []timedRun `json:"engine_search_self"`
	Index []timedRun `json:"engine_search_index,omitempty"`
	// IndexEqualsSelf says SearchIndex returned the same lists as SearchSelf.
	IndexEqualsSelf *bool       `json:"search_index_equals_search_self,omitempty"`
	FAISS           *faissRun   `json:"faiss,omitempty"`
	VsFAISS         *idCompare  `json:"ids_vs_faiss,omitempty"`
	Stage           *stageRun   `json:"stage,omitempty"`
	Summary         nbrsSummary `json:"summary"`
}

// dataInfo describes the benchmark's vectors and where they are stored.
type dataInfo struct {
	File       string `json:"x_f32"`
	SHA256     string `json:"x_f32_sha256"`
	Reused     bool   `json:"x_f32_reused"`
	Embeddings string `json:"embeddings"`
	EmbReused  bool   `json:"embeddings_reused"`
	EmbFiles   int    `json:"embeddings_files"`
}

// timedRun is one timed in-process search.
type timedRun struct {
	Rep        int     `json:"rep"`
	WallS      float64 `json:"wall_s"`
	CPUS       float64 `json:"cpu_s"`
	OthersCPUS float64 `json:"others_cpu_s"`
	Load1      float64 `json:"load1_before"`
}

// nbrsSummary holds the figures the table prints.
type nbrsSummary struct {
	SelfWall  stat `json:"search_self_wall_s"`
	SelfCPU   stat `json:"search_self_cpu_s"`
	IndexWall stat `json:"search_index_wall_s"`
	IndexCPU  stat `json:"search_index_cpu_s"`
	// Ratio is the median SearchSelf wall over FAISS's median wall (target ≤ RatioTarget).
	Ratio      float64 `json:"ratio_self_over_faiss"`
	IndexRatio float64 `json:"ratio_index_over_faiss"`
	// GFLOPs is 2·N²·D / median wall: the full product's work, whatever the engine skips.
	SelfGFLOPs  float64 `json:"search_self_gflops"`
	FAISSGFLOPs float64 `json:"faiss_gflops"`
}

// ratioTarget is the engine/FAISS wall-time ratio the engine must reach.
const ratioTarget = 0.5

// benchNeighbors prepares the data and runs every measurement; log gets progress lines.
// It returns what was measured so far along with an error.
func benchNeighbors(ctx context.Context, c neighborsConfig, log io.Writer) (*neighborsResult, error) {
	res := &neighborsResult{Config: c, runInfo: startRun()}
	finish := func(err error) (*neighborsResult, error) {
		res.finish()
		res.summarize()
		return res, err
	}
	if err := os.MkdirAll(filepath.Join(c.Work, "logs"), 0o755); err != nil {
		return nil, err
	}
	x, data, err := prepareVectors(ctx, c, log)
	if err != nil {
		return nil, err
	}
	res.Data = *data
	bin, err := childStir(ctx, c.Stir, c.Stage, c.Work, log)
	if err != nil {
		return nil, err
	}

	// Engine.
	if res.ORTVersion, err = initORT(c.Library); err != nil {
		return nil, err
	}
	self, err := benchEngine(c, x, res, log)
	if err != nil {
		return finish(err)
	}

	// FAISS.
	if c.FAISS {
		f, err := runFAISS(ctx, c, log)
		res.FAISS = f
		if err != nil {
			return finish(err)
		}
		ids, err := readFAISSIDs(f.IDsFile, c.Rows, c.K)
		if err != nil {
			return finish(err)
		}
		fmt.Fprintln(log, "compare: engine lists vs FAISS ids …")
		cmp := compareWithFAISS(x, c.Dim, self, ids, c.K)
		cmp.exactCheck(x, c.Dim, self, c.ExactCheck)
		res.VsFAISS = &cmp
	}

	// Neighbours stage.
	if c.Stage {
		st, err := runStage(ctx, c, bin, data.Embeddings, log)
		res.Stage = st
		if err != nil {
			return finish(err)
		}
		fmt.Fprintln(log, "stage: comparing its lists with the engine's …")
		if err := st.compare(ctx, self); err != nil {
			return finish(err)
		}
	}
	return finish(nil)
}

// benchEngine times SearchSelf (c.Reps) and SearchIndex (c.IndexReps) over every row and
// returns SearchSelf's lists.
func benchEngine(c neighborsConfig, x []float32, res *neighborsResult, log io.Writer) ([][]knn.Neighbor, error) {
	ids := rowIDs(c.Rows)
	e, err := knn.NewEngine(knn.Options{K: c.K, Normalized: true, ExcludeSelf: true, Threads: c.Threads})
	if err != nil {
		return nil, err
	}
	defer e.Close()
	ix, err := knn.NewIndex(knn.Gallery{IDs: ids, Vectors: x, Dim: c.Dim})
	if err != nil {
		return nil, err
	}
	timed := func(rep int, search func() ([][]knn.Neighbor, error)) (timedRun, [][]knn.Neighbor, error) {
		runtime.GC() // the previous run's lists are garbage: collect them outside the timing
		r := timedRun{Rep: rep, Load1: load1()}
		busy0, cpu0, start := machineBusy(), cpuSeconds(), time.Now()
		lists, err := search()
		r.WallS = time.Since(start).Seconds()
		r.CPUS = cpuSeconds() - cpu0
		r.OthersCPUS = othersCPU(busy0, machineBusy(), r.CPUS)
		return r, lists, err
	}
	var self [][]knn.Neighbor
	for rep := 1; rep <= c.Reps; rep++ {
		r, lists, err := timed(rep, func() ([][]knn.Neighbor, error) { return e.SearchSelf(ix) })
		if err != nil {
			return nil, fmt.Errorf("SearchSelf: %w", err)
		}
		self = lists
		res.Self = append(res.Self, r)
		fmt.Fprintf(log, "rep %d: engine SearchSelf  %7.2f s, CPU %.1f s, others' CPU %.1f s\n", rep, r.WallS, r.CPUS, r.OthersCPUS)
	}
	q := knn.Query{IDs: ids, Vectors: x, Dim: c.Dim}
	for rep := 1; rep <= c.IndexReps; rep++ {
		r, lists, err := timed(rep, func() ([][]knn.Neighbor, error) { return e.SearchIndex(q, ix) })
		if err != nil {
			return nil, fmt.Errorf("SearchIndex: %w", err)
		}
		res.Index = append(res.Index, r)
		fmt.Fprintf(log, "rep %d: engine SearchIndex %7.2f s, CPU %.1f s, others' CPU %.1f s\n", rep, r.WallS, r.CPUS, r.OthersCPUS)
		if rep == 1 {
			eq := sameLists(self, lists)
			res.IndexEqualsSelf = &eq
		}
	}
	return self, nil
}

// sameLists reports whether two sets of neighbour lists are identical.
func sameLists(a, b [][]knn.Neighbor) bool {
	return slices.EqualFunc(a, b, func(x, y []knn.Neighbor) bool { return slices.Equal(x, y) })
}

func (r *neighborsResult) summarize() {
	var s nbrsSummary
	col := func(runs []timedRun, f func(timedRun) float64) []float64 {
		var out []float64
		for _, t := range runs {
			out = append(out, f(t))
		}
		return out
	}
	wall := func(t timedRun) float64 { return t.WallS }
	cpu := func(t timedRun) float64 { return t.CPUS }
	s.SelfWall, s.SelfCPU = newStat(col(r.Self, wall)), newStat(col(r.Self, cpu))
	s.IndexWall, s.IndexCPU = newStat(col(r.Index, wall)), newStat(col(r.Index, cpu))
	flops := 2 * float64(r.Config.Rows) * float64(r.Config.Rows) * float64(r.Config.Dim)
	s.SelfGFLOPs = div(flops, s.SelfWall.Median) / 1e9
	if r.FAISS != nil {
		med := r.FAISS.Result.WallMedS
		s.Ratio = div(s.SelfWall.Median, med)
		s.IndexRatio = div(s.IndexWall.Median, med)
		s.FAISSGFLOPs = div(flops, med) / 1e9
	}
	r.Summary = s
}

// printNeighborsReport writes the compact table.
func printNeighborsReport(w io.Writer, r *neighborsResult) {
	c, s := r.Config, r.Summary
	fmt.Fprintf(w, "\nneighbors benchmark: %d random unit vectors (seed %d), D=%d, K=%d, self excluded, %d threads\n",
		c.Rows, c.Seed, c.Dim, c.K, c.Threads)
	fmt.Fprintf(w, "  machine: %d CPUs, GOMAXPROCS %d, %s, ONNX Runtime %s; load average at start %s, at end %s\n",
		r.CPUs, r.GOMAXPROCS, r.GoVersion, r.ORTVersion, loadString(r.LoadStart), loadString(r.LoadEnd))
	reused := func(b bool) string {
		if b {
			return "reused"
		}
		return "written"
	}
	fmt.Fprintf(w, "  data: %s (%s, sha256 %.12s…); embeddings %s (%d files, %s)\n\n",
		r.Data.File, reused(r.Data.Reused), r.Data.SHA256, r.Data.Embeddings, r.Data.EmbFiles, reused(r.Data.EmbReused))

	fmt.Fprintf(w, "  %-52s %8s %8s %8s %8s %8s %8s\n", "full search, wall s", "median", "min", "max", "CPU s", "others", "GFLOP/s")
	row := func(name string, wall, cpu stat, others []timedRun) {
		var o []float64
		for _, t := range others {
			o = append(o, t.OthersCPUS)
		}
		fmt.Fprintf(w, "  %-52s %8.2f %8.2f %8.2f %8.1f %8.1f %8.1f\n", name, wall.Median, wall.Min, wall.Max, cpu.Median,
			newStat(o).Median, div(2*float64(c.Rows)*float64(c.Rows)*float64(c.Dim), wall.Median)/1e9)
	}
	if len(r.Self) > 0 {
		row(fmt.Sprintf("engine SearchSelf (models/knn, %d reps)", len(r.Self)), s.SelfWall, s.SelfCPU, r.Self)
	}
	if len(r.Index) > 0 {
		row(fmt.Sprintf("engine SearchIndex, one-sided: all vs all (%d reps)", len(r.Index)), s.IndexWall, s.IndexCPU, r.Index)
	}
	if f := r.FAISS; f != nil && f.Result.WallMedS > 0 {
		fmt.Fprintf(w, "  %-52s %8.2f %8.2f %8s %8s %8.1f %8.1f\n",
			fmt.Sprintf("FAISS %s IndexFlatIP (%d reps)", f.Result.Version, c.Reps), f.Result.WallMedS, f.Result.WallMinS, "-", "-", f.OthersCPUS, s.FAISSGFLOPs)
	}
	fmt.Fprintln(w, "  (CPU: the search's own CPU s; others: CPU s the rest of the machine used meanwhile; FAISS: others over its whole process;")
	fmt.Fprintln(w, "   GFLOP/s: 2·N²·D / median wall, the full product's work, though SearchSelf computes each inner product once)")
	if r.IndexEqualsSelf != nil {
		fmt.Fprintf(w, "  SearchIndex lists identical to SearchSelf's: %v\n", *r.IndexEqualsSelf)
	}
	if f := r.FAISS; f != nil {
		fmt.Fprintf(w, "\n  FAISS BLAS: %s\n", f.BLASSource)
		if f.LDLibraryPath != "" {
			fmt.Fprintf(w, "    LD_LIBRARY_PATH=%s\n", f.LDLibraryPath)
		}
		ct := f.CoreTypeEnv
		if ct == "" {
			ct = "unset"
		}
		kernel := "null (threadpoolctl not installed)"
		if len(f.Result.Kernel) > 0 {
			kernel = strings.Join(f.Result.Kernel, ",")
		}
		fmt.Fprintf(w, "    OPENBLAS_CORETYPE %s (as the environment has it); script's openblas_kernel: %s\n", ct, kernel)
		if p := f.Probe; p != nil {
			fmt.Fprintf(w, "    probe (python3 importing faiss, same environment): loaded %s", strings.Join(p.Libraries, ", "))
			if p.CoreName != "" {
				fmt.Fprintf(w, "; OpenBLAS kernel %s (%s)", p.CoreName, strings.TrimSpace(p.Config))
			} else {
				fmt.Fprint(w, "; not OpenBLAS")
			}
			fmt.Fprintln(w)
		}
		if f.Line != "" {
			fmt.Fprintf(w, "    script: %s\n", f.Line)
		}
		if s.Ratio > 0 {
			verdict := "PASS"
			if s.Ratio > ratioTarget {
				verdict = "FAIL"
			}
			fmt.Fprintf(w, "\n  ratio engine SearchSelf / FAISS (median walls)     %6.3f   target ≤ %.1f: %s\n", s.Ratio, ratioTarget, verdict)
			if s.IndexRatio > 0 {
				fmt.Fprintf(w, "  ratio engine SearchIndex / FAISS (median walls)    %6.3f\n", s.IndexRatio)
			}
		}
	}
	if v := r.VsFAISS; v != nil {
		fmt.Fprintf(w, "\n  ids vs FAISS (%d queries × K=%d):\n", v.Queries, c.K)
		fmt.Fprintf(w, "    identical lists                 %6d\n", v.Identical)
		fmt.Fprintf(w, "    same set, other order           %6d   %d swapped positions: %d with equal float32 distances (the engine orders ties by id),\n",
			v.SameSet, v.Swaps, v.SwapsTied)
		fmt.Fprintf(w, "                                             %d within 1 float32 ulp, %d within FAISS's float32 bound; max exact gap %.3g\n",
			v.SwapsULP, v.SwapsBound, v.MaxSwapGap)
		fmt.Fprintf(w, "    different set                   %6d   %d ids only in FAISS (as many only in the engine): %d within 1 ulp of the engine's K-th\n",
			v.Different, v.OnlyFAISS, v.SetULP)
		fmt.Fprintf(w, "                                             exact distance, %d within FAISS's bound; max gap %.3g; rows the engine missed: %d\n",
			v.SetBound, v.MaxSetGap, v.EngineMissed)
		tie := "NO: some differences exceed float32 rounding"
		if v.allNearTies() {
			tie = "yes, every difference is a near-tie within float32 rounding"
		}
		fmt.Fprintf(w, "    near-ties (exact float64 gaps ≤ FAISS's float32 bound D·2⁻²⁴/d_K = %.3g): %s\n", v.Bound, tie)
		if v.ExactChecked > 0 {
			fmt.Fprintf(w, "    float64 brute force on %d differing queries, ordered by (float32 distance, row): engine exact on %d\n",
				v.ExactChecked, v.ExactMatches)
		}
		for _, e := range v.Examples {
			fmt.Fprintf(w, "      %s\n", e)
		}
	}
	if st := r.Stage; st != nil {
		fmt.Fprintf(w, "\n  neighbours stage (stir neighbors, prism, child process): --shard_size %d --k %d --search_threads %d\n", c.ShardSize, c.K, c.Threads)
		fmt.Fprintf(w, "    wall %.2f s, CPU %.1f s (user %.1f + sys %.1f), others' CPU %.1f s; log %s\n",
			st.WallS, st.UserS+st.SysS, st.UserS, st.SysS, st.OthersCPUS, st.Log)
		verdict := "PASS"
		if !st.Pass {
			verdict = "FAIL"
		}
		peakB := st.PeakRSSKiB * 1024
		fmt.Fprintf(w, "    peak RSS (VmHWM) %.1f MB (%d MiB); budget %d·%d·4 B + 300 MB = %.1f MB: %s (%.0f%% of budget)\n",
			float64(peakB)/1e6, st.PeakRSSKiB>>10, c.ShardSize, c.Dim, float64(st.BudgetB)/1e6, verdict, 100*div(float64(peakB), float64(st.BudgetB)))
		if st.Compared > 0 || st.MissingLists > 0 {
			fmt.Fprintf(w, "    lists vs the engine's SearchSelf: %d queries compared, ids differ on %d, distances on %d, %d queries without a list\n",
				st.Compared, st.IDsDiffer, st.DistsDiffer, st.MissingLists)
		}
	}
}
