package imageio

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// fixture is one entry of testdata/fixtures.json, written by
// models/recipe/make_decode_fixtures.py from PIL 9.4.
type fixture struct {
	PILMode   string `json:"pil_mode"`
	Width     int    `json:"width"`
	Height    int    `json:"height"`
	RGBSHA256 string `json:"rgb_sha256"`
	PILError  string `json:"pil_error"`
}

func loadFixtures(t *testing.T) map[string]fixture {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "fixtures.json"))
	if err != nil {
		t.Fatalf("read fixtures index (regenerate with models/recipe/make_decode_fixtures.py): %v", err)
	}
	var idx map[string]fixture
	if err := json.Unmarshal(data, &idx); err != nil {
		t.Fatalf("parse fixtures.json: %v", err)
	}
	return idx
}

// readPNGRGB reads a golden 8-bit RGB PNG through the standard library only.
func readPNGRGB(t *testing.T, path string) *RGB {
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
	out := NewRGB(b.Dx(), b.Dy())
	for y := 0; y < out.H; y++ {
		for x := 0; x < out.W; x++ {
			r, g, bb, a := m.At(b.Min.X+x, b.Min.Y+y).RGBA()
			if a != 0xffff {
				t.Fatalf("%s: golden pixel (%d,%d) is not opaque", path, x, y)
			}
			i := 3 * (y*out.W + x)
			out.Pix[i], out.Pix[i+1], out.Pix[i+2] = uint8(r>>8), uint8(g>>8), uint8(bb>>8)
		}
	}
	return out
}

// diff returns the largest and the mean absolute difference of two same-size images.
func diff(t *testing.T, got, want *RGB) (maxAbs int, meanAbs float64) {
	t.Helper()
	if got.W != want.W || got.H != want.H {
		t.Fatalf("size %dx%d, want %dx%d", got.W, got.H, want.W, want.H)
	}
	sum := 0
	for i := range got.Pix {
		d := int(got.Pix[i]) - int(want.Pix[i])
		if d < 0 {
			d = -d
		}
		sum += d
		maxAbs = max(maxAbs, d)
	}
	return maxAbs, float64(sum) / float64(max(len(got.Pix), 1))
}

