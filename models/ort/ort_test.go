package ort

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// libPath is the real ONNX Runtime library every test in this package runs against.
var libPath string

func TestMain(m *testing.M) {
	p, err := LibraryPath("")
	if err == nil {
		err = Init(p)
	}
	if err != nil {
		// The tests exist to exercise the real library: a missing one is a failure.
		os.Stderr.WriteString("models/ort tests need the ONNX Runtime library: " + err.Error() + "\n")
		os.Exit(1)
	}
	libPath = p
	os.Exit(m.Run())
}

func TestLibraryPath(t *testing.T) {
	root := t.TempDir()
	touch := func(p string) string {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	repo := filepath.Join(root, "repo")
	repoLib := touch(filepath.Join(repo, ".local", "onnxruntime", LibraryName))
	deep := filepath.Join(repo, "models", "ort")
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	flagLib := touch(filepath.Join(root, "flag", "libonnxruntime.so"))
	envLib := touch(filepath.Join(root, "env", "libonnxruntime.so"))
	inst := filepath.Join(root, "install")
	instLib := touch(filepath.Join(inst, ".local", "onnxruntime", LibraryName))
	besideLib := touch(filepath.Join(root, "beside", LibraryName))
	libDirLib := touch(filepath.Join(root, "libdir", "lib", LibraryName))
	nowhere := filepath.Join(root, "nowhere")

	tests := []struct {
		name, flag, env, cwd, exe string
		want                      string
		wantErr                   string
	}{
		{name: "flag wins", flag: flagLib, env: envLib, cwd: deep, want: flagLib},
		{name: "env next", env: envLib, cwd: deep, want: envLib},
		{name: "missing flag file", flag: filepath.Join(root, "no.so"), wantErr: "--onnxruntime_lib"},
		{name: "missing env file", env: filepath.Join(root, "no.so"), wantErr: EnvLibrary},
		{name: "soname flag goes to the loader", flag: "libonnxruntime.so.1", want: "libonnxruntime.so.1"},
		{name: "parent of cwd", cwd: deep, exe: filepath.Join(nowhere, "prog"), want: repoLib},
		{name: "cwd itself", cwd: repo, want: repoLib},
		{name: "exe dir/../.local", cwd: nowhere, exe: filepath.Join(inst, "bin", "prog"), want: instLib},
		{name: "beside exe", cwd: nowhere, exe: filepath.Join(root, "beside", "prog"), want: besideLib},
		{name: "exe dir/lib", cwd: nowhere, exe: filepath.Join(root, "libdir", "prog"), want: libDirLib},
		{name: "system loader", cwd: nowhere, exe: filepath.Join(nowhere, "prog"), want: LibraryName},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := libraryPath(tc.flag, tc.env, tc.cwd, tc.exe)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "make ort") {
					t.Fatalf("libraryPath = %q, %v; want an error naming %q and `make ort`", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("libraryPath = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestInitRealLibrary(t *testing.T) {
	if got := Version(); got != RequiredVersion {
		t.Fatalf("Version() = %q, want %q", got, RequiredVersion)
	}
	if LoadedLibrary() != libPath || !Initialized() {
		t.Fatalf("LoadedLibrary() = %q, Initialized() = %v; want %q, true", LoadedLibrary(), Initialized(), libPath)
	}
	// Re-initialising with the same library, by another name too, and concurrently, is fine.
	link := filepath.Join(t.TempDir(), "libort.so")
	if err := os.Symlink(libPath, link); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() {
			p := libPath
			if i%2 == 1 {
				p = link
			}
			errs[i] = Init(p)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("repeated Init: %v", err)
	}
	if LoadedLibrary() != libPath {
		t.Fatalf("LoadedLibrary() changed to %q", LoadedLibrary())
	}
}

func TestInitErrors(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(dir, LibraryName)
	if err := os.WriteFile(fake, []byte("this is a text file, not a shared library\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, want string
	}{
		{"nonexistent", filepath.Join(dir, "missing", LibraryName), "no such file"},
		{"text file named .so", fake, "cannot load it as a shared library"},
		{"unknown soname", "libonnxruntime.so.0.0.0-stirpipe-test", "cannot load it as a shared library"},
	}
	if libm := "/lib/x86_64-linux-gnu/libm.so.6"; fileExists(libm) {
		tests = append(tests, struct{ name, path, want string }{"other shared library", libm, "not ONNX Runtime"})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Init(tc.path)
			if err == nil {
				t.Fatalf("Init(%q) succeeded", tc.path)
			}
			for _, want := range []string{tc.path, tc.want, RequiredVersion, "make ort", "--onnxruntime_lib", EnvLibrary} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Init(%q) error does not mention %q: %v", tc.path, want, err)
				}
			}
			if LoadedLibrary() != libPath {
				t.Errorf("failed Init changed the loaded library to %q", LoadedLibrary())
			}
		})
	}
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

func TestCheckVersion(t *testing.T) {
	tests := []struct {
		version string
		ok      bool
	}{
		{"1.31.1", true},
		{"1.31.0", true},
		{"1.31-dev", true},
		{"1.32.0", true},
		{"1.100.0", true},
		{"2.0.0", true},
		{"1.30.0", false},
		{"1.24.1", false},
		{"1.9.0", false}, // numeric, not string, comparison
		{"0.99.0", false},
		{"1", false},
		{"", false},
		{"one.two", false},
	}
	for _, tc := range tests {
		err := CheckVersion(tc.version)
		if (err == nil) != tc.ok {
			t.Errorf("CheckVersion(%q) = %v, want ok=%v", tc.version, err, tc.ok)
		}
		if err != nil && (!strings.Contains(err.Error(), MinVersion) || !strings.Contains(err.Error(), tc.version)) {
			t.Errorf("CheckVersion(%q) error must name both versions: %v", tc.version, err)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want []string // substrings; nil = valid
	}{
		{name: "zero value", opts: Options{}},
		{name: "explicit", opts: Options{IntraOpThreads: 2, InterOpThreads: 1, GraphOptLevel: OptBasic, Provider: ProviderCUDA, CUDADevice: 1}},
		{name: "auto", opts: Options{Provider: ProviderAuto, GraphOptLevel: OptDisabled}},
		{name: "negative intra", opts: Options{IntraOpThreads: -1}, want: []string{"intra-op"}},
		{name: "every problem", opts: Options{IntraOpThreads: -1, InterOpThreads: -2, GraphOptLevel: "max", Provider: "tpu", CUDADevice: -1},
			want: []string{"intra-op", "inter-op", `"max"`, `"tpu"`, "CUDA device"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.opts.Validate()
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate() = nil, want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q: %v", w, err)
				}
			}
		})
	}
	if (Options{}).Normalized() != (Options{GraphOptLevel: OptAll, Provider: ProviderCPU}) {
		t.Errorf("Normalized() of the zero value = %+v", Options{}.Normalized())
	}
}

func TestCUDAUnavailable(t *testing.T) {
	if fileExists(filepath.Join(filepath.Dir(libPath), "libonnxruntime_providers_cuda.so")) {
		t.Skip("this library has a CUDA provider; the error path is not reachable")
	}
	_, _, err := NewSessionOptions(Options{Provider: ProviderCUDA})
	if !errors.Is(err, ErrNoCUDA) {
		t.Fatalf("NewSessionOptions(cuda) = %v, want ErrNoCUDA", err)
	}
	for _, want := range []string{"CUDA was requested", "libonnxruntime_providers_cuda.so", "CUDA 12", "cuDNN 9", "1.31", "target gpu"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("CUDA error does not mention %q: %v", want, err)
		}
	}
	if err := (Options{Provider: ProviderCUDA}).Usable(); !errors.Is(err, ErrNoCUDA) {
		t.Errorf("Usable(cuda) = %v, want ErrNoCUDA", err)
	}
	if err := (Options{Provider: ProviderAuto}).Usable(); err != nil {
		t.Errorf("Usable(auto) = %v, want nil (falls back to the CPU)", err)
	}
	if _, err := NewSession(gap8, []string{"images"}, []string{"embeddings"}, Options{Provider: ProviderCUDA}); !errors.Is(err, ErrNoCUDA) {
		t.Errorf("NewSession(cuda) = %v, want ErrNoCUDA", err)
	}
	// "auto" falls back to the CPU and still runs.
	s, err := NewSession(gap8, []string{"images"}, []string{"embeddings"}, Options{Provider: ProviderAuto})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Provider() != ProviderCPU {
		t.Errorf("Provider() = %q, want cpu", s.Provider())
	}
	w := loadWeights(t)
	in := randomImages(1, w.Crop, 3)
	got := runGap8(t, s, in, 1, "embeddings")
	checkClose(t, got, expectedGap8(w, in, 1, true), 1e-5)
}

