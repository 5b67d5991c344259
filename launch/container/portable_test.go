package container

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stirpipe/stirpipe/schemas/blob"
	"github.com/stirpipe/stirpipe/schemas/blob/blobtest"
)

const bucket = "stir-portable"

func TestMain(m *testing.M) {
	blobtest.Main(func() int {
		code := m.Run()
		if shared.root != "" {
			os.RemoveAll(filepath.Dir(shared.root))
		}
		return code
	}, bucket)
}

// world is what every test here shares: the layout, prism, and the catalog and models on
// the emulated bucket.
type world struct {
	root, prism string
	cpu         *stage
	env         []string // the cpu image's environment, rebased into the layout
	catalog     string   // gs:// catalog
	model, pair string   // gs:// manifests
	err         error
}

var (
	shared     world
	sharedOnce sync.Once
)

// setup builds the layout and prism once and puts a small catalog and the stir-tiny models
// in the bucket.
func setup(t *testing.T) *world {
	t.Helper()
	sharedOnce.Do(func() { shared.err = shared.build() })
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return &shared
}

func (w *world) build() error {
	dir, err := os.MkdirTemp("", "stir-portable-")
	if err != nil {
		return err
	}
	w.root = filepath.Join(dir, "root")
	repo, err := filepath.Abs("../..")
	if err != nil {
		return err
	}
	if out, err := command(repo, nil, "bash", "launch/container/layout.sh", w.root); err != nil {
		return fmt.Errorf("layout.sh: %v\n%s", err, out)
	}
	w.prism = filepath.Join(dir, "prism")
	if out, err := command(repo, nil, "go", "build", "-o", w.prism, "github.com/apache/beam/sdks/v2/go/cmd/prism"); err != nil {
		return fmt.Errorf("build prism: %v\n%s", err, out)
	}
	stages, err := parseDockerfile("Dockerfile")
	if err != nil {
		return err
	}
	if w.cpu = stages["cpu"]; w.cpu == nil {
		return fmt.Errorf("Dockerfile has no cpu target")
	}
	w.env = workerEnv(w.root, w.cpu)
	cat := filepath.Join(dir, "catalog")
	if out, err := command(dir, w.env, w.stir(), "synth", "--out", cat, "--products", "24", "--views_min", "2", "--views_max", "4",
		"--size", "96", "--validation_fraction", "1", "--box_fraction", "0.2", "--bad_files", "2", "--seed", "11"); err != nil {
		return fmt.Errorf("synth: %v\n%s", err, out)
	}
	ctx := context.Background()
	if err := blobtest.Upload(ctx, cat, "gs://"+bucket+"/catalog"); err != nil {
		return err
	}
	if err := blobtest.Upload(ctx, filepath.Join(w.root, "opt/stir/models/stir-tiny"), "gs://"+bucket+"/models/stir-tiny"); err != nil {
		return err
	}
	w.catalog = "gs://" + bucket + "/catalog/catalog.csv"
	w.model = "gs://" + bucket + "/models/stir-tiny/embedder.json"
	w.pair = "gs://" + bucket + "/models/stir-tiny/pairwise.json"
	return nil
}

func (w *world) stir() string { return filepath.Join(w.root, "opt/stir/bin/stir") }

// command runs name in dir with the extra environment and returns its combined output; it
// is killed after five minutes (a job that hangs fails the test instead of its time-out).
func command(dir string, env []string, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	return cmd.CombinedOutput()
}

