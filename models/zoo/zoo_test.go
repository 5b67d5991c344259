package zoo

import (
	"github.com/stirpipe/stirpipe/models/ort/orttest"

	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"image"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stirpipe/stirpipe/models/imageio"
	"github.com/stirpipe/stirpipe/models/imagemodel"
	"github.com/stirpipe/stirpipe/models/manifest"
	"github.com/stirpipe/stirpipe/models/ort"
	"github.com/stirpipe/stirpipe/models/preprocess"
)

// Tolerances of the golden comparisons. PNG decoding is exact in both worlds, so PNG
// sources must reproduce PIL's crop byte for byte. Go's image/jpeg is not libjpeg-turbo
// (chroma upsampling and IDCT rounding differ), so JPEG sources get a small bound.
const (
	jpegMaxAbs  = 6   // uint8 levels, any pixel of the 224×224 crop (measured: 4)
	jpegMeanAbs = 0.2 // uint8 levels, mean over the crop (measured: ≤ 0.052)

	minCosineOurs = 0.999   // our preprocessing + ONNX Runtime vs torch
	maxAbsOurs    = 0.01    // same, per value
	minCosinePIL  = 0.99999 // PIL's crop + ONNX Runtime vs torch
	maxAbsPIL     = 1e-4    // same, per value
)

func TestMain(m *testing.M) { orttest.Main(m, "models/zoo") }

// tiny loads the committed tiny embedder's manifest and golden file.
func tiny(t *testing.T) (*manifest.Manifest, *Golden) {
	t.Helper()
	mp, err := ModelPath(TinyEmbedderName, "embedder.json")
	if err != nil {
		t.Fatal(err)
	}
	m, err := manifest.Load(mp)
	if err != nil {
		t.Fatal(err)
	}
	g, err := LoadGolden(TinyEmbedderName)
	if err != nil {
		t.Fatal(err)
	}
	return m, g
}

func name(im GoldenImage) string {
	return strings.TrimSuffix(filepath.Base(im.Source), filepath.Ext(im.Source))
}

func box(im GoldenImage) *image.Rectangle {
	if im.BBox == nil {
		return nil
	}
	r := image.Rect(im.BBox[0], im.BBox[1], im.BBox[2], im.BBox[3])
	return &r
}

// pilCrop reads PIL's preprocessed PNG with the standard library only.
func pilCrop(t *testing.T, g *Golden, im GoldenImage) *imageio.RGB {
	t.Helper()
	f, err := os.Open(g.Path(im.Preprocessed))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	src, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", im.Preprocessed, err)
	}
	b := src.Bounds()
	out := imageio.NewRGB(b.Dx(), b.Dy())
	for y := 0; y < b.Dy(); y++ {
		for x := 0; x < b.Dx(); x++ {
			r, gg, bb, a := src.At(b.Min.X+x, b.Min.Y+y).RGBA()
			if a != 0xffff {
				t.Fatalf("%s: pixel (%d,%d) is not opaque", im.Preprocessed, x, y)
			}
			i := 3 * (y*out.W + x)
			out.Pix[i], out.Pix[i+1], out.Pix[i+2] = uint8(r>>8), uint8(gg>>8), uint8(bb>>8)
		}
	}
	return out
}

// ourCrop decodes the source file and preprocesses it with the pipeline's packages.
func ourCrop(t *testing.T, g *Golden, im GoldenImage, p manifest.Preprocess) *imageio.RGB {
	t.Helper()
	data, err := os.ReadFile(g.Path(im.Source))
	if err != nil {
		t.Fatal(err)
	}
	img, format, err := imageio.Decode(data, imageio.DefaultLimits())
	if err != nil {
		t.Fatalf("%s: %v", im.Source, err)
	}
	if format != im.Format {
		t.Errorf("%s: imageio says %q, PIL said %q", im.Source, format, im.Format)
	}
	if img.W != im.Width || img.H != im.Height {
		t.Errorf("%s: decoded %dx%d, PIL %dx%d", im.Source, img.W, img.H, im.Width, im.Height)
	}
	crop, err := preprocess.Resized(img, box(im), p)
	if err != nil {
		t.Fatalf("%s: %v", im.Source, err)
	}
	return crop
}

// torchTensor is torchvision's ToTensor + Normalize of a uint8 crop, written out
// independently of models/preprocess: every step a float32 operation.
func torchTensor(img *imageio.RGB, p manifest.Preprocess) []float32 {
	n := img.W * img.H
	out := make([]float32, 3*n)
	for i := range n {
		for c := range 3 {
			x := float32(img.Pix[3*i+c]) / 255
			x = float32(x - p.Mean[c])
			out[c*n+i] = float32(x / p.Std[c])
		}
	}
	return out
}