const (
	gap8        = "testdata/gap8.onnx"
	gap8Weights = "testdata/gap8.weights.json"
)

// gap8Model holds the fixture's weights, read from the JSON the fixture script writes.
type gap8Model struct {
	Crop int         `json:"crop_size"`
	Dim  int         `json:"dim"`
	W    [][]float64 `json:"w"`
	B    []float64   `json:"b"`
}

func loadWeights(t testing.TB) gap8Model {
	t.Helper()
	data, err := os.ReadFile(gap8Weights)
	if err != nil {
		t.Fatal(err)
	}
	var w gap8Model
	if err := json.Unmarshal(data, &w); err != nil {
		t.Fatal(err)
	}
	if len(w.W) != 3 || len(w.B) != w.Dim {
		t.Fatalf("bad weights file: %+v", w)
	}
	return w
}

// expectedGap8 computes the fixture graph in float64: per-channel mean, linear layer and,
// when normalize is set, L2 normalisation.
func expectedGap8(w gap8Model, images []float32, n int, normalize bool) []float64 {
	plane := w.Crop * w.Crop
	out := make([]float64, 0, n*w.Dim)
	for i := range n {
		var mean [3]float64
		for c := range 3 {
			for _, v := range images[(i*3+c)*plane : (i*3+c+1)*plane] {
				mean[c] += float64(v)
			}
			mean[c] /= float64(plane)
		}
		row := make([]float64, w.Dim)
		var norm float64
		for j := range w.Dim {
			row[j] = w.B[j]
			for c := range 3 {
				row[j] += mean[c] * w.W[c][j]
			}
			norm += row[j] * row[j]
		}
		if normalize {
			for j := range row {
				row[j] /= math.Sqrt(norm)
			}
		}
		out = append(out, row...)
	}
	return out
}

