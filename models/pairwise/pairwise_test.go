package pairwise

import (
	"github.com/stirpipe/stirpipe/models/ort/orttest"

	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/stirpipe/stirpipe/models/imageio"
	"github.com/stirpipe/stirpipe/models/manifest"
	"github.com/stirpipe/stirpipe/models/ort"
	"github.com/stirpipe/stirpipe/models/preprocess"
	"github.com/stirpipe/stirpipe/models/zoo"
)

// batchTolerance bounds how far a pair's score may move with the batch it is scored in.
const batchTolerance = 1e-5

func TestMain(m *testing.M) { orttest.Main(m, "models/pairwise") }

// load reads one of the committed stir-tiny manifests.
func load(t *testing.T, file string) *manifest.Manifest {
	t.Helper()
	p, err := zoo.ModelPath(zoo.STIRTinyName, file)
	if err != nil {
		t.Fatal(err)
	}
	m, err := manifest.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func open(t *testing.T) *Scorer {
	t.Helper()
	s, err := Open(load(t, "pairwise.json"), ort.Options{IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// goldenInputs returns the golden pairs and the model inputs of every golden image: the
// PIL crops stored with pairwise.json, normalised by models/preprocess.
func goldenInputs(t *testing.T, p manifest.Preprocess) ([]zoo.GoldenPair, [][]float32) {
	t.Helper()
	g, err := zoo.LoadPairwiseGolden(zoo.STIRTinyName)
	if err != nil {
		t.Fatal(err)
	}
	xs := make([][]float32, len(g.Images))
	for i, im := range g.Images {
		img, _, err := imageio.DecodeFile(g.Path(im.Preprocessed), imageio.DefaultLimits())
		if err != nil {
			t.Fatal(err)
		}
		xs[i] = make([]float32, 3*p.CropSize*p.CropSize)
		if err := preprocess.Normalize(img, p, xs[i]); err != nil {
			t.Fatalf("%s: %v", im.Preprocessed, err)
		}
	}
	return g.Pairs, xs
}

// TestBatchIndependence scores five real pairs one at a time and together, in two orders:
// each pair's score must not depend on its batch or position.
func TestBatchIndependence(t *testing.T) {
	s := open(t)
	pairs, xs := goldenInputs(t, s.Manifest().Preprocess)
	picked := []int{0, 5, 7, 10, 14} // pairs of three different queries
	if len(pairs) <= picked[len(picked)-1] {
		t.Fatalf("golden file has %d pairs, want ≥ %d", len(pairs), picked[len(picked)-1]+1)
	}
	alone := make([]float32, len(picked))
	for i, k := range picked {
		out, err := s.Score(xs[pairs[k].Query], xs[pairs[k].Candidate], 1)
		if err != nil {
			t.Fatal(err)
		}
		alone[i] = out[0]
	}
	// The check can only see mixing up if the pairs score differently.
	for i := range alone {
		for j := range i {
			if math.Abs(float64(alone[i]-alone[j])) < 1e-3 {
				t.Fatalf("pairs %d and %d score %v and %v: too close to tell apart", picked[j], picked[i], alone[j], alone[i])
			}
		}
	}
	for _, c := range []struct {
		name  string
		order []int // positions into picked
	}{
		{"in order", []int{0, 1, 2, 3, 4}},
		{"reversed", []int{4, 3, 2, 1, 0}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var q, cand []float32
			for _, i := range c.order {
				q = append(q, xs[pairs[picked[i]].Query]...)
				cand = append(cand, xs[pairs[picked[i]].Candidate]...)
			}
			got, err := s.Score(q, cand, len(c.order))
			if err != nil {
				t.Fatal(err)
			}
			var worst float64
			for pos, i := range c.order {
				d := math.Abs(float64(got[pos] - alone[i]))
				worst = max(worst, d)
				if d > batchTolerance {
					t.Errorf("pair %d at position %d of %d: score %v, alone %v (diff %.3g > %g)", picked[i], pos, len(c.order), got[pos], alone[i], d, batchTolerance)
				}
			}
			t.Logf("batch of %d vs one at a time: max abs score diff %.3g", len(c.order), worst)
		})
	}
}

func TestOpenRefusesEmbedder(t *testing.T) {
	m := load(t, "embedder.json")
	s, err := Open(m, ort.Options{IntraOpThreads: 1})
	if err == nil {
		s.Close()
		t.Fatal("Open of an embedder manifest: no error")
	}
	for _, want := range []string{m.Name, `kind "embedder"`, `want "pairwise"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if _, err := Open(nil, ort.Options{}); err == nil {
		t.Error("Open(nil): no error")
	}
	if _, err := Verify(m, ort.Options{}); err == nil || !strings.Contains(err.Error(), `want "pairwise"`) {
		t.Errorf("Verify of an embedder manifest = %v", err)
	}
}

// TestVerify: the pairwise manifest passes Verify with the SHA-256 that Open reports.
func TestVerify(t *testing.T) {
	sha, err := Verify(load(t, "pairwise.json"), ort.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if s := open(t); sha != s.ModelSHA256() {
		t.Errorf("Verify sha256 %q, Open's %q", sha, s.ModelSHA256())
	}
}

func TestCompatible(t *testing.T) {
	pair, emb := load(t, "pairwise.json"), load(t, "embedder.json")
	for _, c := range []struct {
		name string
		edit func(*manifest.Preprocess)
		ok   bool
	}{
		{"same preprocessing", func(*manifest.Preprocess) {}, true},
		{"resize_to", func(p *manifest.Preprocess) { p.ResizeTo = 256 }, false},
		{"crop_size", func(p *manifest.Preprocess) { p.CropSize = 192 }, false},
		{"mean", func(p *manifest.Preprocess) { p.Mean = [3]float32{0.5, 0.5, 0.5} }, false},
		{"std", func(p *manifest.Preprocess) { p.Std[2] = 0.3 }, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := *emb
			c.edit(&e.Preprocess)
			err := Compatible(pair, &e)
			if c.ok {
				if err != nil {
					t.Errorf("Compatible: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("embedder preprocessing %+v vs pairwise %+v: no error", e.Preprocess, pair.Preprocess)
			}
			for _, want := range []string{pair.Name, e.Name} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not name model %q", err, want)
				}
			}
		})
	}
}

func TestSigmoid(t *testing.T) {
	// ref is the logistic function in float64, in the form that does not overflow for x < 0.
	ref := func(x float64) float64 {
		if x < 0 {
			e := math.Exp(x)
			return e / (1 + e)
		}
		return 1 / (1 + math.Exp(-x))
	}
	for _, x := range []float32{0, 1, -1, 0.25, -3.5, 8, -8, 17, -17, 30, -30, 88, -88, 103, -103, 1e4, -1e4,
		float32(math.Inf(1)), float32(math.Inf(-1))} {
		got := Sigmoid(x)
		want := ref(float64(x))
		if math.IsNaN(float64(got)) || got < 0 || got > 1 {
			t.Errorf("Sigmoid(%v) = %v, want a value in [0, 1]", x, got)
			continue
		}
		// float32 rounding of the float64 value: half an ulp relative, or the smallest
		// subnormal for results below the float32 range.
		if d := math.Abs(float64(got) - want); d > want*6e-8 && d > math.SmallestNonzeroFloat32 {
			t.Errorf("Sigmoid(%v) = %v, want %v (diff %.3g)", x, got, want, d)
		}
	}
	if Sigmoid(0) != 0.5 || Sigmoid(1e4) != 1 || Sigmoid(-1e4) != 0 {
		t.Errorf("Sigmoid(0, 1e4, -1e4) = %v, %v, %v, want 0.5, 1, 0", Sigmoid(0), Sigmoid(1e4), Sigmoid(-1e4))
	}
}

func TestScoreBufferErrors(t *testing.T) {
	s := open(t)
	l := s.InputLen()
	for _, c := range []struct {
		name         string
		query, cand  int // floats
		n            int
		want1, want2 string
	}{
		{"query one image short", l, 2 * l, 2, fmt.Sprintf("batch holds %d floats", l), fmt.Sprintf("= %d", 2*l)},
		{"candidate one image short", 2 * l, l, 2, fmt.Sprintf("batch holds %d floats", l), fmt.Sprintf("= %d", 2*l)},
		{"both one float short", l - 1, l - 1, 1, fmt.Sprintf("batch holds %d floats", l-1), fmt.Sprintf("= %d", l)},
		{"both too long for n", 2 * l, 2 * l, 1, fmt.Sprintf("batch holds %d floats", 2*l), fmt.Sprintf("= %d", l)},
		{"empty batch", 0, 0, 0, "batch of 0 pairs", "want ≥ 1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, err := s.Score(make([]float32, c.query), make([]float32, c.cand), c.n)
			if err == nil {
				t.Fatalf("Score(%d, %d floats, n=%d) = %v, want an error", c.query, c.cand, c.n, out)
			}
			for _, want := range []string{"pairwise", c.want1, c.want2} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
		})
	}
}
