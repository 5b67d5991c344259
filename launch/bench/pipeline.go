package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/stirpipe/stirpipe/models/ort"
	"github.com/stirpipe/stirpipe/pipelines"
	"github.com/stirpipe/stirpipe/schemas/embeddings"
)

// stirPackage is the stir program's import path; go build finds it from anywhere in the module.
const stirPackage = "github.com/stirpipe/stirpipe/launch/stir"

// childStir returns the stir program a benchmark runs as a child process: given (--stir),
// or, when the benchmark needs one, a build of it in work.
func childStir(ctx context.Context, given string, needed bool, work string, log io.Writer) (string, error) {
	if given != "" || !needed {
		return given, nil
	}
	return buildStir(ctx, work, log)
}

// initORT loads the ONNX Runtime library in this process and returns its version.
func initORT(library string) (string, error) {
	if err := ort.Init(library); err != nil {
		return "", err
	}
	return ort.Version(), nil
}

// buildStir compiles the stir program into work, as a benchmark of the real binary.
func buildStir(ctx context.Context, work string, log io.Writer) (string, error) {
	bin, err := filepath.Abs(filepath.Join(work, "stir"))
	if err != nil {
		return "", err
	}
	fmt.Fprintf(log, "build: go build -o %s ./launch/stir\n", bin)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, stirPackage)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building stir (run bench inside the repository): %w", err)
	}
	return bin, nil
}

// pipelineRun is one timed run of the embed pipeline as a child process.
type pipelineRun struct {
	Rep     int     `json:"rep"`
	Catalog string  `json:"catalog"`
	Rows    int64   `json:"embedded_rows"`
	Rate    float64 `json:"images_per_s"`
	childRun
}

// childArgs are the stir embed flags of a benchmark run.
type childArgs struct {
	Bin, Model           string
	BatchSize            int
	Catalog, Output, Log string
	Flags                []string // modelRun.childFlags
}

var batchesLine = regexp.MustCompile(`(?m)^\s*batches\s+(\d+)\s+mean\s+([0-9.]+)\s+ms`)

// childRun is one timed run of a stir job as a child process.
type childRun struct {
	WallS float64 `json:"wall_s"`
	// MaxRSSKiB is the child's peak resident set in KiB: the largest VmHWM read from
	// /proc/PID/status while it ran (every rssPoll; VmHWM only grows).
	MaxRSSKiB int64 `json:"peak_rss_kib"`
	// RusageMaxRSSKiB is ru_maxrss from wait4. It is NOT the child's own peak: Linux
	// records the high-water RSS of the memory the child had before exec, which after
	// Go's vfork-style start is this benchmark's own (hundreds of MiB of tensors).
	RusageMaxRSSKiB int64 `json:"rusage_maxrss_kib"`
	// UserS and SysS are the child's CPU seconds.
	UserS float64 `json:"user_s"`
	SysS  float64 `json:"sys_s"`
	// PrepareS is when the child reported its preflight done (catalog loaded, ONNX Runtime
	// loaded, model checked), from process start.
	PrepareS float64 `json:"prepare_s"`
	// Batches and BatchMeanMS come from the job's batch-latency distribution (its
	// "batches N mean X ms" summary line).
	Batches     int64   `json:"batches"`
	BatchMeanMS float64 `json:"batch_mean_ms"`
	// InferenceS is Batches × BatchMeanMS: time inside forward passes.
	InferenceS float64 `json:"inference_s"`
	Load1      float64 `json:"load1_before"`
	// OthersCPUS is the CPU time the rest of the machine used during the run.
	OthersCPUS float64 `json:"others_cpu_s"`
	Log        string  `json:"log"`
	Stdout     string  `json:"-"`
}

