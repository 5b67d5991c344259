package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stirpipe/stirpipe/schemas/blob"
	"github.com/stirpipe/stirpipe/schemas/blob/blobtest"
	"github.com/stirpipe/stirpipe/schemas/embeddings"
)

const bucket = "stir-launch"

// stirBin is this package built as a program, and data the bucket holds for it.
var (
	stirBin                 string
	catalogURI, modelURI    string
	pairModelURI, stagingAt = "", "gs://" + bucket + "/staging"
)

func TestMain(m *testing.M) {
	blobtest.Main(func() int {
		dir, err := os.MkdirTemp("", "stir-launch-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		if err := prepare(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return m.Run()
	}, bucket)
}

// prepare builds stir and puts a small catalog and the stir-tiny models in the bucket.
func prepare(dir string) error {
	stirBin = filepath.Join(dir, "stir")
	if out, err := exec.Command("go", "build", "-o", stirBin, ".").CombinedOutput(); err != nil {
		return fmt.Errorf("build stir: %v\n%s", err, out)
	}
	cat := filepath.Join(dir, "catalog")
	if out, err := exec.Command(stirBin, "synth", "--out", cat, "--products", "8", "--views_min", "2", "--views_max", "3",
		"--size", "64", "--validation_fraction", "1").CombinedOutput(); err != nil {
		return fmt.Errorf("synth: %v\n%s", err, out)
	}
	ctx := context.Background()
	if err := blobtest.Upload(ctx, cat, "gs://"+bucket+"/catalog"); err != nil {
		return err
	}
	models := filepath.Join(dir, "models")
	if err := os.MkdirAll(models, 0o755); err != nil {
		return err
	}
	for _, f := range []string{"embedder.json", "embedder.onnx", "pairwise.json", "pairwise.onnx"} {
		data, err := os.ReadFile(filepath.Join("../../models/zoo/stir-tiny", f))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(models, f), data, 0o644); err != nil {
			return err
		}
	}
	if err := blobtest.Upload(ctx, models, "gs://"+bucket+"/models"); err != nil {
		return err
	}
	catalogURI = "gs://" + bucket + "/catalog/catalog.csv"
	modelURI, pairModelURI = "gs://"+bucket+"/models/embedder.json", "gs://"+bucket+"/models/pairwise.json"
	return nil
}

// stir runs the program with args and extra environment; it returns the combined output.
func stir(t *testing.T, env []string, args ...string) ([]byte, error) {
	t.Helper()
	cmd := exec.Command(stirBin, args...)
	cmd.Dir = "../.."
	cmd.Env = append(append(os.Environ(), "HOME="+t.TempDir()), env...)
	return cmd.CombinedOutput()
}

// dataflowFlags are the flags of a Dataflow run over the bucket's catalog.
func dataflowFlags(output string, extra ...string) []string {
	return append([]string{"run", "--runner=dataflow", "--project=stir-test", "--region=europe-west4",
		"--staging_location=" + stagingAt, "--temp_location=gs://" + bucket + "/tmp",
		"--sdk_container_image=europe-west4-docker.pkg.dev/stir-test/stir/worker:1",
		"--worker_machine_type=g2-standard-8", "--num_workers=2", "--max_num_workers=20",
		"--dataflow_service_options=worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver",
		"--provider=cuda", "--progress=false", "--log_level=info",
		"--catalog=" + catalogURI, "--model=" + modelURI, "--pair_model=" + pairModelURI, "--output=" + output}, extra...)
}

// dataflowJob is the part of a Dataflow job request the tests look at.
type dataflowJob struct {
	Environment struct {
		ServiceOptions     []string `json:"serviceOptions"`
		SdkPipelineOptions struct {
			GoOptions struct {
				Options map[string]string `json:"options"`
			} `json:"beam:option:go_options:v1"`
		} `json:"sdkPipelineOptions"`
		WorkerPools []struct {
			MachineType string `json:"machineType"`
			NumWorkers  int    `json:"numWorkers"`
			Packages    []struct {
				Location, Name string
			} `json:"packages"`
			SdkHarnessContainerImages []struct {
				ContainerImage string `json:"containerImage"`
			} `json:"sdkHarnessContainerImages"`
		} `json:"workerPools"`
	} `json:"environment"`
}

