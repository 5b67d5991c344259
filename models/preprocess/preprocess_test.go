package preprocess

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stirpipe/stirpipe/models/imageio"
	"github.com/stirpipe/stirpipe/models/manifest"
)

// pattern is the integer-only synthetic image of make_decode_fixtures.py.
func pattern(w, h int) *imageio.RGB {
	m := imageio.NewRGB(w, h)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			i := 3 * (y*w + x)
			m.Pix[i] = uint8((x*5 + y*3 + (x*y)>>4) & 255)
			m.Pix[i+1] = uint8(((x ^ y) * 7) & 255)
			m.Pix[i+2] = uint8(((x/7+y/5)%2)*200 + 30)
		}
	}
	return m
}

func shaHex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func floatBytes(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	return b
}

type cases struct {
	Mean   [3]float32 `json:"mean"`
	Std    [3]float32 `json:"std"`
	Resize []struct {
		Src    [2]int `json:"src"`
		Out    [2]int `json:"out"`
		SHA256 string `json:"sha256"`
	} `json:"resize"`
	Pipeline []struct {
		Src          [2]int `json:"src"`
		Box          []int  `json:"box"`
		ResizeTo     int    `json:"resize_to"`
		CropSize     int    `json:"crop_size"`
		CropSHA256   string `json:"crop_sha256"`
		TensorSHA256 string `json:"tensor_sha256"`
	} `json:"pipeline"`
}

