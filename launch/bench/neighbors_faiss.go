package main

// The FAISS reference: the script that times IndexFlatIP on the same vectors, and its OpenBLAS.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

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