// checkJob fails unless the job runs the worker image on GPU workers with the job's flags.
func checkJob(t *testing.T, job dataflowJob) {
	t.Helper()
	env := job.Environment
	if len(env.WorkerPools) != 1 {
		t.Fatalf("worker pools = %+v", env.WorkerPools)
	}
	pool := env.WorkerPools[0]
	if pool.MachineType != "g2-standard-8" || pool.NumWorkers != 2 || len(pool.SdkHarnessContainerImages) != 1 ||
		pool.SdkHarnessContainerImages[0].ContainerImage != "europe-west4-docker.pkg.dev/stir-test/stir/worker:1" {
		t.Errorf("worker pool = %+v", pool)
	}
	if len(pool.Packages) != 1 || pool.Packages[0].Name != "worker" || !strings.HasPrefix(pool.Packages[0].Location, stagingAt+"/") {
		t.Errorf("worker package = %+v, want the worker staged under %s", pool.Packages, stagingAt)
	}
	if strings.Join(env.ServiceOptions, ",") != "worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver" {
		t.Errorf("service options = %v", env.ServiceOptions)
	}
	opts := env.SdkPipelineOptions.GoOptions.Options
	for k, v := range map[string]string{"provider": "cuda", "model": modelURI, "catalog": catalogURI, "worker_binary": stirBin} {
		if opts[k] != v {
			t.Errorf("pipeline option %s = %q, want %q", k, opts[k], v)
		}
	}
	if !strings.HasPrefix(opts["output"], "gs://"+bucket+"/") || strings.Contains(opts["output"], "{date}") {
		t.Errorf("pipeline option output = %q, want the expanded run folder", opts["output"])
	}
}

// loggedJob finds the job that Beam's Dataflow runner logs (at --log_level=info).
func loggedJob(t *testing.T, out []byte) dataflowJob {
	t.Helper()
	for _, line := range strings.Split(string(out), "\n") {
		_, msg, ok := strings.Cut(line, ` msg="{`)
		if !ok {
			continue
		}
		text, err := strconv.Unquote(`"{` + msg)
		if err != nil || !strings.Contains(text, `"workerPools"`) {
			continue
		}
		var job dataflowJob
		if err := json.Unmarshal([]byte(text), &job); err != nil {
			t.Fatalf("the logged job is not JSON: %v", err)
		}
		return job
	}
	t.Fatalf("no job in the output:\n%s", tail(out))
	return dataflowJob{}
}

func TestDataflowDryRun(t *testing.T) {
	out, err := stir(t, nil, dataflowFlags("gs://"+bucket+"/dry/{date}", "--dry_run")...)
	if err != nil {
		t.Fatalf("dry run failed: %v\n%s", err, tail(out))
	}
	if !bytes.Contains(out, []byte("dry run: the job was built")) {
		t.Errorf("no dry-run notice:\n%s", tail(out))
	}
	checkJob(t, loggedJob(t, out))
	if objs, _ := blob.List(context.Background(), "gs://"+bucket+"/dry"); len(objs) != 0 {
		t.Errorf("a dry run wrote %v", objs)
	}
}

// fakeDataflow answers the Dataflow API and the metadata server's token requests, and
// records the jobs it is sent; every job fails once it is polled.
type fakeDataflow struct {
	mu   sync.Mutex
	jobs [][]byte
}