func loadCases(t *testing.T) cases {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "cases.json"))
	if err != nil {
		t.Fatalf("%v (regenerate with models/recipe/make_decode_fixtures.py)", err)
	}
	var c cases
	if err := json.Unmarshal(data, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func config(resizeTo, crop int, mean, std [3]float32) manifest.Preprocess {
	p := manifest.ImageNet()
	p.ResizeTo, p.CropSize, p.Mean, p.Std = resizeTo, crop, mean, std
	return p
}

// TestResizeBicubicMatchesPIL compares ResizeBicubic byte for byte with PIL 9.4's
// Image.resize(BICUBIC) over upscales, downscales, mixed, 1-pixel and extreme sizes.
func TestResizeBicubicMatchesPIL(t *testing.T) {
	c := loadCases(t)
	if len(c.Resize) < 50 {
		t.Fatalf("only %d resize cases", len(c.Resize))
	}
	for _, tc := range c.Resize {
		got := ResizeBicubic(pattern(tc.Src[0], tc.Src[1]), tc.Out[0], tc.Out[1])
		if got.W != tc.Out[0] || got.H != tc.Out[1] {
			t.Fatalf("%v→%v: got %dx%d", tc.Src, tc.Out, got.W, got.H)
		}
		if s := shaHex(got.Pix); s != tc.SHA256 {
			t.Errorf("%dx%d → %dx%d differs from PIL", tc.Src[0], tc.Src[1], tc.Out[0], tc.Out[1])
		}
	}
}

// TestPipelineMatchesTorchvision compares the uint8 crop and the float32 tensor with
// torchvision's Resize(BICUBIC) + CenterCrop + ToTensor + Normalize after PIL's crop.
func TestPipelineMatchesTorchvision(t *testing.T) {
	c := loadCases(t)
	for _, tc := range c.Pipeline {
		name := fmt.Sprintf("%dx%d box=%v r%d c%d", tc.Src[0], tc.Src[1], tc.Box, tc.ResizeTo, tc.CropSize)
		pp, err := New(config(tc.ResizeTo, tc.CropSize, c.Mean, c.Std))
		if err != nil {
			t.Fatal(err)
		}
		var box *image.Rectangle
		if tc.Box != nil {
			r := image.Rect(tc.Box[0], tc.Box[1], tc.Box[2], tc.Box[3])
			box = &r
		}
		img := pattern(tc.Src[0], tc.Src[1])
		crop, err := pp.Resized(img, box)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if s := shaHex(crop.Pix); s != tc.CropSHA256 {
			t.Errorf("%s: uint8 crop differs from torchvision", name)
		}
		dst := make([]float32, pp.TensorLen())
		if err := pp.Tensor(img, box, dst); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if s := shaHex(floatBytes(dst)); s != tc.TensorSHA256 {
			t.Errorf("%s: float32 tensor differs from torchvision", name)
		}
	}
}

// TestTensorGolden compares a whole tensor value by value (a readable failure when the
// hashes above disagree).
func TestTensorGolden(t *testing.T) {
	c := loadCases(t)
	raw, err := os.ReadFile(filepath.Join("testdata", "tensor_97x61_r40_c32.f32"))
	if err != nil {
		t.Fatal(err)
	}
	dst := make([]float32, 3*32*32)
	if len(raw) != 4*len(dst) {
		t.Fatalf("golden has %d bytes, want %d", len(raw), 4*len(dst))
	}
	if err := Tensor(pattern(97, 61), nil, config(40, 32, c.Mean, c.Std), dst); err != nil {
		t.Fatal(err)
	}
	var maxAbs float64
	for i, v := range dst {
		want := math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		maxAbs = max(maxAbs, math.Abs(float64(v-want)))
	}
	t.Logf("max |Go - torchvision| = %g", maxAbs)
	if maxAbs != 0 {
		t.Errorf("tensor differs from torchvision by up to %g", maxAbs)
	}
}

type decodeFixture struct {
	PILMode       string `json:"pil_mode"`
	Crop224SHA256 string `json:"crop224_sha256"`
}

func readGoldenRGB(t *testing.T, path string) *imageio.RGB {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	b := m.Bounds()
	out := imageio.NewRGB(b.Dx(), b.Dy())
	for y := 0; y < out.H; y++ {
		for x := 0; x < out.W; x++ {
			c := color.NRGBAModel.Convert(m.At(b.Min.X+x, b.Min.Y+y)).(color.NRGBA)
			i := 3 * (y*out.W + x)
			out.Pix[i], out.Pix[i+1], out.Pix[i+2] = c.R, c.G, c.B
		}
	}
	return out
}

// TestDecodedFixtures runs the ImageNet transform on the imageio decoding matrix. From
// PIL's own decoded pixels the 224 crop must equal torchvision's; from Go's decoding it
// must too for lossless formats and lossy WebP, while JPEG carries the small IDCT
// differences of the decoder, reported and bounded here.
func TestDecodedFixtures(t *testing.T) {
	dir := filepath.Join("..", "imageio", "testdata")
	data, err := os.ReadFile(filepath.Join(dir, "fixtures.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx map[string]decodeFixture
	if err := json.Unmarshal(data, &idx); err != nil {
		t.Fatal(err)
	}
	pp, err := New(manifest.ImageNet())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for name, fx := range idx {
		if fx.Crop224SHA256 == "" {
			continue
		}
		n++
		t.Run(name, func(t *testing.T) {
			stem := strings.TrimSuffix(name, filepath.Ext(name))
			ref, err := pp.Resized(readGoldenRGB(t, filepath.Join(dir, stem+".rgb.png")), nil)
			if err != nil {
				t.Fatal(err)
			}
			if shaHex(ref.Pix) != fx.Crop224SHA256 {
				t.Fatalf("224 crop of PIL's pixels differs from torchvision's")
			}
			img, format, err := imageio.DecodeFile(filepath.Join(dir, name), imageio.Limits{})
			if err != nil {
				t.Skipf("not decodable here (%v); PIL's pixels checked above", err)
			}
			got, err := pp.Resized(img, nil)
			if err != nil {
				t.Fatal(err)
			}
			maxAbs, sum := 0, 0
			for i := range got.Pix {
				d := int(got.Pix[i]) - int(ref.Pix[i])
				d = max(d, -d)
				maxAbs, sum = max(maxAbs, d), sum+d
			}
			mean := float64(sum) / float64(len(got.Pix))
			t.Logf("%s (PIL mode %s): 224 crop max |Go-PIL| = %d, mean = %.4f", format, fx.PILMode, maxAbs, mean)
			allowMax, allowMean := 0, 0.0
			if format == imageio.FormatJPEG {
				allowMax, allowMean = 6, 0.2
			}
			if maxAbs > allowMax || mean > allowMean {
				t.Errorf("224 crop differs from torchvision's: max %d (allowed %d), mean %.4f (allowed %.2f)", maxAbs, allowMax, mean, allowMean)
			}
		})
	}
	if n < 20 {
		t.Errorf("only %d decodable fixtures", n)
	}
}

func TestBoxes(t *testing.T) {
	img := pattern(40, 30)
	p := config(16, 12, [3]float32{0.5, 0.5, 0.5}, [3]float32{0.25, 0.25, 0.25})
	whole, err := Resized(img, nil, p)
	if err != nil {
		t.Fatal(err)
	}
	rect := func(x0, y0, x1, y1 int) *image.Rectangle { r := image.Rect(x0, y0, x1, y1); return &r }
	// image.Rect canonicalises, so build inverted and empty boxes by hand.
	inverted := &image.Rectangle{Min: image.Pt(10, 5), Max: image.Pt(5, 20)}
	tests := []struct {
		name   string
		box    *image.Rectangle
		reason string
		same   bool // same result as no box
	}{
		{"whole image", rect(0, 0, 40, 30), "", true},
		{"inside", rect(5, 3, 33, 27), "", false},
		{"one pixel", rect(39, 29, 40, 30), "", false},
		{"partly outside", rect(30, 20, 50, 45), "", false},
		{"negative corner", rect(-5, -5, 10, 10), "", false},
		{"inverted", inverted, ReasonBadBox, false},
		{"empty", &image.Rectangle{Min: image.Pt(3, 3), Max: image.Pt(3, 9)}, ReasonBadBox, false},
		{"right of image", rect(40, 0, 50, 30), ReasonBadBox, false},
		{"below image", rect(0, 35, 40, 60), ReasonBadBox, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Resized(img, tc.box, p)
			if imageio.ReasonOf(err) != tc.reason {
				t.Fatalf("err = %v, want reason %q", err, tc.reason)
			}
			if tc.reason != "" {
				return
			}
			if got.W != 12 || got.H != 12 {
				t.Fatalf("size %dx%d", got.W, got.H)
			}
			if tc.same != bytes.Equal(got.Pix, whole.Pix) {
				t.Errorf("same as no box = %v, want %v", !tc.same, tc.same)
			}
			// The crop is the resize of the explicitly cropped (black-padded) image.
			want, err := Resized(padCrop(img, *tc.box), nil, p)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Pix, want.Pix) {
				t.Error("differs from cropping first")
			}
		})
	}
}

// padCrop is PIL's img.crop: pixels of the box outside the image are black.
func padCrop(img *imageio.RGB, b image.Rectangle) *imageio.RGB {
	out := imageio.NewRGB(b.Dx(), b.Dy())
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			if x >= 0 && y >= 0 && x < img.W && y < img.H {
				copy(out.Pix[3*((y-b.Min.Y)*out.W+x-b.Min.X):][:3], img.Pix[3*(y*img.W+x):])
			}
		}
	}
	return out
}

