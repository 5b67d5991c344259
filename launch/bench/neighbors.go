package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/stirpipe/stirpipe/models/knn"
	"github.com/stirpipe/stirpipe/models/ort"
	"github.com/stirpipe/stirpipe/pipelines"
	"github.com/stirpipe/stirpipe/schemas/catalog"
	"github.com/stirpipe/stirpipe/schemas/embeddings"
	"github.com/stirpipe/stirpipe/schemas/lists"
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
	bin := c.Stir
	if bin == "" && c.Stage {
		if bin, err = buildStir(ctx, c.Work, log); err != nil {
			return nil, err
		}
	}

	// Engine.
	if err := ort.Init(c.Library); err != nil {
		return nil, err
	}
	res.ORTVersion = ort.Version()
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

// rowIDs returns the item ids of rows 0…n−1: "i%06d", so that id order is row order.
func rowIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = rowID(i)
	}
	return ids
}

func rowID(row int) string { return fmt.Sprintf("i%06d", row) }

// parseRowID inverts rowID.
func parseRowID(id string) (int, error) {
	s, ok := strings.CutPrefix(id, "i")
	n, err := strconv.Atoi(s)
	if !ok || err != nil || n < 0 {
		return 0, fmt.Errorf("item id %q is not i<row>", id)
	}
	return n, nil
}

// vectorsMeta describes X.f32 in its side file, so that a file from other options is not
// reused.
type vectorsMeta struct {
	Rows      int    `json:"rows"`
	Dim       int    `json:"dim"`
	Seed      uint64 `json:"seed"`
	Generator string `json:"generator"`
}

// generatorName names randomVectors' method; change it when the method changes.
const generatorName = "pcg(seed,0x5eed) normal, float64 L2-normalised, rounded to float32"

// randomVectors returns n unit vectors of dimension d, row-major: Gaussian components from a
// PCG seeded with seed, normalised in float64, then rounded to float32.
func randomVectors(n, d int, seed uint64) []float32 {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	x := make([]float32, n*d)
	row := make([]float64, d)
	for i := range n {
		var sq float64
		for j := range row {
			row[j] = rng.NormFloat64()
			sq += row[j] * row[j]
		}
		inv := 1 / math.Sqrt(sq)
		for j, v := range row {
			x[i*d+j] = float32(v * inv)
		}
	}
	return x
}