func (f *fakeDataflow) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	switch {
	case strings.HasPrefix(r.URL.Path, "/computeMetadata/v1/instance/service-accounts/"):
		w.Header().Set("Metadata-Flavor", "Google")
		if strings.HasSuffix(r.URL.Path, "/token") {
			fmt.Fprint(w, `{"access_token":"fake-token","expires_in":3600,"token_type":"Bearer"}`)
		} else {
			fmt.Fprint(w, "default")
		}
	case strings.HasPrefix(r.URL.Path, "/computeMetadata/"):
		w.Header().Set("Metadata-Flavor", "Google")
		fmt.Fprint(w, "stir-test")
	case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/jobs"):
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.jobs = append(f.jobs, body)
		f.mu.Unlock()
		fmt.Fprint(w, `{"id":"job-1","projectId":"stir-test","location":"europe-west4","currentState":"JOB_STATE_PENDING"}`)
	case strings.HasSuffix(r.URL.Path, "/jobs/job-1"):
		fmt.Fprint(w, `{"id":"job-1","currentState":"JOB_STATE_FAILED"}`)
	case strings.HasSuffix(r.URL.Path, "/jobs/job-1/metrics"):
		fmt.Fprint(w, `{"metrics":[]}`)
	default:
		http.Error(w, `{"error":{"code":404,"message":"not faked"}}`, http.StatusNotFound)
	}
}

func TestDataflowSubmissionStagesTheCgoWorker(t *testing.T) {
	fake := &fakeDataflow{}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	ctx := context.Background()
	runs := "gs://" + bucket + "/runs"
	earlier := []byte(runs + "/2000-01-01\n")
	if err := blob.WriteFile(ctx, runs+"/LATEST", earlier); err != nil {
		t.Fatal(err)
	}
	env := []string{"GCE_METADATA_HOST=" + strings.TrimPrefix(srv.URL, "http://"), "GOOGLE_APPLICATION_CREDENTIALS="}
	start := time.Now()
	out, err := stir(t, env, dataflowFlags(runs+"/{date}", "--dataflow_endpoint="+srv.URL+"/")...)
	if err == nil {
		t.Fatalf("stir run succeeded although its Dataflow job failed:\n%s", out)
	}
	if !bytes.Contains(out, []byte("Job job-1 failed")) {
		t.Errorf("the error does not name the failed job:\n%s", tail(out))
	}
	if time.Since(start) > 2*time.Minute {
		t.Errorf("stir took %s to notice the failure", time.Since(start))
	}

	// The job: our image, the GPU service option, and the staged worker.
	fake.mu.Lock()
	jobs := fake.jobs
	fake.mu.Unlock()
	if len(jobs) != 1 {
		t.Fatalf("%d jobs submitted, want 1 (the embed stage, which failed)", len(jobs))
	}
	var job dataflowJob
	if err := json.Unmarshal(jobs[0], &job); err != nil {
		t.Fatal(err)
	}
	checkJob(t, job)
	staged, err := blob.List(ctx, stagingAt)
	if err != nil {
		t.Fatal(err)
	}
	var worker string
	for _, o := range staged {
		if strings.HasSuffix(o, "/worker") {
			worker = o
		}
	}
	if worker == "" {
		t.Fatalf("no worker binary staged under %s: %v", stagingAt, staged)
	}
	want, _ := os.ReadFile(stirBin)
	got, err := blob.ReadFile(ctx, worker)
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got) != sha256.Sum256(want) {
		t.Errorf("the staged worker %s (%d bytes) is not this stir (%d bytes)", worker, len(got), len(want))
	}
	sum := sha256.Sum256(want)
	t.Logf("staged %s, sha256 %s", worker, hex.EncodeToString(sum[:]))

	// Nothing marks the failed run complete, and LATEST stays where it was.
	left, _ := blob.List(ctx, runs)
	for _, o := range left {
		if strings.HasSuffix(o, "_manifest.json") || strings.HasSuffix(o, "metrics.json") {
			t.Errorf("the failed run left %s", o)
		}
	}
	if b, _ := blob.ReadFile(ctx, runs+"/LATEST"); !bytes.Equal(b, earlier) {
		t.Errorf("LATEST moved after a failed run: %q", b)
	}
}