func shaHex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestDecodeMatrix decodes every fixture and compares it with PIL's convert("RGB").
// Lossless formats and lossy WebP must match exactly; JPEG differs only through the
// inverse DCT (Go's image/jpeg vs libjpeg-turbo's islow), bounded here.
func TestDecodeMatrix(t *testing.T) {
	idx := loadFixtures(t)
	tests := []struct {
		file    string
		format  string
		reason  string  // expected rejection; "" decodes
		maxAbs  int     // largest allowed |Go - PIL| per channel
		meanAbs float64 // largest allowed mean |Go - PIL|
	}{
		{file: "jpeg_baseline_420.jpg", format: FormatJPEG, maxAbs: 6, meanAbs: 0.2},
		{file: "jpeg_baseline_422.jpg", format: FormatJPEG, maxAbs: 6, meanAbs: 0.2},
		{file: "jpeg_baseline_444.jpg", format: FormatJPEG, maxAbs: 6, meanAbs: 0.2},
		{file: "jpeg_progressive.jpg", format: FormatJPEG, maxAbs: 6, meanAbs: 0.2},
		{file: "jpeg_grey.jpg", format: FormatJPEG, maxAbs: 6, meanAbs: 0.2},
		{file: "jpeg_cmyk.jpg", format: FormatJPEG, maxAbs: 6, meanAbs: 0.2},
		{file: "jpeg_tiny.jpg", format: FormatJPEG, maxAbs: 6, meanAbs: 0.2},
		{file: "jpeg_large.jpg", format: FormatJPEG, maxAbs: 6, meanAbs: 0.2},
		{file: "jpeg_440.jpg", format: FormatJPEG, maxAbs: 6, meanAbs: 0.2},
		{file: "jpeg_411.jpg", format: FormatJPEG, maxAbs: 6, meanAbs: 0.2},
		{file: "jpeg_adobe_rgb.jpg", format: FormatJPEG, maxAbs: 6, meanAbs: 0.2},
		{file: "jpeg_ycck.jpg", format: FormatJPEG, maxAbs: 6, meanAbs: 0.2},
		{file: "png_rgb8.png", format: FormatPNG},
		{file: "png_rgba8.png", format: FormatPNG},
		{file: "png_rgb16.png", format: FormatPNG},
		{file: "png_rgba16.png", format: FormatPNG},
		{file: "png_grey8.png", format: FormatPNG},
		{file: "png_grey16.png", format: FormatPNG},
		{file: "png_greyalpha.png", format: FormatPNG},
		{file: "png_palette.png", format: FormatPNG},
		{file: "png_palette_trns.png", format: FormatPNG},
		{file: "png_1bit.png", format: FormatPNG},
		{file: "png_noiend.png", format: FormatPNG},
		{file: "png_named.jpg", format: FormatPNG},
		{file: "gif_anim.gif", format: FormatGIF},
		{file: "gif_offset.gif", format: FormatGIF},
		{file: "gif_offset_trns.gif", format: FormatGIF},
		{file: "webp_lossy.webp", format: FormatWebP},
		{file: "webp_lossy_alpha.webp", format: FormatWebP},
		{file: "webp_lossless.webp", format: FormatWebP},
		{file: "bad_empty.jpg", reason: ReasonEmpty},
		{file: "bad_text.jpg", reason: ReasonNotImage},
		{file: "bad_truncated.jpg", format: FormatJPEG, reason: ReasonCorrupt},
		{file: "bad_truncated.png", format: FormatPNG, reason: ReasonCorrupt},
		{file: "bad_truncated.gif", format: FormatGIF, reason: ReasonCorrupt},
		{file: "bad_truncated.webp", format: FormatWebP, reason: ReasonCorrupt},
		{file: "bad_bomb.png", format: FormatPNG, reason: ReasonTooLarge},
		{file: "bad_bmp.jpg", format: "bmp", reason: ReasonUnsupported},
		{file: "bad_anim.webp", format: FormatWebP, reason: ReasonUnsupported},
	}
	seen := map[string]bool{}
	for _, tc := range tests {
		seen[tc.file] = true
		t.Run(tc.file, func(t *testing.T) {
			fx, ok := idx[tc.file]
			if !ok {
				t.Fatalf("%s is not in testdata/fixtures.json", tc.file)
			}
			data, err := os.ReadFile(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			got, format, err := Decode(data, DefaultLimits())
			if format != tc.format {
				t.Errorf("format %q, want %q", format, tc.format)
			}
			if tc.reason != "" {
				if got != nil || ReasonOf(err) != tc.reason {
					t.Fatalf("Decode = (%v, %v), want reason %q", got != nil, err, tc.reason)
				}
				t.Logf("rejected as %s: %v (PIL: %s)", tc.reason, err, orOK(fx.PILError))
				return
			}
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if fx.PILError != "" {
				t.Fatalf("fixture index says PIL failed: %s", fx.PILError)
			}
			if got.W != fx.Width || got.H != fx.Height {
				t.Fatalf("size %dx%d, PIL %dx%d", got.W, got.H, fx.Width, fx.Height)
			}
			w, h, cfgFormat, err := DecodeConfig(data)
			if err != nil || w != fx.Width || h != fx.Height || cfgFormat != tc.format {
				t.Errorf("DecodeConfig = %d, %d, %q, %v; want %d, %d, %q", w, h, cfgFormat, err, fx.Width, fx.Height, tc.format)
			}
			stem := strings.TrimSuffix(tc.file, filepath.Ext(tc.file))
			want := readPNGRGB(t, filepath.Join("testdata", stem+".rgb.png"))
			if s := shaHex(want.Pix); s != fx.RGBSHA256 {
				t.Fatalf("golden %s.rgb.png does not match its SHA-256 in fixtures.json", stem)
			}
			maxAbs, meanAbs := diff(t, got, want)
			t.Logf("PIL mode %s: max |Go-PIL| = %d, mean = %.4f", fx.PILMode, maxAbs, meanAbs)
			if maxAbs > tc.maxAbs || meanAbs > tc.meanAbs {
				t.Errorf("differs from PIL: max %d (allowed %d), mean %.4f (allowed %.2f)", maxAbs, tc.maxAbs, meanAbs, tc.meanAbs)
			}
		})
	}
	for name := range idx {
		if !seen[name] {
			t.Errorf("fixture %s is not covered by the table", name)
		}
	}
}

func orOK(s string) string {
	if s == "" {
		return "decodes"
	}
	return s
}

// TestBombRejectedBeforeDecode checks that an image whose header claims 10^10 pixels is
// refused from its header alone: a full decode would allocate ~30 GB.
func TestBombRejectedBeforeDecode(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "bad_bomb.png"))
	if err != nil {
		t.Fatal(err)
	}
	w, h, _, err := DecodeConfig(data)
	if err != nil || w != 100000 || h != 100000 {
		t.Fatalf("DecodeConfig = %d, %d, %v; want the claimed 100000x100000", w, h, err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	img, _, err := Decode(data, DefaultLimits())
	runtime.ReadMemStats(&after)
	if img != nil || ReasonOf(err) != ReasonTooLarge {
		t.Fatalf("Decode = %v, %v; want reason %q", img != nil, err, ReasonTooLarge)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
		t.Errorf("rejecting the bomb allocated %d bytes; the limit must apply before decoding", alloc)
	}
}

func TestLimits(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "png_rgb8.png")) // 61x43
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		lim    Limits
		reason string
	}{
		{"defaults", Limits{}, ""},
		{"exact pixel limit", Limits{MaxPixels: 61 * 43}, ""},
		{"one pixel over", Limits{MaxPixels: 61*43 - 1}, ReasonTooLarge},
		{"exact byte limit", Limits{MaxBytes: int64(len(data))}, ""},
		{"one byte over", Limits{MaxBytes: int64(len(data)) - 1}, ReasonTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			img, _, err := Decode(data, tc.lim)
			if ReasonOf(err) != tc.reason {
				t.Fatalf("Decode: %v, want reason %q", err, tc.reason)
			}
			if tc.reason == "" && (img == nil || img.W != 61 || img.H != 43) {
				t.Fatalf("Decode returned %v", img)
			}
		})
	}
}