func randomImages(n, crop int, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 1))
	plane := crop * crop
	x := make([]float32, n*3*plane)
	for i := range x {
		// Per-item, per-channel offsets make the pooled means, and so the outputs, differ.
		item, c := i/(3*plane), (i/plane)%3
		x[i] = float32(0.5*r.NormFloat64() + 0.7*float64(c-1) + 0.3*float64(item%4))
	}
	return x
}

func runGap8(t testing.TB, s *Session, images []float32, n int, output string) []float32 {
	t.Helper()
	in, err := NewTensor([]int64{int64(n), 3, 16, 16}, images)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Destroy()
	out, err := NewTensor([]int64{int64(n), 8}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Destroy()
	if err := s.Run([]*Tensor{in}, []*Tensor{out}); err != nil {
		t.Fatal(err)
	}
	return append([]float32(nil), out.Data()...)
}

func checkClose(t testing.TB, got []float32, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d values, want %d", len(got), len(want))
	}
	for i := range got {
		if d := math.Abs(float64(got[i]) - want[i]); d > tol*(1+math.Abs(want[i])) {
			t.Fatalf("value %d = %v, want %v (|diff| %g > %g)", i, got[i], want[i], d, tol)
		}
	}
}

func TestRunKnownOutputs(t *testing.T) {
	w := loadWeights(t)
	s, err := NewSession(gap8, []string{"images"}, []string{"embeddings", "features"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const n = 3
	images := randomImages(n, w.Crop, 1)

	t.Run("preallocated outputs", func(t *testing.T) {
		in, err := NewTensor([]int64{n, 3, 16, 16}, images)
		if err != nil {
			t.Fatal(err)
		}
		defer in.Destroy()
		emb, _ := NewTensor([]int64{n, 8}, nil)
		feat, _ := NewTensor([]int64{n, 8}, nil)
		defer emb.Destroy()
		defer feat.Destroy()
		if err := s.Run([]*Tensor{in}, []*Tensor{emb, feat}); err != nil {
			t.Fatal(err)
		}
		checkClose(t, feat.Data(), expectedGap8(w, images, n, false), 1e-5)
		checkClose(t, emb.Data(), expectedGap8(w, images, n, true), 1e-5)
	})
	t.Run("runtime-allocated outputs", func(t *testing.T) {
		in, _ := NewTensor([]int64{n, 3, 16, 16}, images)
		defer in.Destroy()
		outs := []*Tensor{nil, nil}
		if err := s.Run([]*Tensor{in}, outs); err != nil {
			t.Fatal(err)
		}
		defer outs[0].Destroy()
		defer outs[1].Destroy()
		if got := outs[1].Shape(); len(got) != 2 || got[0] != n || got[1] != 8 {
			t.Fatalf("features shape %v, want [%d 8]", got, n)
		}
		checkClose(t, outs[1].Data(), expectedGap8(w, images, n, false), 1e-5)
		checkClose(t, outs[0].Data(), expectedGap8(w, images, n, true), 1e-5)
	})
}

// TestSpin: sessions whose thread pools spin-wait (Spin) and sessions whose pools sleep (the
// default) compute the same outputs.
func TestSpin(t *testing.T) {
	w := loadWeights(t)
	images := randomImages(4, w.Crop, 5)
	want := expectedGap8(w, images, 4, true)
	for _, spin := range []bool{false, true} {
		s, err := NewSession(gap8, []string{"images"}, []string{"embeddings"}, Options{IntraOpThreads: 2, Spin: spin})
		if err != nil {
			t.Fatalf("Spin %v: %v", spin, err)
		}
		checkClose(t, runGap8(t, s, images, 4, "embeddings"), want, 1e-5)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSessionInfo(t *testing.T) {
	s, err := NewSession(gap8, []string{"images"}, []string{"features"}, Options{IntraOpThreads: 1, GraphOptLevel: OptBasic})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := s.Inputs(); len(got) != 1 || got[0].String() != "images float32[-1,3,16,16]" {
		t.Errorf("Inputs() = %v", got)
	}
	if got := s.Outputs(); len(got) != 1 || got[0].String() != "features float32[-1,8]" {
		t.Errorf("Outputs() = %v", got)
	}
	if got := s.GraphOutputs(); len(got) != 2 {
		t.Errorf("GraphOutputs() = %v, want embeddings and features", got)
	}
	data, err := os.ReadFile(gap8)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := FileSHA256(gap8)
	if err != nil || s.ModelSHA256() != sum || len(sum) != 64 {
		t.Errorf("ModelSHA256() = %q, FileSHA256 = %q, %v", s.ModelSHA256(), sum, err)
	}
	if s.Options().GraphOptLevel != OptBasic || s.Options().Provider != ProviderCPU || len(data) == 0 {
		t.Errorf("Options() = %+v", s.Options())
	}
}

// TestDescribe: Describe reports the file's hash and graph, and a changed file is described
// again rather than served from the cache.
func TestDescribe(t *testing.T) {
	src, err := os.ReadFile(gap8)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "model.onnx")
	if err := os.WriteFile(p, src, 0o644); err != nil {
		t.Fatal(err)
	}
	first, err := Describe(p)
	if err != nil {
		t.Fatal(err)
	}
	sum, _ := FileSHA256(p)
	in, out, _ := Inspect(p)
	if first.SHA256 != sum || !reflect.DeepEqual(first.Inputs, in) || !reflect.DeepEqual(first.Outputs, out) {
		t.Fatalf("Describe = %+v, want sha %s, inputs %v, outputs %v", first, sum, in, out)
	}
	first.Inputs[0].Name = "changed by the caller"
	if again, err := Describe(p); err != nil || !reflect.DeepEqual(again.Inputs, in) {
		t.Errorf("second Describe = %+v, %v: the cache must not share slices with callers", again, err)
	}
	other, err := os.ReadFile("testdata/bad_shapes.onnx")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, other, 0o644); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(p, later, later); err != nil {
		t.Fatal(err)
	}
	changed, err := Describe(p)
	if err != nil {
		t.Fatal(err)
	}
	if sum2, _ := FileSHA256(p); changed.SHA256 != sum2 || changed.SHA256 == first.SHA256 {
		t.Errorf("after rewriting the file Describe's sha256 is %s, want %s", changed.SHA256, sum2)
	}
	if _, err := Describe(filepath.Join(t.TempDir(), "missing.onnx")); err == nil || !strings.Contains(err.Error(), "missing.onnx") {
		t.Errorf("Describe of a missing file = %v", err)
	}
}

func TestFileSHA256(t *testing.T) {
	p := filepath.Join(t.TempDir(), "abc")
	if err := os.WriteFile(p, []byte("abc"), 0o644); err != nil {
		t.Fatal(err)
	}
	// FIPS 180-2 test vector for "abc".
	const want = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
	if got, err := FileSHA256(p); err != nil || got != want {
		t.Errorf("FileSHA256 = %q, %v; want %q", got, err, want)
	}
	if _, err := FileSHA256(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("FileSHA256 of a missing file succeeded")
	}
}

func TestHashCache(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("STIR_CACHE_DIR", cache)
	p := filepath.Join(t.TempDir(), "model.onnx")
	if err := os.WriteFile(p, []byte("abc"), 0o644); err != nil {
		t.Fatal(err)
	}
	const abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
	hash := func() string {
		t.Helper()
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		sum, err := cachedSHA256(p, st)
		if err != nil {
			t.Fatal(err)
		}
		return sum
	}
	if got := hash(); got != abc {
		t.Fatalf("first hash %s, want %s", got, abc)
	}
	entries, _ := filepath.Glob(filepath.Join(HashCacheDir(), "*"))
	if len(entries) != 1 {
		t.Fatalf("cache holds %q, want one entry", entries)
	}
	// The entry is what a second run reads: a planted value comes back.
	planted := strings.Repeat("0", 64)
	if err := os.WriteFile(entries[0], []byte(planted), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := hash(); got != planted {
		t.Fatalf("second hash %s, want the cached %s", got, planted)
	}
	// Rewriting the file, even with the same size and modification time, misses the cache.
	st, _ := os.Stat(p)
	time.Sleep(10 * time.Millisecond)
	if err := os.WriteFile(p, []byte("abd"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, st.ModTime(), st.ModTime()); err != nil {
		t.Fatal(err)
	}
	want, _ := FileSHA256(p)
	if got := hash(); got != want || got == planted {
		t.Errorf("hash after a rewrite %s, want %s", got, want)
	}
	// Writing a new entry prunes those unused for a month; a recently read one stays.
	old := entries[0] // the first version's entry
	month := time.Now().Add(-31 * 24 * time.Hour)
	if err := os.Chtimes(old, month, month); err != nil {
		t.Fatal(err)
	}
	hash() // reads the current version's entry, marking it used
	time.Sleep(10 * time.Millisecond)
	if err := os.WriteFile(p, []byte("abe"), 0o644); err != nil {
		t.Fatal(err)
	}
	want, _ = FileSHA256(p)
	if got := hash(); got != want {
		t.Errorf("hash of a third version %s, want %s", got, want)
	}
	entries, _ = filepath.Glob(filepath.Join(HashCacheDir(), "*"))
	if _, err := os.Stat(old); !os.IsNotExist(err) || len(entries) != 2 {
		t.Errorf("after pruning the cache holds %q; want the month-old entry gone and two left", entries)
	}
	// A broken entry or an unusable cache directory falls back to hashing.
	for _, e := range entries {
		os.WriteFile(e, []byte("not a hash"), 0o644)
	}
	if got := hash(); got != want {
		t.Errorf("hash with a broken entry %s, want %s", got, want)
	}
	blocker := filepath.Join(t.TempDir(), "file")
	os.WriteFile(blocker, nil, 0o644)
	t.Setenv("STIR_CACHE_DIR", blocker)
	if got := hash(); got != want {
		t.Errorf("hash with an unusable cache %s, want %s", got, want)
	}
}

func TestNewSessionGraphErrors(t *testing.T) {
	tests := []struct {
		name          string
		model         string
		inputs, outs  []string
		wantProblems  []string
		wantGraphText string
	}{
		{"unknown names", gap8, []string{"pixels"}, []string{"embeddings", "logits"},
			[]string{`no input "pixels"`, `no output "logits"`}, "images float32[-1,3,16,16]"},
		{"not float32", "testdata/bad_rank_type.onnx", []string{"images"}, []string{"embeddings"},
			[]string{`input "images" is images float64[-1,16,16], want a float32 tensor`}, "embeddings float32[-1,16,16]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewSession(tc.model, tc.inputs, tc.outs, Options{})
			var ge *GraphError
			if !errors.As(err, &ge) {
				t.Fatalf("NewSession = %v, want a *GraphError", err)
			}
			if len(ge.Problems) != len(tc.wantProblems) {
				t.Errorf("problems = %q, want %d", ge.Problems, len(tc.wantProblems))
			}
			for _, w := range append(tc.wantProblems, tc.wantGraphText, tc.model) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q: %v", w, err)
				}
			}
		})
	}
	if _, err := NewSession("testdata/missing.onnx", []string{"images"}, []string{"embeddings"}, Options{}); err == nil || !strings.Contains(err.Error(), "missing.onnx") {
		t.Errorf("NewSession of a missing file = %v", err)
	}
	if _, err := NewSession(gap8, []string{"images"}, []string{"embeddings"}, Options{GraphOptLevel: "max"}); err == nil || !strings.Contains(err.Error(), `"max"`) {
		t.Errorf("NewSession with bad options = %v", err)
	}
}

func TestRunErrors(t *testing.T) {
	s, err := NewSession(gap8, []string{"images"}, []string{"embeddings"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	good, _ := NewTensor([]int64{1, 3, 16, 16}, nil)
	defer good.Destroy()
	badShape, _ := NewTensor([]int64{1, 2, 16, 16}, nil)
	defer badShape.Destroy()
	out, _ := NewTensor([]int64{1, 8}, nil)
	defer out.Destroy()
	tests := []struct {
		name      string
		in, out   []*Tensor
		wantError string
	}{
		{"wrong channel count", []*Tensor{badShape}, []*Tensor{out}, gap8},
		{"wrong number of inputs", []*Tensor{good, good}, []*Tensor{out}, "got 2 inputs"},
		{"nil input", []*Tensor{nil}, []*Tensor{out}, "nil or destroyed"},
	}
	for _, tc := range tests {
		if err := s.Run(tc.in, tc.out); err == nil || !strings.Contains(err.Error(), tc.wantError) {
			t.Errorf("%s: Run = %v, want an error mentioning %q", tc.name, err, tc.wantError)
		}
	}
	if err := s.Run([]*Tensor{good}, []*Tensor{out}); err != nil {
		t.Fatalf("Run after errors: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Run([]*Tensor{good}, []*Tensor{out}); !errors.Is(err, ErrClosed) {
		t.Errorf("Run after Close = %v, want ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if _, err := NewTensor([]int64{1, -1}, nil); err == nil {
		t.Error("NewTensor with a negative dimension succeeded")
	}
	if _, err := NewTensor([]int64{2, 8}, make([]float32, 3)); err == nil {
		t.Error("NewTensor with too little data succeeded")
	}
}

func TestRunConcurrent(t *testing.T) {
	s, err := NewSession(gap8, []string{"images"}, []string{"embeddings"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const n = 4
	images := randomImages(n, 16, 2)
	want := runGap8(t, s, images, n, "embeddings")
	const workers, runs = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for range runs {
				got := runGap8(t, s, images, n, "embeddings")
				if !equalBits(got, want) {
					errs <- errors.New("concurrent Run gave a different result")
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestRunSerialised checks that a Run waits while another forward pass of the same
// session is in progress (here, one the test holds), and goes ahead once it ends.
func TestRunSerialised(t *testing.T) {
	s, err := NewSession(gap8, []string{"images"}, []string{"embeddings"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	images := randomImages(2, 16, 3)
	want := runGap8(t, s, images, 2, "embeddings")
	s.pass.Lock() // a pass in progress
	done := make(chan []float32)
	go func() { done <- runGap8(t, s, images, 2, "embeddings") }()
	select {
	case <-done:
		t.Fatal("Run went ahead while another forward pass was in progress")
	case <-time.After(200 * time.Millisecond):
	}
	s.pass.Unlock()
	select {
	case got := <-done:
		if !equalBits(got, want) {
			t.Error("serialised Run gave a different result")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not go ahead after the other pass ended")
	}
}

func equalBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

func TestAcquireRelease(t *testing.T) {
	in, out := []string{"images"}, []string{"embeddings"}
	a, err := Acquire(gap8, in, out, Options{})
	if err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(gap8)
	b, err := Acquire(abs, in, out, Options{GraphOptLevel: OptAll, Provider: ProviderCPU})
	if err != nil {
		t.Fatal(err)
	}
	if a != b || SharedUsers(a) != 2 {
		t.Fatalf("Acquire twice: same=%v users=%d; want the same session with 2 users", a == b, SharedUsers(a))
	}
	other, err := Acquire(gap8, in, out, Options{IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	if other == a {
		t.Fatal("different options shared a session")
	}
	if err := Release(other); err != nil || !other.Closed() {
		t.Fatalf("Release(other) = %v, closed=%v", err, other.Closed())
	}
	if err := a.Close(); err == nil {
		t.Error("Close on a shared session succeeded; it must go through Release")
	}
	if err := Release(a); err != nil {
		t.Fatal(err)
	}
	if b.Closed() || SharedUsers(b) != 1 {
		t.Fatalf("after one Release: closed=%v users=%d", b.Closed(), SharedUsers(b))
	}
	images := randomImages(1, 16, 4)
	runGap8(t, b, images, 1, "embeddings")
	if err := Release(b); err != nil {
		t.Fatal(err)
	}
	if !b.Closed() || SharedUsers(b) != 0 {
		t.Fatalf("after the last Release: closed=%v users=%d", b.Closed(), SharedUsers(b))
	}
	if err := Release(b); err == nil {
		t.Error("a third Release succeeded")
	}
	plain, err := NewSession(gap8, in, out, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := Release(plain); err == nil {
		t.Error("Release of a NewSession session succeeded")
	}
	plain.Close()

	// Concurrent first use loads once.
	const users = 8
	got := make([]*Session, users)
	errs := make([]error, users)
	var wg sync.WaitGroup
	for i := range users {
		wg.Go(func() { got[i], errs[i] = Acquire(gap8, in, out, Options{}) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for _, s := range got[1:] {
		if s != got[0] {
			t.Fatal("concurrent Acquire returned different sessions")
		}
	}
	if got[0] == a {
		t.Error("Acquire after full release reused a closed session")
	}
	if SharedUsers(got[0]) != users {
		t.Errorf("users = %d, want %d", SharedUsers(got[0]), users)
	}
	for _, s := range got {
		if err := Release(s); err != nil {
			t.Fatal(err)
		}
	}
	if !got[0].Closed() {
		t.Error("session not closed after every user released it")
	}
	// A failed load is reported to every caller and not cached.
	if _, err := Acquire("testdata/missing.onnx", in, out, Options{}); err == nil {
		t.Error("Acquire of a missing model succeeded")
	}
}

// TestFixturesUpToDate regenerates the fixtures with the committed script and compares bytes.
func TestFixturesUpToDate(t *testing.T) {
	const py = "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import onnx, numpy").Run(); err != nil {
		t.Skipf("%s with python3-onnx is not available: %v", py, err)
	}
	dir := t.TempDir()
	cmd := exec.Command(py, "../recipe/make_ort_fixtures.py", dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make_ort_fixtures.py: %v\n%s", err, out)
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) == 0 {
		t.Fatalf("no fixtures generated: %v", err)
	}
	for _, e := range entries {
		fresh, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		committed, err := os.ReadFile(filepath.Join("testdata", e.Name()))
		if err != nil || !bytes.Equal(fresh, committed) {
			t.Errorf("testdata/%s differs from make_ort_fixtures.py output (rerun: /usr/bin/python3 models/recipe/make_ort_fixtures.py)", e.Name())
		}
	}
}
