package imagemodel

import (
	"github.com/stirpipe/stirpipe/models/ort/orttest"

	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/stirpipe/stirpipe/models/manifest"
	"github.com/stirpipe/stirpipe/models/ort"
)

const (
	fixtures    = "../ort/testdata/"
	gap8JSON    = fixtures + "gap8.json"
	gap8Weights = fixtures + "gap8.weights.json"
	vitTiny     = "../zoo/vit-tiny/embedder.json"
)

func TestMain(m *testing.M) { orttest.Main(m, "models/imagemodel") }

// loadManifest reads the gap8 fixture manifest and applies edit to it.
func loadManifest(t testing.TB, edit func(*manifest.Manifest)) *manifest.Manifest {
	t.Helper()
	m, err := manifest.Load(gap8JSON)
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(m)
	}
	return m
}

func open(t testing.TB, m *manifest.Manifest) *Model {
	t.Helper()
	e, err := OpenEmbedder(m, ort.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

type gap8Model struct {
	Crop int         `json:"crop_size"`
	Dim  int         `json:"dim"`
	W    [][]float64 `json:"w"`
	B    []float64   `json:"b"`
}

// expected computes the gap8 fixture in float64 from its published weights: channel means,
// linear layer, L2 normalisation.
func expected(t testing.TB, images []float32, n int) [][]float64 {
	t.Helper()
	data, err := os.ReadFile(gap8Weights)
	if err != nil {
		t.Fatal(err)
	}
	var w gap8Model
	if err := json.Unmarshal(data, &w); err != nil {
		t.Fatal(err)
	}
	plane := w.Crop * w.Crop
	out := make([][]float64, n)
	for i := range n {
		row := slicesClone(w.B)
		for c := range 3 {
			var mean float64
			for _, v := range images[(i*3+c)*plane : (i*3+c+1)*plane] {
				mean += float64(v)
			}
			mean /= float64(plane)
			for j := range row {
				row[j] += mean * w.W[c][j]
			}
		}
		var norm float64
		for _, v := range row {
			norm += v * v
		}
		for j := range row {
			row[j] /= math.Sqrt(norm)
		}
		out[i] = row
	}
	return out
}

func slicesClone(s []float64) []float64 { return append([]float64(nil), s...) }

func images(n, crop int, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 7))
	plane := crop * crop
	x := make([]float32, n*3*plane)
	for i := range x {
		item, c := i/(3*plane), (i/plane)%3
		x[i] = float32(0.5*r.NormFloat64() + 0.8*float64(c-1) + 0.25*float64(item%5))
	}
	return x
}

func TestEmbedKnownOutputs(t *testing.T) {
	e := open(t, loadManifest(t, nil))
	if e.Dim() != 8 || e.InputLen() != 3*16*16 || e.FixedBatch() != 0 || e.Provider() != ort.ProviderCPU {
		t.Fatalf("Dim=%d InputLen=%d FixedBatch=%d Provider=%q", e.Dim(), e.InputLen(), e.FixedBatch(), e.Provider())
	}
	sum, err := ort.FileSHA256(fixtures + "gap8.onnx")
	if err != nil || e.ModelSHA256() != sum {
		t.Errorf("ModelSHA256() = %q, want %q (%v)", e.ModelSHA256(), sum, err)
	}
	if m := e.Manifest(); m.Name != "gap8-fixture" || m.Dim != 8 {
		t.Errorf("Manifest() = %+v", m)
	}
	e.Manifest().Inputs[0] = "mutated"
	if e.Manifest().Inputs[0] != "images" {
		t.Error("Manifest() exposes the Model's own manifest")
	}
	const n = 4
	x := images(n, 16, 1)
	got, err := e.Embed(x, n)
	if err != nil {
		t.Fatal(err)
	}
	want := expected(t, x, n)
	if len(got) != n {
		t.Fatalf("got %d rows, want %d", len(got), n)
	}
	for i := range n {
		if len(got[i]) != 8 || cap(got[i]) != 8 {
			t.Fatalf("row %d has len %d cap %d, want 8", i, len(got[i]), cap(got[i]))
		}
		for j := range got[i] {
			if d := math.Abs(float64(got[i][j]) - want[i][j]); d > 1e-5 {
				t.Fatalf("embedding[%d][%d] = %v, want %v", i, j, got[i][j], want[i][j])
			}
		}
	}
	// EmbedInto writes into the caller's buffer.
	dst := make([]float32, n*8)
	if err := e.EmbedInto(dst, x, n); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		for j := range 8 {
			if dst[i*8+j] != got[i][j] {
				t.Fatalf("EmbedInto[%d][%d] = %v, Embed gave %v", i, j, dst[i*8+j], got[i][j])
			}
		}
	}
}