// TestBadPlacementsStopBeforeWork runs stir with placements that cannot work: each must stop
// at once with a message naming the fix, and write nothing.
func TestBadPlacementsStopBeforeWork(t *testing.T) {
	base := []string{"run", "--catalog=" + catalogURI, "--model=" + modelURI, "--pair_model=" + pairModelURI, "--progress=false"}
	for _, c := range []struct {
		name  string
		flags []string
		want  []string
	}{
		{"dataflow without the worker image", []string{"--runner=dataflow", "--project=p", "--region=r", "--staging_location=" + stagingAt,
			"--output=gs://" + bucket + "/bad/a"}, []string{"--sdk_container_image", "launch/container/Dockerfile"}},
		{"dataflow with a local model", []string{"--runner=dataflow", "--project=p", "--region=r", "--staging_location=" + stagingAt,
			"--sdk_container_image=img", "--output=gs://" + bucket + "/bad/b", "--model=models/zoo/stir-tiny/embedder.json"},
			[]string{"--model=models/zoo/stir-tiny/embedder.json is a local path", "gs://"}},
		{"dataflow GPU without GPU workers", []string{"--runner=dataflow", "--project=p", "--region=r", "--staging_location=" + stagingAt,
			"--sdk_container_image=img", "--output=gs://" + bucket + "/bad/c", "--provider=cuda"}, []string{"worker_accelerator"}},
		{"flink with Beam's image", []string{"--runner=flink", "--endpoint=flink-jobserver:8099", "--output=gs://" + bucket + "/bad/d"},
			[]string{"DOCKER workers need the stir worker image"}},
		{"a worker binary without cgo", []string{"--runner=universal", "--endpoint=localhost:1", "--environment_type=EXTERNAL",
			"--environment_config=localhost:50000", "--worker_binary=/bin/sh", "--output=gs://" + bucket + "/bad/e"},
			[]string{"not a Go program", "make worker"}},
		{"a dry run on prism", []string{"--output=gs://" + bucket + "/bad/g", "--dry_run"}, []string{"--dry_run", "--runner=dataflow"}},
		{"an unknown output placeholder", []string{"--output=gs://" + bucket + "/bad/{day}"}, []string{"{day}", "{date}"}},
		{"CUDA on the CPU build of ONNX Runtime", []string{"--output=gs://" + bucket + "/bad/f", "--provider=cuda"},
			[]string{"CUDA was requested", "target gpu", "--provider=cpu"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			out, err := stir(t, nil, append(append([]string{}, base...), c.flags...)...)
			if err == nil {
				t.Fatalf("stir accepted it:\n%s", out)
			}
			for _, w := range c.want {
				if !bytes.Contains(out, []byte(w)) {
					t.Errorf("the message does not name %q:\n%s", w, out)
				}
			}
			if bytes.Contains(out, []byte("running…")) || time.Since(start) > 30*time.Second {
				t.Errorf("stir started work before refusing (%s):\n%s", time.Since(start), out)
			}
		})
	}
	if objs, _ := blob.List(context.Background(), "gs://"+bucket+"/bad"); len(objs) != 0 {
		t.Errorf("refused runs wrote %v", objs)
	}
}

func tail(b []byte) []byte {
	if len(b) > 3000 {
		return b[len(b)-3000:]
	}
	return b
}

func TestExpandOutput(t *testing.T) {
	now := time.Date(2026, 12, 7, 3, 4, 5, 0, time.FixedZone("CET", 3600))
	for _, c := range []struct {
		in, want  string
		templated bool
	}{
		{"gs://b/runs/{date}", "gs://b/runs/2026-12-07", true},
		{"out/{datetime}-nightly", "out/20261207T020405Z-nightly", true},
		{"gs://b/run", "gs://b/run", false},
	} {
		got, templated, err := expandOutput(c.in, now)
		if err != nil || got != c.want || templated != c.templated {
			t.Errorf("expandOutput(%q) = %q, %v, %v; want %q, %v", c.in, got, templated, err, c.want, c.templated)
		}
	}
	if _, _, err := expandOutput("gs://b/{date}/{hour}", now); err == nil || !strings.Contains(err.Error(), "{hour}") {
		t.Errorf("an unknown placeholder gives %v", err)
	}
}