func tensorSHA256(x []float32) string {
	b := make([]byte, 4*len(x))
	for i, v := range x {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func pixelDiff(a, b *imageio.RGB) (maxAbs int, meanAbs float64) {
	var sum int
	for i := range a.Pix {
		d := int(a.Pix[i]) - int(b.Pix[i])
		if d < 0 {
			d = -d
		}
		sum += d
		maxAbs = max(maxAbs, d)
	}
	return maxAbs, float64(sum) / float64(len(a.Pix))
}

func cosine(a, b []float32) float64 {
	var ab, aa, bb float64
	for i := range a {
		ab += float64(a[i]) * float64(b[i])
		aa += float64(a[i]) * float64(a[i])
		bb += float64(b[i]) * float64(b[i])
	}
	return ab / math.Sqrt(aa*bb)
}

func maxAbsDiff(a, b []float32) float64 {
	var m float64
	for i := range a {
		m = max(m, math.Abs(float64(a[i])-float64(b[i])))
	}
	return m
}

// TestGoldenMatchesModel ties the golden file to the committed graph and manifest.
func TestGoldenMatchesModel(t *testing.T) {
	m, g := tiny(t)
	sum, err := ort.FileSHA256(m.Model)
	if err != nil {
		t.Fatal(err)
	}
	if sum != g.Model.SHA256 {
		t.Errorf("%s has sha256 %s, golden.json was made for %s: rerun models/recipe/golden.py", m.Model, sum, g.Model.SHA256)
	}
	if abs, _ := filepath.Abs(g.Path(g.Model.ONNX)); abs != m.Model {
		t.Errorf("golden model %s, manifest model %s", abs, m.Model)
	}
	if g.Model.Name != m.Name {
		t.Errorf("golden model name %q, manifest %q", g.Model.Name, m.Name)
	}
	if !m.Preprocess.Equal(manifest.ImageNet()) {
		t.Errorf("manifest preprocess %+v, want manifest.ImageNet() %+v", m.Preprocess, manifest.ImageNet())
	}
	gp := g.Preprocess
	if gp.ResizeTo != m.Preprocess.ResizeTo || gp.CropSize != m.Preprocess.CropSize || gp.Mean != m.Preprocess.Mean || gp.Std != m.Preprocess.Std {
		t.Errorf("golden preprocess %+v differs from the manifest's %+v", gp, m.Preprocess)
	}
	for _, im := range g.Images {
		if len(im.Embedding) != m.Dim {
			t.Errorf("%s: embedding of %d values, manifest dim %d", im.Source, len(im.Embedding), m.Dim)
		}
	}
}

// TestGoldenCoverage keeps the golden set honest when it is regenerated: enough images,
// both formats, boxes, upscaling, and centre-crop margins where round-half-even matters.
func TestGoldenCoverage(t *testing.T) {
	m, g := tiny(t)
	count := map[string]int{}
	for _, im := range g.Images {
		count["format "+im.Format]++
		count["mode "+im.Mode]++
		w, h := im.Width, im.Height
		if im.BBox != nil {
			count["bbox"]++
			w, h = im.BBox[2]-im.BBox[0], im.BBox[3]-im.BBox[1]
		}
		if min(w, h) < m.Preprocess.ResizeTo {
			count["upscaled"]++
		} else {
			count["downscaled"]++
		}
		rw, rh := preprocess.OutputSize(w, h, m.Preprocess.ResizeTo)
		if [2]int{rw, rh} != im.Resized {
			t.Errorf("%s: preprocess.OutputSize(%d, %d) = %dx%d, torchvision %v", im.Source, w, h, rw, rh, im.Resized)
		}
		if (max(rw, rh)-m.Preprocess.CropSize)%2 == 1 {
			count["odd margin"]++
		}
		if w*4 < h*3 || h*4 < w*3 {
			count["aspect beyond 3:4"]++
		}
	}
	t.Logf("golden coverage: %v", count)
	if len(g.Images) < 20 {
		t.Errorf("%d golden images, want ≥ 20", len(g.Images))
	}
	for _, k := range []string{"format jpeg", "format png", "mode RGB", "mode L", "mode P", "mode RGBA",
		"bbox", "upscaled", "downscaled", "odd margin", "aspect beyond 3:4"} {
		if count[k] < 1 {
			t.Errorf("no golden image with %s", k)
		}
	}
}

// TestGoldenPreprocessing compares our uint8 crop with PIL's and our float tensor with
// torchvision's for every golden image.
func TestGoldenPreprocessing(t *testing.T) {
	m, g := tiny(t)
	p := m.Preprocess
	var worstMax int
	var worstMean, worstTensor float64
	for _, im := range g.Images {
		t.Run(name(im), func(t *testing.T) {
			want := pilCrop(t, g, im)
			ref := torchTensor(want, p)
			if got := tensorSHA256(ref); got != im.TensorSHA256 {
				t.Fatalf("float32 ToTensor+Normalize of PIL's crop hashes to %s, torch's tensor to %s", got, im.TensorSHA256)
			}
			got := ourCrop(t, g, im, p)
			if got.W != want.W || got.H != want.H {
				t.Fatalf("crop is %dx%d, PIL's %dx%d", got.W, got.H, want.W, want.H)
			}
			maxAbs, meanAbs := pixelDiff(got, want)
			x := make([]float32, 3*p.CropSize*p.CropSize)
			if err := preprocess.Normalize(got, p, x); err != nil {
				t.Fatal(err)
			}
			tensorDiff := maxAbsDiff(x, ref)
			t.Logf("%-5s %-4s bbox=%v: uint8 max %d mean %.4f; tensor max %.3g", im.Format, im.Mode, im.BBox != nil, maxAbs, meanAbs, tensorDiff)
			worstMax, worstMean, worstTensor = max(worstMax, maxAbs), max(worstMean, meanAbs), max(worstTensor, tensorDiff)
			switch im.Format {
			case "png":
				if maxAbs != 0 {
					t.Errorf("PNG source: crop differs from PIL's by up to %d levels (mean %.4f), want identical", maxAbs, meanAbs)
				}
				if tensorSHA256(x) != im.TensorSHA256 {
					t.Errorf("PNG source: tensor differs from torch's (max abs %.3g), want bit-identical", tensorDiff)
				}
			case "jpeg":
				if maxAbs > jpegMaxAbs || meanAbs > jpegMeanAbs {
					t.Errorf("JPEG source: crop differs from PIL's by up to %d levels (mean %.4f), want ≤ %d (mean ≤ %.2f)", maxAbs, meanAbs, jpegMaxAbs, jpegMeanAbs)
				}
			default:
				t.Errorf("no tolerance for format %q", im.Format)
			}
		})
	}
	t.Logf("all images: uint8 max abs %d, worst mean abs %.4f, tensor max abs %.3g", worstMax, worstMean, worstTensor)
}

// embed runs the tiny embedder over tensors, one batch.
func embed(t *testing.T, m *manifest.Manifest, xs [][]float32) [][]float32 {
	t.Helper()
	e, err := imagemodel.OpenEmbedder(m, ort.Options{IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	batch := make([]float32, 0, len(xs)*e.InputLen())
	for _, x := range xs {
		batch = append(batch, x...)
	}
	out, err := e.Embed(batch, len(xs))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// compareEmbeddings checks each embedding against torch's: cosine ≥ minCos, and closer to
// its own reference than to any other image's (so the check can tell images apart).
func compareEmbeddings(t *testing.T, g *Golden, got [][]float32, minCos, maxAbs float64) {
	t.Helper()
	worstCos, worstAbs, worstOther := 1.0, 0.0, -1.0
	for i, im := range g.Images {
		c := cosine(got[i], im.Embedding)
		d := maxAbsDiff(got[i], im.Embedding)
		other := -1.0
		for j, o := range g.Images {
			if j != i {
				other = max(other, cosine(got[i], o.Embedding))
			}
		}
		worstCos, worstAbs, worstOther = min(worstCos, c), max(worstAbs, d), max(worstOther, other)
		if c < minCos || d > maxAbs {
			t.Errorf("%s: cosine %.7f (want ≥ %v), max abs diff %.3g (want ≤ %.3g)", im.Source, c, minCos, d, maxAbs)
		}
		if c <= other {
			t.Errorf("%s: cosine with its own reference %.7f is not above the best other image's %.7f", im.Source, c, other)
		}
	}
	t.Logf("%d images: min cosine %.7f, max abs diff %.3g; highest cosine to another image's reference %.5f",
		len(g.Images), worstCos, worstAbs, worstOther)
}

// TestGoldenEmbeddings runs the whole Go path (imageio, preprocess, ONNX Runtime) on the
// source files and compares with torch on PIL's preprocessing.
func TestGoldenEmbeddings(t *testing.T) {
	m, g := tiny(t)
	xs := make([][]float32, len(g.Images))
	for i, im := range g.Images {
		xs[i] = make([]float32, 3*m.Preprocess.CropSize*m.Preprocess.CropSize)
		if err := preprocess.Normalize(ourCrop(t, g, im, m.Preprocess), m.Preprocess, xs[i]); err != nil {
			t.Fatal(err)
		}
	}
	compareEmbeddings(t, g, embed(t, m, xs), minCosineOurs, maxAbsOurs)
}

// TestGoldenRuntime feeds torch's exact input tensors (from PIL's crops) to ONNX Runtime,
// isolating the runtime from preprocessing.
func TestGoldenRuntime(t *testing.T) {
	m, g := tiny(t)
	xs := make([][]float32, len(g.Images))
	for i, im := range g.Images {
		xs[i] = torchTensor(pilCrop(t, g, im), m.Preprocess)
		if s := tensorSHA256(xs[i]); s != im.TensorSHA256 {
			t.Fatalf("%s: tensor hash %s, torch's %s", im.Preprocessed, s, im.TensorSHA256)
		}
	}
	compareEmbeddings(t, g, embed(t, m, xs), minCosinePIL, maxAbsPIL)
}

// TestDir checks the located directory is this package's.
func TestDir(t *testing.T) {
	d := Dir()
	if !filepath.IsAbs(d) {
		t.Fatalf("Dir() = %q, want an absolute path", d)
	}
	if _, err := os.Stat(filepath.Join(d, "zoo.go")); err != nil {
		t.Errorf("Dir() = %q does not hold zoo.go: %v", d, err)
	}
	if _, err := ModelPath(TinyEmbedderName, "missing.onnx"); err == nil {
		t.Error("ModelPath of a missing file: no error")
	}
}