// TestBatchIndependence: an item's embedding does not depend on the rest of its batch.
func TestBatchIndependence(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*manifest.Manifest)
	}{
		{"gap8", nil},
		{"dynamic spatial", func(m *manifest.Manifest) { m.Model = fixtures + "dynamic_spatial.onnx" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := open(t, loadManifest(t, tc.edit))
			const n = 5
			x := images(n, 16, 2)
			batch, err := e.Embed(x, n)
			if err != nil {
				t.Fatal(err)
			}
			for i := range n {
				alone, err := e.Embed(x[i*e.InputLen():(i+1)*e.InputLen()], 1)
				if err != nil {
					t.Fatal(err)
				}
				for j := range alone[0] {
					if d := math.Abs(float64(alone[0][j] - batch[i][j])); d > 1e-6 {
						t.Fatalf("item %d dim %d: alone %v, in a batch of %d %v", i, j, alone[0][j], n, batch[i][j])
					}
				}
			}
		})
	}
}

func TestOpenMismatch(t *testing.T) {
	tests := []struct {
		name string
		edit func(*manifest.Manifest)
		want []string // one substring per expected problem line
	}{
		{
			name: "unknown input and output names",
			edit: func(m *manifest.Manifest) { m.Inputs = []string{"pixels"}; m.Output = "logits" },
			want: []string{
				`manifest inputs[0] = "pixels": the graph has no such input (graph inputs: images float32[-1,3,16,16])`,
				`manifest output = "logits": the graph has no such output (graph outputs: embeddings float32[-1,8], features float32[-1,8])`,
			},
		},
		{
			name: "wrong channels, size and dim",
			edit: func(m *manifest.Manifest) { m.Model = fixtures + "bad_shapes.onnx" },
			want: []string{
				"has 1 channels (images float32[2,1,20,24]), want 3",
				"manifest preprocess.crop_size = 16, but the graph input's height is 20",
				"manifest preprocess.crop_size = 16, but the graph input's width is 24",
				"manifest dim = 8, but the graph output's last dimension is 5",
			},
		},
		{
			name: "wrong type and ranks",
			edit: func(m *manifest.Manifest) { m.Model = fixtures + "bad_rank_type.onnx" },
			want: []string{
				`manifest inputs[0] = "images": the graph input is images float64[-1,16,16], want a float32 tensor`,
				"the graph input has rank 3 (images float64[-1,16,16]), want 4",
				"the graph output has rank 3 (embeddings float32[-1,16,16]), want 2",
			},
		},
		{
			name: "dim only",
			edit: func(m *manifest.Manifest) { m.Dim = 16 },
			want: []string{"manifest dim = 16, but the graph output's last dimension is 8 (embeddings float32[-1,8])"},
		},
		{
			name: "crop size only",
			edit: func(m *manifest.Manifest) { m.Preprocess.CropSize, m.Preprocess.ResizeTo = 32, 36 },
			want: []string{
				"manifest preprocess.crop_size = 32, but the graph input's height is 16",
				"manifest preprocess.crop_size = 32, but the graph input's width is 16",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := loadManifest(t, tc.edit)
			e, err := OpenEmbedder(m, ort.Options{})
			if err == nil {
				e.Close()
				t.Fatal("Open succeeded")
			}
			msg := err.Error()
			if _, verr := VerifyEmbedder(m, ort.Options{}); verr == nil || verr.Error() != msg {
				t.Errorf("Verify = %v, want Open's error", verr)
			}
			for _, w := range append(tc.want, m.Model, "does not match its manifest") {
				if !strings.Contains(msg, w) {
					t.Errorf("error does not mention %q:\n%s", w, msg)
				}
			}
			// One line for the heading plus one per problem: every problem, nothing more.
			if lines := strings.Count(msg, "\n"); lines != len(tc.want) {
				t.Errorf("error has %d problem lines, want %d:\n%s", lines, len(tc.want), msg)
			}
		})
	}
}