// encodeF32 returns x as little-endian float32 bytes.
func encodeF32(x []float32) []byte {
	b := make([]byte, 4*len(x))
	for i, v := range x {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

// decodeF32 parses little-endian float32 bytes.
func decodeF32(b []byte) []float32 {
	x := make([]float32, len(b)/4)
	for i := range x {
		x[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return x
}

// writeAtomic writes data to path through a temporary file and a rename.
func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// prepareVectors returns the benchmark's vectors: WORK/X.f32 when its side file says it was
// generated with these options, else generated and written. It also makes sure the
// embeddings output of the same vectors exists.
func prepareVectors(ctx context.Context, c neighborsConfig, log io.Writer) ([]float32, *dataInfo, error) {
	info := &dataInfo{File: filepath.Join(c.Work, "X.f32"), EmbFiles: c.Files}
	want := vectorsMeta{Rows: c.Rows, Dim: c.Dim, Seed: c.Seed, Generator: generatorName}
	metaPath := info.File + ".json"
	var raw []byte
	if mb, err := os.ReadFile(metaPath); err == nil {
		var got vectorsMeta
		if json.Unmarshal(mb, &got) == nil && got == want {
			if b, err := os.ReadFile(info.File); err == nil && len(b) == 4*c.Rows*c.Dim {
				raw, info.Reused = b, true
			}
		}
	}
	var x []float32
	if raw != nil {
		x = decodeF32(raw)
		fmt.Fprintf(log, "data: reusing %s (%d × %d, seed %d)\n", info.File, c.Rows, c.Dim, c.Seed)
	} else {
		fmt.Fprintf(log, "data: generating %d random unit vectors of dimension %d (seed %d) into %s …\n", c.Rows, c.Dim, c.Seed, info.File)
		x = randomVectors(c.Rows, c.Dim, c.Seed)
		raw = encodeF32(x)
		if err := writeAtomic(info.File, raw); err != nil {
			return nil, nil, fmt.Errorf("writing the vectors: %w", err)
		}
		if err := writeJSON(metaPath, want); err != nil {
			return nil, nil, err
		}
	}
	sum := sha256.Sum256(raw)
	info.SHA256 = hex.EncodeToString(sum[:])
	info.Embeddings = filepath.Join(c.Work, fmt.Sprintf("embeddings-%dx%d-seed%d-%dfiles", c.Rows, c.Dim, c.Seed, c.Files))
	reused, err := prepareEmbeddings(ctx, info.Embeddings, x, c.Dim, c.Files, info.File, info.SHA256)
	if err != nil {
		return nil, nil, err
	}
	info.EmbReused = reused
	if reused {
		fmt.Fprintf(log, "data: reusing the embeddings output %s\n", info.Embeddings)
	} else {
		fmt.Fprintf(log, "data: wrote the embeddings output %s (%d files)\n", info.Embeddings, c.Files)
	}
	return x, info, nil
}

// vectorsProvenance is the embeddings provenance of the benchmark's vectors; the catalog
// snapshot is the SHA-256 of X.f32, so that an output of other vectors is not reused.
func vectorsProvenance(dim int, file, sha string) embeddings.Provenance {
	return embeddings.Provenance{ModelName: "random-unit-vectors", Dim: dim, Normalized: true,
		Distance: "euclidean", CatalogURI: file, CatalogSnapshot: "sha256:" + sha,
		Producer: "stirpipe bench neighbors"}
}

// vectorRecord is row i as an embeddings record: a validation row that is both a query and
// a gallery item (Stanford Online Products style), labelled as products of 5 views.
func vectorRecord(x []float32, dim, i int) embeddings.Record {
	id := rowID(i)
	return embeddings.Record{
		Row: catalog.Row{ID: id, Line: int64(i) + 2, Label: int64(i / 5), Path: "random/" + id + ".jpg",
			Split: catalog.SplitValidation, IsQuery: true, IsGallery: true},
		Embedding: x[i*dim : (i+1)*dim],
	}
}

// prepareEmbeddings writes x as an embeddings output of files shards of consecutive rows
// (so that manifest order, file order and id order are all row order), unless dir already
// holds that output. It reports whether it was reused.
func prepareEmbeddings(ctx context.Context, dir string, x []float32, dim, files int, file, sha string) (bool, error) {
	prov := vectorsProvenance(dim, file, sha)
	n := len(x) / dim
	if m, err := embeddings.ReadManifest(ctx, dir); err == nil &&
		m.Rows == int64(n) && len(m.Shards) == files && m.Provenance == prov {
		return true, nil
	}
	if err := os.RemoveAll(dir); err != nil {
		return false, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, err
	}
	per := (n + files - 1) / files
	var infos []embeddings.ShardInfo
	for s := range files {
		lo, hi := s*per, min((s+1)*per, n)
		recs := make([]embeddings.Record, 0, hi-lo)
		for i := lo; i < hi; i++ {
			recs = append(recs, vectorRecord(x, dim, i))
		}
		info, err := embeddings.WriteShard(ctx, filepath.Join(dir, embeddings.ShardName(s, files)), recs, prov)
		if err != nil {
			return false, err
		}
		infos = append(infos, info)
	}
	return false, embeddings.WriteManifest(ctx, dir, embeddings.NewManifest(prov, infos))
}

// faissResult is the JSON line faiss_flat.py prints.
type faissResult struct {
	Engine   string   `json:"engine"`
	Version  string   `json:"faiss"`
	N        int      `json:"n"`
	Queries  int      `json:"queries"`
	D        int      `json:"d"`
	K        int      `json:"k"`
	Threads  int      `json:"threads"`
	WallMinS float64  `json:"wall_min_s"`
	WallMedS float64  `json:"wall_med_s"`
	GFLOPs   float64  `json:"gflops"`
	Kernel   []string `json:"openblas_kernel"`
	CoreType *string  `json:"OPENBLAS_CORETYPE"`
}

// blasProbe is what the BLAS probe found in a Python process that imported faiss.
type blasProbe struct {
	Libraries []string `json:"blas_libraries"`
	CoreName  string   `json:"openblas_corename"`
	Config    string   `json:"openblas_config"`
}

// faissRun is the FAISS reference run: the script's figures and the process around it.
type faissRun struct {
	Result  faissResult `json:"result"`
	Line    string      `json:"json_line"`
	Command string      `json:"command"`
	// LDLibraryPath is what the bench set, "" when the system's OpenBLAS is used.
	LDLibraryPath string `json:"ld_library_path,omitempty"`
	// BLASSource says where FAISS's BLAS came from.
	BLASSource string `json:"blas_source"`
	// CoreTypeEnv is OPENBLAS_CORETYPE as the environment has it ("" = unset).
	CoreTypeEnv string     `json:"openblas_coretype_env"`
	Probe       *blasProbe `json:"blas_probe,omitempty"`
	ProcessS    float64    `json:"process_wall_s"`
	UserS       float64    `json:"user_s"`
	SysS        float64    `json:"sys_s"`
	OthersCPUS  float64    `json:"others_cpu_s"`
	IDsFile     string     `json:"ids_file"`
	Log         string     `json:"log"`
}

// systemOpenBLAS is where Debian's libopenblas0-pthread installs itself.
const systemOpenBLAS = "/usr/lib/x86_64-linux-gnu/openblas-pthread"

// openBLASPath returns the LD_LIBRARY_PATH that gives FAISS OpenBLAS instead of the netlib
// reference BLAS: "" when the system has OpenBLAS, else the library directory of
// libopenblas0-pthread unpacked under dir (apt-get download and dpkg -x when missing).
func openBLASPath(ctx context.Context, dir string, log io.Writer) (path, source string, err error) {
	if _, err := os.Stat(systemOpenBLAS); err == nil {
		return "", "system OpenBLAS (" + systemOpenBLAS + ")", nil
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", "", err
	}
	lib := filepath.Join(abs, "usr/lib/x86_64-linux-gnu/openblas-pthread")
	source = "libopenblas0-pthread unpacked in " + dir + ", through LD_LIBRARY_PATH"
	if _, err := os.Stat(filepath.Join(lib, "libblas.so.3")); err == nil {
		return lib, source, nil
	}
	fmt.Fprintf(log, "faiss: no OpenBLAS on the system; fetching libopenblas0-pthread into %s …\n", dir)
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return "", "", err
	}
	run := func(name string, args ...string) error {
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir = abs
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s %s (in %s): %w\n%s", name, strings.Join(args, " "), abs, err, tail(string(out), 20))
		}
		return nil
	}
	if err := run("apt-get", "download", "libopenblas0-pthread"); err != nil {
		return "", "", err
	}
	debs, _ := filepath.Glob(filepath.Join(abs, "libopenblas0-pthread_*.deb"))
	if len(debs) == 0 {
		return "", "", fmt.Errorf("apt-get download left no libopenblas0-pthread_*.deb in %s", abs)
	}
	slices.Sort(debs)
	if err := run("dpkg", "-x", debs[len(debs)-1], abs); err != nil {
		return "", "", err
	}
	if _, err := os.Stat(filepath.Join(lib, "libblas.so.3")); err != nil {
		return "", "", fmt.Errorf("unpacked %s but %s has no libblas.so.3: %w", debs[len(debs)-1], lib, err)
	}
	return lib, source, nil
}

// blasProbeScript imports faiss, as the reference script does, and reports the BLAS
// libraries mapped into the process and, for OpenBLAS, the kernel it chose.
const blasProbeScript = `import ctypes, json, faiss
libs = sorted({l.split()[-1] for l in open("/proc/self/maps") if "blas" in l.split()[-1] and "/" in l})
out = {"blas_libraries": libs}
for p in libs:
    try:
        lib = ctypes.CDLL(p)
        f = lib.openblas_get_corename; f.restype = ctypes.c_char_p
        g = lib.openblas_get_config; g.restype = ctypes.c_char_p
        out["openblas_corename"] = f().decode(); out["openblas_config"] = g().decode()
        break
    except (OSError, AttributeError):
        pass
print(json.dumps(out))
`

// runFAISS runs the reference script on WORK/X.f32 with the right BLAS and parses its line.
func runFAISS(ctx context.Context, c neighborsConfig, log io.Writer) (*faissRun, error) {
	f := &faissRun{CoreTypeEnv: os.Getenv("OPENBLAS_CORETYPE"),
		IDsFile: filepath.Join(c.Work, "faiss_ids.i64"), Log: filepath.Join(c.Work, "logs", "faiss.log")}
	lib, source, err := openBLASPath(ctx, c.OpenBLAS, log)
	if err != nil {
		return f, fmt.Errorf("FAISS needs OpenBLAS (the netlib reference BLAS is ~20× slower): %w", err)
	}
	f.LDLibraryPath, f.BLASSource = lib, source
	env := os.Environ()
	if lib != "" {
		if old := os.Getenv("LD_LIBRARY_PATH"); old != "" {
			lib += ":" + old
		}
		env = append(env, "LD_LIBRARY_PATH="+lib)
	}
	probe := exec.CommandContext(ctx, c.Python, "-c", blasProbeScript)
	probe.Env = env
	if out, err := probe.Output(); err == nil {
		var p blasProbe
		if json.Unmarshal(lastJSONLine(out), &p) == nil {
			f.Probe = &p
		}
	} else {
		fmt.Fprintf(log, "faiss: the BLAS probe failed (%v); the report relies on the script alone\n", err)
	}
	x := filepath.Join(c.Work, "X.f32")
	args := []string{c.Script, "--file", x, "--d", strconv.Itoa(c.Dim), "--k", strconv.Itoa(c.K),
		"--threads", strconv.Itoa(c.Threads), "--reps", strconv.Itoa(c.Reps), "--save-ids", f.IDsFile}
	f.Command = c.Python + " " + strings.Join(args, " ")
	if lib != "" {
		f.Command = "LD_LIBRARY_PATH=" + f.LDLibraryPath + " " + f.Command
	}
	fmt.Fprintf(log, "faiss: %s …\n", f.Command)
	if err := os.Remove(f.IDsFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		return f, err
	}
	cmd := exec.CommandContext(ctx, c.Python, args...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	busy0, start := machineBusy(), time.Now()
	runErr := cmd.Run()
	f.ProcessS = time.Since(start).Seconds()
	if ps := cmd.ProcessState; ps != nil {
		f.UserS, f.SysS = ps.UserTime().Seconds(), ps.SystemTime().Seconds()
	}
	f.OthersCPUS = othersCPU(busy0, machineBusy(), f.UserS+f.SysS)
	logText := fmt.Sprintf("$ %s\n--- stdout\n%s--- stderr\n%s", f.Command, stdout.String(), stderr.String())
	if err := os.WriteFile(f.Log, []byte(logText), 0o644); err != nil {
		return f, err
	}
	if runErr != nil {
		return f, fmt.Errorf("FAISS reference failed (%v); log %s:\n%s", runErr, f.Log, tail(logText, 20))
	}
	line := lastJSONLine(stdout.Bytes())
	if err := json.Unmarshal(line, &f.Result); err != nil {
		return f, fmt.Errorf("FAISS reference: no JSON result line in its output (%v); log %s", err, f.Log)
	}
	f.Line = string(line)
	if r := f.Result; r.N != c.Rows || r.Queries != c.Rows || r.D != c.Dim || r.K != c.K || r.WallMedS <= 0 {
		return f, fmt.Errorf("FAISS reference: result %s does not match the benchmark (n=%d, d=%d, k=%d)", line, c.Rows, c.Dim, c.K)
	}
	fmt.Fprintf(log, "faiss: median %.2f s, min %.2f s over %d rep(s); process %.1f s\n", f.Result.WallMedS, f.Result.WallMinS, c.Reps, f.ProcessS)
	return f, nil
}

// lastJSONLine returns the last line of out that starts with '{'.
func lastJSONLine(out []byte) []byte {
	var last []byte
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		if l := bytes.TrimSpace(sc.Bytes()); len(l) > 0 && l[0] == '{' {
			last = slices.Clone(l)
		}
	}
	return last
}

// readFAISSIDs reads the n×k little-endian int64 ids the reference script saved.
func readFAISSIDs(path string, n, k int) ([][]int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading FAISS's ids: %w", err)
	}
	if len(b) != 8*n*k {
		return nil, fmt.Errorf("%s holds %d bytes, want %d×%d int64 = %d", path, len(b), n, k, 8*n*k)
	}
	out := make([][]int, n)
	flat := make([]int, n*k)
	for i := range flat {
		flat[i] = int(int64(binary.LittleEndian.Uint64(b[8*i:])))
	}
	for i := range out {
		out[i] = flat[i*k : (i+1)*k : (i+1)*k]
	}
	return out, nil
}

// idCompare compares the engine's lists with FAISS's, query by query.
type idCompare struct {
	Queries int `json:"queries"`
	K       int `json:"k"`
	// Identical lists; SameSet: the same ids in another order; Different: other ids.
	Identical int `json:"identical"`
	SameSet   int `json:"same_set_other_order"`
	Different int `json:"different_set"`
	// Swaps counts the positions where same-set lists differ; SwapsTied those whose two exact
	// distances round to the same float32 (the engine then orders by id), SwapsULP those
	// whose exact gap is within one float32 ulp of the distance, SwapsBound those within
	// FAISS's float32 error bound.
	Swaps      int     `json:"swapped_positions"`
	SwapsTied  int     `json:"swaps_equal_in_float32"`
	SwapsULP   int     `json:"swaps_within_1ulp"`
	SwapsBound int     `json:"swaps_within_faiss_bound"`
	MaxSwapGap float64 `json:"max_swap_gap"`
	// OnlyFAISS counts ids FAISS lists and the engine does not (as many the other way);
	// their gap is |exact d − the engine's exact K-th distance|.
	OnlyFAISS int     `json:"ids_only_in_faiss"`
	SetULP    int     `json:"set_diffs_within_1ulp"`
	SetBound  int     `json:"set_diffs_within_faiss_bound"`
	MaxSetGap float64 `json:"max_set_gap"`
	// EngineMissed counts FAISS-only ids whose exact distance, rounded to float32, is
	// below the engine's K-th: rows the engine should have listed (0 when it is exact).
	EngineMissed int `json:"engine_missed"`
	// Bound is the float32 error bound of one FAISS distance (D·2⁻²⁴·(|q||g| = 1) in the
	// inner product, divided by the distance at the K-th place, the largest there).
	Bound float64 `json:"faiss_float32_bound"`
	// Examples show a few differing queries.
	Examples []string `json:"examples,omitempty"`
	// Exact: a float64 brute force, ordered by (float32 distance, row), on the first
	// ExactChecked differing queries; ExactMatches of them equal the engine's lists.
	ExactChecked int `json:"exact_checked"`
	ExactMatches int `json:"exact_matches"`
	// differing are the rows whose lists differ, for exactCheck.
	differing []int
}

// allNearTies reports whether every difference is within FAISS's float32 rounding.
func (c *idCompare) allNearTies() bool {
	return c.SwapsBound == c.Swaps && c.SetBound == c.OnlyFAISS
}

// exactDist is the Euclidean distance of rows a and b of x in float64.
func exactDist(x []float32, dim, a, b int) float64 {
	p, q := x[a*dim:(a+1)*dim], x[b*dim:(b+1)*dim]
	var s float64
	for i := range p {
		d := float64(p[i]) - float64(q[i])
		s += d * d
	}
	return math.Sqrt(s)
}

// ulp32 is the spacing of float32 values at v.
func ulp32(v float64) float64 {
	f := float32(v)
	return float64(math.Nextafter32(f, float32(math.Inf(1))) - f)
}

// compareWithFAISS classifies every query's list against FAISS's (rows of x as ids).
func compareWithFAISS(x []float32, dim int, engine [][]knn.Neighbor, faiss [][]int, k int) idCompare {
	c := idCompare{Queries: len(engine), K: k}
	eps32 := math.Ldexp(1, -24)
	for q, list := range engine {
		e := make([]int, len(list))
		for j, nb := range list {
			e[j] = nb.Index
		}
		f := faiss[q]
		if slices.Equal(e, f) {
			c.Identical++
			continue
		}
		c.differing = append(c.differing, q)
		if len(c.Examples) < 3 {
			j := 0
			for j < len(e) && j < len(f) && e[j] == f[j] {
				j++
			}
			hi := min(j+3, len(e), len(f))
			c.Examples = append(c.Examples, fmt.Sprintf("query %d from position %d: FAISS %v, engine %v", q, j, f[j:hi], e[j:hi]))
		}
		dK := exactDist(x, dim, q, e[len(e)-1])
		bound := float64(dim) * eps32 / dK // one float32 dot product's error, in distance
		c.Bound = max(c.Bound, bound)
		se, sf := slices.Clone(e), slices.Clone(f)
		slices.Sort(se)
		slices.Sort(sf)
		if slices.Equal(se, sf) {
			c.SameSet++
			for j := range e {
				if e[j] == f[j] {
					continue
				}
				de, df := exactDist(x, dim, q, e[j]), exactDist(x, dim, q, f[j])
				gap := math.Abs(de - df)
				c.Swaps++
				c.MaxSwapGap = max(c.MaxSwapGap, gap)
				if float32(de) == float32(df) {
					c.SwapsTied++
				}
				if gap <= ulp32(max(de, df)) {
					c.SwapsULP++
				}
				if gap <= bound {
					c.SwapsBound++
				}
			}
			continue
		}
		c.Different++
		inEngine := make(map[int]bool, len(e))
		for _, r := range e {
			inEngine[r] = true
		}
		for _, r := range f {
			if inEngine[r] {
				continue
			}
			d := exactDist(x, dim, q, r)
			gap := math.Abs(d - dK)
			c.OnlyFAISS++
			c.MaxSetGap = max(c.MaxSetGap, gap)
			if float32(d) < float32(dK) {
				c.EngineMissed++ // a strictly nearer row at the engine's own precision
			}
			if gap <= ulp32(max(d, dK)) {
				c.SetULP++
			}
			if gap <= bound {
				c.SetBound++
			}
		}
	}
	return c
}

// exactCheck recomputes up to n of the differing queries by a float64 brute force over
// every row, ordered by (float32 distance, row) as the engine promises, and counts those
// equal to the engine's lists.
func (c *idCompare) exactCheck(x []float32, dim int, engine [][]knn.Neighbor, n int) {
	type cand struct {
		d   float32
		row int
	}
	rows := len(x) / dim
	all := make([]cand, 0, rows)
	for _, q := range c.differing[:min(n, len(c.differing))] {
		all = all[:0]
		for r := range rows {
			if r != q {
				all = append(all, cand{float32(exactDist(x, dim, q, r)), r})
			}
		}
		k := len(engine[q])
		slices.SortFunc(all, func(a, b cand) int {
			if a.d != b.d {
				if a.d < b.d {
					return -1
				}
				return 1
			}
			return a.row - b.row
		})
		ok := k == min(c.K, len(all))
		for j, nb := range engine[q] {
			if !ok || all[j].row != nb.Index || all[j].d != nb.Dist {
				ok = false
				break
			}
		}
		c.ExactChecked++
		if ok {
			c.ExactMatches++
		}
	}
}

// stageRun is one run of the neighbours stage as a child process.
type stageRun struct {
	Command string  `json:"command"`
	Output  string  `json:"output"`
	WallS   float64 `json:"wall_s"`
	// PeakRSSKiB is the child's VmHWM, read every rssPoll while it ran.
	PeakRSSKiB int64   `json:"peak_rss_kib"`
	BudgetB    int64   `json:"budget_bytes"`
	Pass       bool    `json:"within_budget"`
	UserS      float64 `json:"user_s"`
	SysS       float64 `json:"sys_s"`
	OthersCPUS float64 `json:"others_cpu_s"`
	Load1      float64 `json:"load1_before"`
	Log        string  `json:"log"`
	// The stage's lists against the engine's SearchSelf lists, for every query.
	Compared     int `json:"queries_compared"`
	IDsDiffer    int `json:"queries_ids_differ"`
	DistsDiffer  int `json:"queries_distances_differ"`
	MissingLists int `json:"queries_without_list"`
}

// runStage runs stir neighbors on the embeddings output and measures its wall time and
// peak RSS.
func runStage(ctx context.Context, c neighborsConfig, bin, emb string, log io.Writer) (*stageRun, error) {
	st := &stageRun{Output: filepath.Join(c.Work, "neighbors-run"), BudgetB: c.budgetBytes(),
		Log: filepath.Join(c.Work, "logs", "neighbors-stage.log")}
	if err := os.RemoveAll(st.Output); err != nil {
		return st, err
	}
	args := []string{"neighbors", "--embeddings", emb, "--output", st.Output,
		"--shard_size", strconv.Itoa(c.ShardSize), "--k", strconv.Itoa(c.K),
		"--search_threads", strconv.Itoa(c.Threads), "--progress=false"}
	if c.Library != "" {
		args = append(args, "--onnxruntime_lib", c.Library)
	}
	st.Command = bin + " " + strings.Join(args, " ")
	fmt.Fprintf(log, "stage: %s …\n", st.Command)
	cmd := exec.CommandContext(ctx, bin, args...)
	if c.GCTrace {
		cmd.Env = append(os.Environ(), "GODEBUG=gctrace=1")
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	st.Load1 = load1()
	busy0, start := machineBusy(), time.Now()
	if err := cmd.Start(); err != nil {
		return st, fmt.Errorf("starting %s: %w", bin, err)
	}
	hwm := make(chan int64, 1)
	stop := make(chan struct{})
	go func() { hwm <- pollHWM(cmd.Process.Pid, stop) }()
	werr := cmd.Wait()
	st.WallS = time.Since(start).Seconds()
	close(stop)
	st.PeakRSSKiB = <-hwm
	if ps := cmd.ProcessState; ps != nil {
		st.UserS, st.SysS = ps.UserTime().Seconds(), ps.SystemTime().Seconds()
	}
	st.OthersCPUS = othersCPU(busy0, machineBusy(), st.UserS+st.SysS)
	st.Pass = st.PeakRSSKiB*1024 <= st.BudgetB
	logText := fmt.Sprintf("$ %s\n--- stdout\n%s--- stderr\n%s", st.Command, stdout.String(), stderr.String())
	if err := os.WriteFile(st.Log, []byte(logText), 0o644); err != nil {
		return st, err
	}
	if werr != nil {
		return st, fmt.Errorf("stir neighbors failed (%v); log %s:\n%s", werr, st.Log, tail(logText, 30))
	}
	fmt.Fprintf(log, "stage: %.2f s, peak RSS %d MiB, CPU %.1f s, others' CPU %.1f s\n",
		st.WallS, st.PeakRSSKiB>>10, st.UserS+st.SysS, st.OthersCPUS)
	return st, nil
}

// compare checks the stage's lists against the engine's SearchSelf lists, every query.
func (st *stageRun) compare(ctx context.Context, self [][]knn.Neighbor) error {
	r, err := lists.Open(ctx, filepath.Join(st.Output, pipelines.NeighborsDir))
	if err != nil {
		return err
	}
	seen := make([]bool, len(self))
	err = r.Each(ctx, func(rec lists.Record) error {
		q, err := parseRowID(rec.QueryID)
		if err != nil || q >= len(self) {
			return fmt.Errorf("stage output: query %q is not a benchmark row", rec.QueryID)
		}
		seen[q] = true
		st.Compared++
		want := self[q]
		if len(rec.NeighborIDs) != len(want) {
			st.IDsDiffer++
			return nil
		}
		idsOK, distOK := true, true
		for j, id := range rec.NeighborIDs {
			row, err := parseRowID(id)
			if err != nil || row != want[j].Index {
				idsOK = false
			}
			if rec.Distances[j] != want[j].Dist {
				distOK = false
			}
		}
		if !idsOK {
			st.IDsDiffer++
		}
		if !distOK {
			st.DistsDiffer++
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, ok := range seen {
		if !ok {
			st.MissingLists++
		}
	}
	return nil
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