func TestDecodeFile(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.png")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join("testdata", "jpeg_large.jpg")
	tests := []struct {
		path   string
		lim    Limits
		reason string
	}{
		{filepath.Join("testdata", "png_named.jpg"), Limits{}, ""},
		{filepath.Join(dir, "nope.jpg"), Limits{}, ReasonMissing},
		{empty, Limits{}, ReasonEmpty},
		{dir, Limits{}, ReasonIO},
		{big, Limits{MaxBytes: 1000}, ReasonTooLarge},
		{filepath.Join("testdata", "bad_truncated.png"), Limits{}, ReasonCorrupt},
	}
	for _, tc := range tests {
		t.Run(filepath.Base(tc.path), func(t *testing.T) {
			img, _, err := DecodeFile(tc.path, tc.lim)
			if ReasonOf(err) != tc.reason {
				t.Fatalf("DecodeFile: %v, want reason %q", err, tc.reason)
			}
			if tc.reason != "" {
				if !strings.Contains(err.Error(), filepath.Base(tc.path)) && tc.reason != ReasonEmpty {
					t.Errorf("error %q does not name the file", err)
				}
				return
			}
			if img == nil || img.W == 0 {
				t.Fatal("no image")
			}
		})
	}
}

func TestSniff(t *testing.T) {
	tests := []struct {
		data string
		want string
	}{
		{"\xff\xd8\xff\xe0", FormatJPEG},
		{"\x89PNG\r\n\x1a\n....", FormatPNG},
		{"GIF89a", FormatGIF},
		{"GIF87a", FormatGIF},
		{"RIFF\x00\x00\x00\x00WEBPVP8 ", FormatWebP},
		{"RIFF\x00\x00\x00\x00WAVEfmt ", ""},
		{"II*\x00", "tiff"},
		{"\x00\x00\x00\x18ftypheic", "heif"},
		{"\x00\x00\x00\x18ftypavif", "avif"},
		{"\x00\x00\x00\x18ftypisom", ""},
		{"BMfoo", ""},
		{"%PDF-1.4", ""},
		{"", ""},
		{"\xff\xd8", ""},
	}
	for _, tc := range tests {
		if got := Sniff([]byte(tc.data)); got != tc.want {
			t.Errorf("Sniff(%q) = %q, want %q", tc.data, got, tc.want)
		}
	}
}

func TestErrorReason(t *testing.T) {
	base := errors.New("boom")
	e := &Error{Reason: ReasonCorrupt, Format: FormatPNG, Err: base}
	wrapped := errors.Join(errors.New("context"), e)
	if ReasonOf(wrapped) != ReasonCorrupt || !errors.Is(wrapped, base) {
		t.Errorf("ReasonOf/Is through wrapping failed: %v", wrapped)
	}
	if ReasonOf(nil) != "" || ReasonOf(base) != "" {
		t.Error("ReasonOf of nil or a plain error must be empty")
	}
	if got := e.Error(); got != "corrupt png image: boom" {
		t.Errorf("Error() = %q", got)
	}
}

// TestCMYKFormula pins PIL's cmyk2rgb on values checked against PIL 9.4.
func TestCMYKFormula(t *testing.T) {
	tests := []struct {
		c, m, y, k uint8
		r, g, b    uint8
	}{
		{0, 0, 0, 0, 255, 255, 255},
		{255, 0, 0, 0, 0, 255, 255},
		{100, 50, 200, 30, 137, 181, 49},
		{10, 20, 30, 255, 0, 0, 0},
		{128, 128, 128, 128, 63, 63, 63},
	}
	for _, tc := range tests {
		r, g, b := cmykToRGB(tc.c, tc.m, tc.y, tc.k)
		if r != tc.r || g != tc.g || b != tc.b {
			t.Errorf("cmykToRGB(%d,%d,%d,%d) = %d,%d,%d, want %d,%d,%d", tc.c, tc.m, tc.y, tc.k, r, g, b, tc.r, tc.g, tc.b)
		}
	}
}

// TestRGBImage checks the image.Image view of RGB with a PNG round trip.
func TestRGBImage(t *testing.T) {
	m := NewRGB(3, 2)
	for i := range m.Pix {
		m.Pix[i] = uint8(i * 13)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, m); err != nil {
		t.Fatal(err)
	}
	back, format, err := Decode(buf.Bytes(), Limits{})
	if err != nil || format != FormatPNG {
		t.Fatal(err)
	}
	if !bytes.Equal(back.Pix, m.Pix) {
		t.Errorf("round trip changed pixels: %v vs %v", back.Pix, m.Pix)
	}
	if c := m.At(-1, 0); c != (color.RGBA{}) {
		t.Errorf("At outside the image = %v, want transparent", c)
	}
	if c := m.At(1, 1); c != (color.RGBA{m.Pix[12], m.Pix[13], m.Pix[14], 255}) {
		t.Errorf("At(1, 1) = %v", c)
	}
}