func TestOpenRejects(t *testing.T) {
	tests := []struct {
		name string
		m    *manifest.Manifest
		want string
	}{
		{"nil manifest", nil, "nil manifest"},
		{"invalid manifest", loadManifest(t, func(m *manifest.Manifest) { m.Dim = 0 }), "dim must be ≥ 1"},
		{"pairwise kind", loadManifest(t, func(m *manifest.Manifest) {
			m.Kind, m.Inputs, m.Dim, m.Distance = manifest.KindPairwise, []string{"q", "c"}, 1, "sigmoid_logit"
		}), `kind "pairwise"`},
		{"missing model file", loadManifest(t, func(m *manifest.Manifest) { m.Model = fixtures + "missing.onnx" }), "missing.onnx"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := OpenEmbedder(tc.m, ort.Options{})
			if err == nil {
				e.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error does not mention %q: %v", tc.want, err)
			}
			if _, err := VerifyEmbedder(tc.m, ort.Options{}); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Verify = %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
	if _, err := OpenEmbedder(loadManifest(t, nil), ort.Options{Provider: "tpu"}); err == nil || !strings.Contains(err.Error(), `"tpu"`) {
		t.Errorf("Open with bad options = %v", err)
	}
	if _, err := VerifyEmbedder(loadManifest(t, nil), ort.Options{Provider: "tpu"}); err == nil || !strings.Contains(err.Error(), `"tpu"`) {
		t.Errorf("Verify with bad options = %v", err)
	}
}

// TestVerify: a good model passes Verify with the SHA-256 that Open's session reports.
func TestVerify(t *testing.T) {
	m := loadManifest(t, nil)
	sha, err := VerifyEmbedder(m, ort.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := open(t, m)
	if sha != e.ModelSHA256() || len(sha) != 64 {
		t.Errorf("Verify sha256 %q, Open's %q", sha, e.ModelSHA256())
	}
}

func TestFixedBatch(t *testing.T) {
	e := open(t, loadManifest(t, func(m *manifest.Manifest) { m.Model = fixtures + "fixed_batch2.onnx" }))
	if e.FixedBatch() != 2 {
		t.Fatalf("FixedBatch() = %d, want 2", e.FixedBatch())
	}
	x := images(3, 16, 3)
	got, err := e.Embed(x[:2*e.InputLen()], 2)
	if err != nil {
		t.Fatal(err)
	}
	want := expected(t, x, 2)
	for i := range 2 {
		for j := range 8 {
			if d := math.Abs(float64(got[i][j]) - want[i][j]); d > 1e-5 {
				t.Fatalf("embedding[%d][%d] = %v, want %v", i, j, got[i][j], want[i][j])
			}
		}
	}
	for _, n := range []int{1, 3} {
		if _, err := e.Embed(x[:n*e.InputLen()], n); err == nil || !strings.Contains(err.Error(), "fixed batch size of 2") {
			t.Errorf("Embed(n=%d) = %v, want a fixed-batch error", n, err)
		}
	}
}

func TestEmbedErrors(t *testing.T) {
	e := open(t, loadManifest(t, nil))
	x := images(2, 16, 4)
	tests := []struct {
		name  string
		dst   []float32
		batch []float32
		n     int
		want  string
	}{
		{"zero images", make([]float32, 0), nil, 0, "want ≥ 1"},
		{"short batch", make([]float32, 16), x[:len(x)-1], 2, "batch holds 1535 floats, want 2 images × 3×16×16 = 1536"},
		{"long batch", make([]float32, 8), x, 1, "batch holds 1536 floats"},
		{"short output", make([]float32, 15), x, 2, "output buffer holds 15 floats"},
	}
	for _, tc := range tests {
		if err := e.EmbedInto(tc.dst, tc.batch, tc.n); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: EmbedInto = %v, want an error mentioning %q", tc.name, err, tc.want)
		}
	}
	if _, err := e.Embed(x, 0); err == nil {
		t.Error("Embed(n=0) succeeded")
	}
}

// TestCheck: a manifest that claims normalised outputs for a graph that does not
// normalise is caught by Check; a non-finite row is told apart from a norm problem.
func TestCheck(t *testing.T) {
	x := images(2, 16, 5)
	lying := open(t, loadManifest(t, func(m *manifest.Manifest) { m.Output = "features" }))
	rows, err := lying.Embed(x, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := lying.Check(rows[0]); !errors.Is(err, ErrNorm) || !strings.Contains(err.Error(), "L2 norm") {
		t.Errorf("Check with a wrong normalized flag = %v, want ErrNorm", err)
	}
	honest := open(t, loadManifest(t, func(m *manifest.Manifest) { m.Output, m.Normalized = "features", false }))
	rows, err = honest.Embed(x, 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if err := honest.Check(r); err != nil {
			t.Errorf("Check of unnormalised features = %v", err)
		}
	}
	bad := append([]float32(nil), rows[0]...)
	bad[3] = float32(math.NaN())
	if err := honest.Check(bad); !errors.Is(err, ErrNonFinite) {
		t.Errorf("Check of a NaN row = %v, want ErrNonFinite", err)
	}
}

func TestSharedSessionAndClose(t *testing.T) {
	a := open(t, loadManifest(t, nil))
	b := open(t, loadManifest(t, nil))
	if a.Session() != b.Session() || ort.SharedUsers(a.Session()) != 2 {
		t.Fatalf("two Embedders of one model: same session=%v users=%d", a.Session() == b.Session(), ort.SharedUsers(a.Session()))
	}
	x := images(1, 16, 6)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if _, err := a.Embed(x, 1); !errors.Is(err, ort.ErrClosed) {
		t.Errorf("Embed after Close = %v, want ErrClosed", err)
	}
	if _, err := b.Embed(x, 1); err != nil {
		t.Fatalf("the other Model stopped working: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if !b.Session().Closed() {
		t.Error("session still open after every Model closed")
	}
}

func TestConcurrentEmbed(t *testing.T) {
	e := open(t, loadManifest(t, nil))
	sizes := []int{1, 3, 5, 8}
	inputs := make([][]float32, len(sizes))
	want := make([][][]float32, len(sizes))
	for k, n := range sizes {
		inputs[k] = images(n, 16, uint64(10+k))
		var err error
		if want[k], err = e.Embed(inputs[k], n); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			for r := range 20 {
				k := (g + r) % len(sizes)
				got, err := e.Embed(inputs[k], sizes[k])
				if err != nil {
					errs <- err
					return
				}
				for i := range got {
					for j := range got[i] {
						if got[i][j] != want[k][i][j] {
							errs <- fmt.Errorf("goroutine %d: batch of %d item %d differs", g, sizes[k], i)
							return
						}
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestZooTinyViT runs the committed tiny ViT embedder, when present.
func TestZooTinyViT(t *testing.T) {
	if _, err := os.Stat(vitTiny); err != nil {
		t.Skipf("no committed tiny ViT (%v)", err)
	}
	m, err := manifest.Load(vitTiny)
	if err != nil {
		t.Fatal(err)
	}
	e := open(t, m)
	const n = 3
	x := images(n, m.Preprocess.CropSize, 7)
	got, err := e.Embed(x, n)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if len(got[i]) != m.Dim {
			t.Fatalf("row %d has %d values, want %d", i, len(got[i]), m.Dim)
		}
		alone, err := e.Embed(x[i*e.InputLen():(i+1)*e.InputLen()], 1)
		if err != nil {
			t.Fatal(err)
		}
		for j := range alone[0] {
			if d := math.Abs(float64(alone[0][j] - got[i][j])); d > 1e-5 {
				t.Fatalf("item %d dim %d: alone %v, in a batch %v", i, j, alone[0][j], got[i][j])
			}
		}
	}
	if same := equalRows(got[0], got[1]); same {
		t.Error("different images gave identical embeddings")
	}
}

func equalRows(a, b []float32) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func BenchmarkEmbed(b *testing.B) {
	e := open(b, loadManifest(b, nil))
	for _, n := range []int{1, 8, 32} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			x := images(n, 16, 8)
			dst := make([]float32, n*e.Dim())
			b.ReportAllocs()
			for b.Loop() {
				if err := e.EmbedInto(dst, x, n); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/image")
		})
	}
}

// ExampleEmbedder embeds two preprocessed images with the gap8 test fixture.
func ExampleModel() {
	m, err := manifest.Load("../ort/testdata/gap8.json")
	if err != nil {
		fmt.Println(err)
		return
	}
	e, err := OpenEmbedder(m, ort.Options{IntraOpThreads: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer e.Close()
	batch := make([]float32, 2*e.InputLen()) // two all-zero CHW images
	rows, err := e.Embed(batch, 2)
	if err != nil {
		fmt.Println(err)
		return
	}
	var norm float64
	for _, v := range rows[0] {
		norm += float64(v) * float64(v)
	}
	fmt.Printf("%d embeddings of dim %d, L2 norm %.3f\n", len(rows), e.Dim(), math.Sqrt(norm))
	// Output: 2 embeddings of dim 8, L2 norm 1.000
}