// take reads every object under prefix (keyed by the rest of its name) and removes them.
func take(t *testing.T, prefix string) map[string][]byte {
	t.Helper()
	ctx := context.Background()
	uris, err := blob.List(ctx, prefix)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, u := range uris {
		data, err := blob.ReadFile(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		out[strings.TrimPrefix(u, prefix)] = data
		if err := blob.Remove(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// freePort returns a loopback TCP port nobody listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// background starts a long-running process, in a folder of its own, whose output goes to a
// log file of the test; it is killed when the test ends.
func background(t *testing.T, env []string, name string, args ...string) {
	t.Helper()
	log, err := os.Create(filepath.Join(t.TempDir(), filepath.Base(name)+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(name, args...)
	cmd.Dir = t.TempDir() // Beam's boot writes pipeline_options.json into its working folder
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(log.Name())
			t.Logf("%s log (last 4 KiB):\n%s", filepath.Base(name), tail(b, 4096))
		}
	})
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// waitListening waits until something accepts connections at addr.
func waitListening(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("nothing listens at %s after 30 s", addr)
}

// cleanTmp removes what Beam's boot leaves in /tmp for each worker it starts (a copy of the
// worker binary in /tmp/binNNN, and the staging folders of process-boot) once the test ends.
func cleanTmp(t *testing.T) {
	before := map[string]bool{}
	list := func() []string {
		a, _ := filepath.Glob("/tmp/bin*")
		b, _ := filepath.Glob("/tmp/stir-worker.*")
		return append(a, b...)
	}
	for _, p := range list() {
		before[p] = true
	}
	t.Cleanup(func() {
		for _, p := range list() {
			if !before[p] {
				os.RemoveAll(p)
			}
		}
	})
}

// noOrphans fails the test when worker processes outlive the job server and worker pool
// that started them (it runs after the test's other cleanups), and ends them.
func noOrphans(t *testing.T) {
	before := map[string]bool{}
	for _, pid := range workerProcesses() {
		before[pid] = true
	}
	t.Cleanup(func() {
		var left []string
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			left = left[:0]
			for _, pid := range workerProcesses() {
				if !before[pid] {
					left = append(left, pid)
				}
			}
			if len(left) == 0 || time.Now().After(deadline) {
				break
			}
		}
		for _, pid := range left {
			if p, err := strconv.Atoi(pid); err == nil {
				_ = syscall.Kill(p, syscall.SIGKILL)
			}
		}
		if len(left) > 0 {
			t.Errorf("%d stir worker processes outlived their boot: %v", len(left), left)
		}
	})
}

// workerProcesses lists the ids of running processes that are a stir worker started by
// Beam's boot (a copy of the binary in /tmp/binNNN/worker, started with --worker=true).
func workerProcesses() []string {
	dirs, _ := os.ReadDir("/proc")
	var pids []string
	for _, d := range dirs {
		cmd, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmd), "\x00")
		if len(args) > 1 && strings.HasPrefix(args[0], "/tmp/bin") && strings.HasSuffix(args[0], "/worker") && args[1] == "--worker=true" {
			pids = append(pids, d.Name())
		}
	}
	return pids
}

// runJob runs the whole job (the image's stir-run) over the shared catalog with extra flags and environment, writing
// gs://bucket/runs/{date}; it returns the output and the error.
func (w *world) runJob(t *testing.T, prefix string, env []string, flags ...string) ([]byte, error) {
	t.Helper()
	args := append([]string{"--catalog", w.catalog, "--model", w.model, "--pair_model", w.pair,
		"--output", prefix + "/{date}", "--progress=false", "--k", "20"}, flags...)
	launcher := filepath.Join(w.root, "opt/stir/bin/stir-run") // `stir run`, as Flex and Airflow start it
	return command(t.TempDir(), append(append([]string{}, w.env...), env...), launcher, args...)
}

func TestPortableRunners(t *testing.T) {
	w := setup(t)
	cleanTmp(t)
	noOrphans(t)
	runs := "gs://" + bucket + "/runs"

	out, err := w.runJob(t, runs, nil)
	if err != nil {
		t.Fatalf("in-process run: %v\n%s", err, out)
	}
	want := take(t, runs)
	day := time.Now().UTC().Format("2006-01-02")
	if got := string(want["/LATEST"]); got != runs+"/"+day+"\n" {
		t.Fatalf("LATEST = %q, want the run folder", got)
	}
	for _, f := range []string{"/embeddings/_manifest.json", "/neighbors/_manifest.json", "/reranked/_manifest.json", "/metrics.json"} {
		if want["/"+day+f] == nil {
			t.Fatalf("the in-process run wrote no %s (objects: %d)", f, len(want))
		}
	}

	port := freePort(t)
	endpoint := fmt.Sprintf("localhost:%d", port)
	background(t, nil, w.prism, "--job_port", fmt.Sprint(port), "--serve_http=false", "--log_level=warn")
	waitListening(t, endpoint)

	procEnv := map[string]string{}
	for _, kv := range w.env {
		k, v, _ := strings.Cut(kv, "=")
		procEnv[k] = v
	}
	procConfig, _ := json.Marshal(map[string]any{"command": filepath.Join(w.root, "opt/stir/bin/process-boot"), "env": procEnv})

	t.Run("PROCESS", func(t *testing.T) {
		out, err := w.runJob(t, runs, nil, "--runner=universal", "--endpoint="+endpoint,
			"--environment_type=PROCESS", "--environment_config="+string(procConfig))
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		same(t, want, take(t, runs))
	})

	t.Run("EXTERNAL", func(t *testing.T) {
		pool := "localhost:50000" // boot --worker_pool always listens on port 50000
		if c, err := net.Dial("tcp", pool); err == nil {
			c.Close()
			t.Fatalf("port 50000 is taken; the worker pool needs it")
		}
		background(t, w.env, rebase(w.root, w.cpu.entrypoint), "--worker_pool")
		waitListening(t, pool)
		out, err := w.runJob(t, runs, nil, "--runner=universal", "--endpoint="+endpoint,
			"--environment_type=EXTERNAL", "--environment_config="+pool)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		same(t, want, take(t, runs))
	})

	t.Run("a worker killed mid-run", func(t *testing.T) {
		ctx := context.Background()
		killed := "gs://" + bucket + "/killed"
		earlier := earlierLatest(t, killed)
		// Once the neighbours stage is complete, kill the rerank stage's worker half a second
		// after it starts, in the middle of its work (the stage takes seconds here). A worker
		// killed before it connects is another matter: prism 2.77 then waits for it forever.
		neighborsDone := killed + "/" + time.Now().UTC().Format("2006-01-02") + "/neighbors/_manifest.json"
		done := make(chan struct{})
		victim := make(chan string, 1)
		go func() {
			var before map[string]bool
			for {
				select {
				case <-done:
					return
				case <-time.After(20 * time.Millisecond):
				}
				if before == nil {
					if _, err := blob.Stat(ctx, neighborsDone); err == nil {
						before = map[string]bool{}
						for _, pid := range workerProcesses() {
							before[pid] = true
						}
					}
					continue
				}
				for _, pid := range workerProcesses() {
					if p, err := strconv.Atoi(pid); err == nil && !before[pid] {
						time.Sleep(500 * time.Millisecond)
						_ = syscall.Kill(p, syscall.SIGKILL)
						victim <- pid
						return
					}
				}
			}
		}()
		out, err := w.runJob(t, killed, nil, "--runner=universal", "--endpoint="+endpoint,
			"--environment_type=PROCESS", "--environment_config="+string(procConfig))
		close(done)
		select {
		case pid := <-victim:
			t.Logf("killed the rerank stage's worker, process %s", pid)
		default:
			t.Fatalf("no rerank worker was seen to kill:\n%s", tail(out, 2000))
		}
		if err == nil {
			t.Fatalf("the job succeeded although its worker was killed:\n%s", out)
		}
		if !bytes.Contains(out, []byte("pipeline failed")) {
			t.Errorf("the failure does not say the pipeline failed:\n%s", tail(out, 2000))
		}
		left := take(t, killed)
		if !bytes.Equal(left["/LATEST"], earlier) {
			t.Errorf("LATEST moved after a failed run: %q", left["/LATEST"])
		}
		for name := range left { // embed and neighbours did complete; rerank and evaluate did not
			if strings.HasSuffix(name, "/reranked/_manifest.json") || strings.HasSuffix(name, "metrics.json") {
				t.Errorf("the killed run left %s, which marks an unfinished stage complete", name)
			}
		}
		if left["/"+time.Now().UTC().Format("2006-01-02")+"/neighbors/_manifest.json"] == nil {
			t.Errorf("the neighbours stage, which finished before the kill, has no manifest")
		}
	})

	t.Run("workers without ONNX Runtime", func(t *testing.T) {
		failed := "gs://" + bucket + "/failed"
		earlier := earlierLatest(t, failed)
		broken := map[string]any{"command": filepath.Join(w.root, "opt/stir/bin/process-boot"),
			"env": map[string]string{"STIR_ONNXRUNTIME_LIB": filepath.Join(w.root, "opt/onnxruntime/lib/missing.so")}}
		cfg, _ := json.Marshal(broken)
		out, err := w.runJob(t, failed, nil, "--runner=universal", "--endpoint="+endpoint,
			"--environment_type=PROCESS", "--environment_config="+string(cfg))
		if err == nil {
			t.Fatalf("the job succeeded on workers without ONNX Runtime:\n%s", out)
		}
		if !bytes.Contains(out, []byte("ONNX Runtime library")) || !bytes.Contains(out, []byte("missing.so")) {
			t.Errorf("the failure does not say which library is missing:\n%s", tail(out, 2000))
		}
		left := take(t, failed)
		if !bytes.Equal(left["/LATEST"], earlier) {
			t.Errorf("LATEST moved after a failed run: %q", left["/LATEST"])
		}
		for name := range left {
			if strings.HasSuffix(name, "_manifest.json") || strings.HasSuffix(name, "metrics.json") {
				t.Errorf("a failed run left %s, which marks a stage complete", name)
			}
		}
	})
}

// earlierLatest points prefix's LATEST at an earlier run, so that a test can check that a
// failed run leaves it there; it returns the pointer's content.
func earlierLatest(t *testing.T, prefix string) []byte {
	t.Helper()
	earlier := []byte(prefix + "/2000-01-01\n")
	if err := blob.WriteFile(context.Background(), prefix+"/LATEST", earlier); err != nil {
		t.Fatal(err)
	}
	return earlier
}

// same fails unless two runs wrote the same objects, byte for byte.
func same(t *testing.T, want, got map[string][]byte) {
	t.Helper()
	for name, data := range want {
		if g, ok := got[name]; !ok {
			t.Errorf("missing %s", name)
		} else if !bytes.Equal(g, data) {
			t.Errorf("%s differs from the in-process run (%d vs %d bytes)", name, len(g), len(data))
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("extra object %s", name)
		}
	}
}