// runChild runs bin with args once, timed from process start to exit, with its peak RSS
// (VmHWM polled every rssPoll), CPU time and the CPU the rest of the machine used
// meanwhile. ready is the prefix of the stderr line that ends the job's preflight (a
// line starting with it and containing "running"). The command line, stdout and
// timestamped stderr go to logPath.
func runChild(ctx context.Context, bin string, args []string, ready, logPath string) (childRun, error) {
	run := childRun{Log: logPath}
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		return run, err
	}
	run.Load1 = load1()
	busy0 := machineBusy()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return run, fmt.Errorf("starting %s: %w", bin, err)
	}
	hwm := make(chan int64, 1)
	stop := make(chan struct{})
	go func() { hwm <- pollHWM(cmd.Process.Pid, stop) }()
	// Stderr lines are timestamped as they arrive, to see when the preflight ended.
	var stderr strings.Builder
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(errPipe)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			t := time.Since(start).Seconds()
			line := sc.Text()
			if run.PrepareS == 0 && strings.HasPrefix(line, ready) && strings.Contains(line, "running") {
				run.PrepareS = t
			}
			fmt.Fprintf(&stderr, "[%7.3fs] %s\n", t, line)
		}
		_, _ = io.Copy(io.Discard, errPipe)
	}()
	wg.Wait()
	werr := cmd.Wait()
	wall := time.Since(start)
	busy1 := machineBusy()
	close(stop)
	run.MaxRSSKiB = <-hwm
	run.WallS = wall.Seconds()
	run.Stdout = stdout.String()
	run.Batches, run.BatchMeanMS = batchStats(run.Stdout)
	run.InferenceS = float64(run.Batches) * run.BatchMeanMS / 1000
	logText := fmt.Sprintf("$ %s %s\n--- stdout\n%s--- stderr\n%s", bin, strings.Join(args, " "), run.Stdout, stderr.String())
	if err := os.WriteFile(logPath, []byte(logText), 0o644); err != nil {
		return run, err
	}
	if ps := cmd.ProcessState; ps != nil {
		if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
			run.RusageMaxRSSKiB = ru.Maxrss
		}
		run.UserS, run.SysS = ps.UserTime().Seconds(), ps.SystemTime().Seconds()
	}
	// The bench process itself idles meanwhile; its few milliseconds count as others'.
	run.OthersCPUS = othersCPU(busy0, busy1, run.UserS+run.SysS)
	if werr != nil {
		return run, fmt.Errorf("%s failed (%v); log %s:\n%s", filepath.Base(bin)+" "+args[0], werr, logPath, tail(logText, 40))
	}
	return run, nil
}

// runPipeline runs stir embed once and times it from process start to exit.
func runPipeline(ctx context.Context, a childArgs) (pipelineRun, error) {
	run := pipelineRun{Catalog: a.Catalog}
	if err := os.RemoveAll(a.Output); err != nil {
		return run, err
	}
	args := append([]string{"embed", "--catalog", a.Catalog, "--output", a.Output, "--model", a.Model,
		"--batch_size", strconv.Itoa(a.BatchSize)}, a.Flags...)
	var err error
	run.childRun, err = runChild(ctx, a.Bin, args, "embed: ", a.Log)
	if err != nil {
		return run, err
	}
	m, err := embeddings.ReadManifest(ctx, filepath.Join(a.Output, pipelines.EmbeddingsDir))
	if err != nil {
		return run, fmt.Errorf("reading the run's embeddings manifest: %w", err)
	}
	run.Rows = m.Rows
	run.Rate = float64(m.Rows) / run.WallS
	return run, nil
}

// batchStats reads the "batches N mean X ms" line a stir job prints from its
// batch-latency distribution (zeros when absent).
func batchStats(stdout string) (n int64, meanMS float64) {
	if sm := batchesLine.FindStringSubmatch(stdout); sm != nil {
		n, _ = strconv.ParseInt(sm[1], 10, 64)
		meanMS, _ = strconv.ParseFloat(sm[2], 64)
	}
	return n, meanMS
}

// rssPoll is how often the child's peak RSS is read.
const rssPoll = 50 * time.Millisecond

// pollHWM reads VmHWM (peak resident set, KiB) of process pid every rssPoll until stop is
// closed or the process is gone, and returns the largest value seen.
func pollHWM(pid int, stop <-chan struct{}) int64 {
	path := fmt.Sprintf("/proc/%d/status", pid)
	var peak int64
	t := time.NewTicker(rssPoll)
	defer t.Stop()
	for {
		if v, ok := readHWM(path); ok {
			peak = max(peak, v)
		}
		select {
		case <-stop:
			return peak
		case <-t.C:
		}
	}
}

// readHWM returns the VmHWM field of a /proc status file, in KiB.
func readHWM(path string) (int64, bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// load1 is the one-minute load average, or -1 when /proc/loadavg cannot be read.
func load1() float64 {
	f := loadAvg()
	if len(f) == 0 {
		return -1
	}
	return f[0]
}

// loadAvg returns the 1, 5 and 15-minute load averages (nil when unavailable).
func loadAvg() []float64 {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return nil
	}
	fields := strings.Fields(string(data))
	var out []float64
	for _, f := range fields[:min(3, len(fields))] {
		v, err := strconv.ParseFloat(f, 64)
		if err != nil {
			return nil
		}
		out = append(out, v)
	}
	return out
}

// clockTicks is USER_HZ, the unit of /proc/stat (100 on every Linux architecture Go supports).
const clockTicks = 100

// machineBusy returns the CPU seconds every process on the machine has used so far (the
// non-idle, non-iowait time of /proc/stat), or -1 when it cannot be read.
func machineBusy() float64 {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return -1
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return -1
	}
	var busy float64
	for i, v := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		if i >= 8 { // guest and guest_nice are already counted in user and nice
			break
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return -1
		}
		busy += float64(n)
	}
	return busy / clockTicks
}

// othersCPU is the CPU time other processes used while a run took own CPU seconds,
// from machineBusy readings before and after (0 when unknown).
func othersCPU(before, after, own float64) float64 {
	if before < 0 || after < 0 {
		return 0
	}
	return max(0, after-before-own)
}