func TestOutputSizeAndOffset(t *testing.T) {
	sizes := []struct{ w, h, size, ow, oh int }{
		{640, 480, 224, 298, 224},
		{480, 640, 224, 224, 298},
		{500, 500, 224, 224, 224},
		{1000, 3, 224, 74666, 224},
		{3, 700, 224, 224, 52266},
		{333, 250, 256, 340, 256},
		{1, 1, 224, 224, 224},
	}
	for _, tc := range sizes {
		if ow, oh := OutputSize(tc.w, tc.h, tc.size); ow != tc.ow || oh != tc.oh {
			t.Errorf("OutputSize(%d, %d, %d) = %d, %d; want %d, %d", tc.w, tc.h, tc.size, ow, oh, tc.ow, tc.oh)
		}
	}
	offsets := []struct{ side, crop, want int }{
		{224, 224, 0}, {225, 224, 0}, {226, 224, 1}, {227, 224, 2}, {229, 224, 2}, {298, 224, 37}, {299, 224, 38},
	}
	for _, tc := range offsets {
		if got := CenterOffset(tc.side, tc.crop); got != tc.want {
			t.Errorf("CenterOffset(%d, %d) = %d, want %d", tc.side, tc.crop, got, tc.want)
		}
	}
}

func TestErrors(t *testing.T) {
	p := manifest.ImageNet()
	pp, err := New(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := pp.Tensor(pattern(10, 10), nil, make([]float32, 5)); err == nil {
		t.Error("short tensor buffer accepted")
	}
	if err := pp.Normalize(pattern(10, 10), make([]float32, pp.TensorLen())); err == nil {
		t.Error("normalising a wrong-size image accepted")
	}
	if _, err := pp.Resized(&imageio.RGB{}, nil); err == nil {
		t.Error("empty image accepted")
	}
	bad := p
	bad.CropSize = 300
	if _, err := New(bad); err == nil {
		t.Error("crop larger than resize accepted")
	}
}

// TestTensorAllocs checks that steady-state Tensor calls allocate nothing.
func TestTensorAllocs(t *testing.T) {
	pp, err := New(manifest.ImageNet())
	if err != nil {
		t.Fatal(err)
	}
	img := pattern(500, 375)
	box := image.Rect(20, 10, 480, 370)
	dst := make([]float32, pp.TensorLen())
	allocs := testing.AllocsPerRun(20, func() {
		if err := pp.Tensor(img, &box, dst); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 0 {
		t.Errorf("Tensor allocates %.1f times per call, want 0", allocs)
	}
}

// TestExtremeAspectMemory checks that only the centre window is resampled: a 40000×1
// image resizes to 8960000×224 before its crop, which must not be materialised.
func TestExtremeAspectMemory(t *testing.T) {
	pp, err := New(manifest.ImageNet())
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range []*imageio.RGB{pattern(40000, 1), pattern(1, 40000)} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		crop, err := pp.Resized(img, nil)
		runtime.ReadMemStats(&after)
		if err != nil {
			t.Fatal(err)
		}
		if crop.W != 224 || crop.H != 224 {
			t.Fatalf("crop %dx%d", crop.W, crop.H)
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4<<20 {
			t.Errorf("%dx%d: allocated %d bytes", img.W, img.H, alloc)
		}
	}
}

// TestConcurrent checks that one Preprocessor shared by goroutines (pooled scratch,
// shared coefficient cache) gives every image the result it gets alone.
func TestConcurrent(t *testing.T) {
	pp, err := New(manifest.ImageNet())
	if err != nil {
		t.Fatal(err)
	}
	sizes := [][2]int{{300, 200}, {200, 300}, {224, 224}, {97, 61}, {640, 100}}
	want := make([][]float32, len(sizes))
	for i, s := range sizes {
		want[i] = make([]float32, pp.TensorLen())
		if err := pp.Tensor(pattern(s[0], s[1]), nil, want[i]); err != nil {
			t.Fatal(err)
		}
	}
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		go func() {
			dst := make([]float32, pp.TensorLen())
			for r := 0; r < 5; r++ {
				i := (g + r) % len(sizes)
				if err := pp.Tensor(pattern(sizes[i][0], sizes[i][1]), nil, dst); err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(floatBytes(dst), floatBytes(want[i])) {
					errs <- fmt.Errorf("goroutine %d: size %v differs from the serial result", g, sizes[i])
					return
				}
			}
			errs <- nil
		}()
	}
	for g := 0; g < 8; g++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

func jpegOf(t testing.TB, img *imageio.RGB) []byte {
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// BenchmarkJPEGToTensor is the per-image cost of the embed pipeline before inference:
// decode a 500×500 JPEG and produce its 224×224 tensor.
func BenchmarkJPEGToTensor(b *testing.B) {
	data := jpegOf(b, pattern(500, 500))
	pp, err := New(manifest.ImageNet())
	if err != nil {
		b.Fatal(err)
	}
	dst := make([]float32, pp.TensorLen())
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		img, _, err := imageio.Decode(data, imageio.Limits{})
		if err != nil {
			b.Fatal(err)
		}
		if err := pp.Tensor(img, nil, dst); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTensor is the preprocessing alone on an already decoded 500×500 image.
func BenchmarkTensor(b *testing.B) {
	img := pattern(500, 500)
	pp, err := New(manifest.ImageNet())
	if err != nil {
		b.Fatal(err)
	}
	dst := make([]float32, pp.TensorLen())
	b.ReportAllocs()
	for b.Loop() {
		if err := pp.Tensor(img, nil, dst); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeJPEG is the decoding alone.
func BenchmarkDecodeJPEG(b *testing.B) {
	data := jpegOf(b, pattern(500, 500))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := imageio.Decode(data, imageio.Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}