func TestLatestTarget(t *testing.T) {
	for _, c := range []struct {
		flag, output string
		templated    bool
		want         string
	}{
		{"auto", "gs://b/runs/2026-12-07", true, "gs://b/runs/LATEST"},
		{"auto", "out/demo/run", false, ""},
		{"none", "gs://b/runs/2026-12-07", true, ""},
		{"gs://b/pointers/catalog-a", "out/run", false, "gs://b/pointers/catalog-a"},
	} {
		if got := latestTarget(c.flag, c.output, c.templated); got != c.want {
			t.Errorf("latestTarget(%q, %q, %v) = %q, want %q", c.flag, c.output, c.templated, got, c.want)
		}
	}
}

// TestFlexTemplateParameters checks the Flex Template's metadata against `stir run`: every
// parameter is a flag of it, and its patterns accept the values the README shows.
func TestFlexTemplateParameters(t *testing.T) {
	b, err := os.ReadFile("../container/flex-metadata.json")
	if err != nil {
		t.Fatal(err)
	}
	var meta struct {
		Name       string
		Parameters []struct {
			Name    string
			Regexes []string
		}
	}
	if err := json.Unmarshal(b, &meta); err != nil {
		t.Fatal(err)
	}
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	runFlags(fs)
	examples := map[string]string{"catalog": catalogURI, "output": "gs://b/runs/{date}", "model": modelURI,
		"pair_model": "/opt/stir/models/stir-tiny/pairwise.json", "root": "gs://b/images", "k": "100", "top_n": "5",
		"provider": "cuda", "batch_size": "64", "previous": "latest"}
	for _, p := range meta.Parameters {
		if fs.Lookup(p.Name) == nil {
			t.Errorf("template parameter %q is not a flag of stir run", p.Name)
		}
		for _, re := range p.Regexes {
			if ex, ok := examples[p.Name]; !ok || !regexp.MustCompile(re).MatchString(ex) {
				t.Errorf("parameter %s: pattern %s refuses the example %q", p.Name, re, ex)
			}
		}
	}
	script, err := os.ReadFile("../container/stir-run")
	if err != nil || !bytes.Contains(script, []byte(`/stir" run "$@"`)) {
		t.Errorf("stir-run does not run stir run: %v", err)
	}
}

// TestDocumentedRunCommands parses every `stir run` command of the README and of the
// systemd unit with stir run's flags and Beam's, so no documented command names a flag that
// does not exist; the systemd units also pass `systemd-analyze verify` where it is installed.
func TestDocumentedRunCommands(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	unit, err := os.ReadFile("../schedule/stir-refresh.service")
	if err != nil {
		t.Fatal(err)
	}
	var commands []string
	inBlock := false
	for _, line := range strings.Split(strings.ReplaceAll(string(readme), "\\\n", " "), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			inBlock = !inBlock
			continue
		}
		if inBlock && strings.Contains(line, "stir run ") {
			commands = append(commands, line)
		}
	}
	for _, line := range strings.Split(string(unit), "\n") {
		if rest, ok := strings.CutPrefix(line, "ExecStart="); ok {
			commands = append(commands, rest)
		}
	}
	if len(commands) < 6 {
		t.Fatalf("found only %d stir run commands", len(commands))
	}
	for _, c := range commands {
		words, err := shellWords(c[strings.Index(c, "stir run ")+len("stir run "):])
		if err != nil {
			t.Errorf("%s: %v", c, err)
			continue
		}
		var args []string
		for _, w := range words {
			if w == "&&" || w == "&" || strings.HasPrefix(w, ">") || strings.HasPrefix(w, "2>") || w == "#" {
				break
			}
			args = append(args, w)
		}
		fs := flag.NewFlagSet("run", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		runFlags(fs)
		flag.CommandLine.VisitAll(func(f *flag.Flag) {
			if fs.Lookup(f.Name) == nil {
				fs.Var(&anyValue{isBool: isBoolFlag(f)}, f.Name, "")
			}
		})
		if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
			t.Errorf("documented command does not parse: %v (left over %q)\n%s", err, fs.Args(), c)
		}
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("STIR_REQUIRE_SYSTEMD") != "" {
			t.Fatal("systemd-analyze is required here (STIR_REQUIRE_SYSTEMD) but not installed")
		}
		t.Skip("systemd-analyze is not installed: the units' syntax was not checked")
	}
	if out, err := exec.Command(analyze, "verify", "../schedule/stir-refresh.timer").CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// anyValue accepts any value for a flag of Beam's that a command may name.
type anyValue struct{ isBool bool }

func (v *anyValue) String() string   { return "" }
func (v *anyValue) Set(string) error { return nil }
func (v *anyValue) IsBoolFlag() bool { return v.isBool }
func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// shellWords splits a command line as a POSIX shell would, for quotes and escapes.
func shellWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unclosed '")
			}
			cur.WriteString(s[i+1 : i+1+j])
			i, inWord = i+1+j, true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, fmt.Errorf(`unclosed "`)
			}
			inWord = true
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inWord = true
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// EnvCUDALibrary names a CUDA build of ONNX Runtime 1.31 (libonnxruntime.so with its CUDA
// provider libraries beside it) for TestCUDAEmbeddingsMatchCPU.
const EnvCUDALibrary = "STIR_CUDA_ONNXRUNTIME_LIB"

// TestCUDAEmbeddingsMatchCPU embeds the bucket's catalog on the GPU and on the CPU and
// requires every embedding to agree (cosine ≥ 0.999). It needs a GPU and ONNX Runtime's
// CUDA build, which no machine of this project's CI has: there it is skipped, and nothing
// else here claims to cover CUDA.
func TestCUDAEmbeddingsMatchCPU(t *testing.T) {
	lib := os.Getenv(EnvCUDALibrary)
	if lib == "" {
		t.Skipf("no CUDA build of ONNX Runtime (set %s to its libonnxruntime.so on a GPU machine): CUDA inference is untested here", EnvCUDALibrary)
	}
	ctx := context.Background()
	embed := func(provider, library string) map[string][]float32 {
		out := t.TempDir()
		args := []string{"embed", "--catalog", catalogURI, "--model", modelURI, "--output", out, "--progress=false", "--provider", provider}
		if library != "" {
			args = append(args, "--onnxruntime_lib", library)
		}
		if b, err := stir(t, nil, args...); err != nil {
			t.Fatalf("stir embed --provider=%s: %v\n%s", provider, err, b)
		}
		r, err := embeddings.Open(ctx, filepath.Join(out, "embeddings"))
		if err != nil {
			t.Fatal(err)
		}
		recs, err := r.ReadAll(ctx)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string][]float32{}
		for _, rec := range recs {
			m[rec.Row.ID] = rec.Embedding
		}
		return m
	}
	cpu, gpu := embed("cpu", ""), embed("cuda", lib)
	if len(cpu) == 0 || len(cpu) != len(gpu) {
		t.Fatalf("%d embeddings on the CPU, %d on the GPU", len(cpu), len(gpu))
	}
	worst := 1.0
	for id, a := range cpu {
		b := gpu[id]
		var dot, na, nb float64
		for i := range a {
			dot, na, nb = dot+float64(a[i])*float64(b[i]), na+float64(a[i])*float64(a[i]), nb+float64(b[i])*float64(b[i])
		}
		worst = math.Min(worst, dot/math.Sqrt(na*nb))
	}
	t.Logf("%d embeddings, lowest CPU/GPU cosine %.6f", len(cpu), worst)
	if worst < 0.999 {
		t.Errorf("lowest cosine %.6f < 0.999", worst)
	}
}
