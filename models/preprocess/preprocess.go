// Package preprocess turns a decoded image into a model input tensor with the evaluation
// transform of method.md §2, driven by a manifest.Preprocess: crop to the row's bounding
// box, resize the shorter side to ResizeTo with PIL's antialiased bicubic filter, centre
// crop CropSize×CropSize, scale to [0, 1], normalise per channel, lay out as CHW float32.
//
// It reproduces OML's torchvision pipeline (PIL 9.4 img.crop, torchvision 0.14
// Resize(ResizeTo, BICUBIC) + CenterCrop(CropSize) + ToTensor + Normalize) exactly:
// the uint8 crop byte for byte and the float32 tensor bit for bit. Only the crop window
// is resampled, and Tensor writes into a caller-provided slice, so batching allocates
// nothing per image.
package preprocess

import (
	"errors"
	"fmt"
	"image"
	"math"

	"github.com/stirpipe/stirpipe/models/imageio"
	"github.com/stirpipe/stirpipe/models/manifest"
)

// ReasonBadBox is the rejects-file reason of a bounding box that is empty, inverted or
// entirely outside its image. Errors carrying it are *imageio.Error, so
// imageio.ReasonOf reads decode and preprocess failures alike.
const ReasonBadBox = "bad_box"

// Preprocessor applies one manifest.Preprocess. It is immutable and safe for concurrent
// use.
type Preprocessor struct {
	p   manifest.Preprocess
	lut [3][256]float32 // normalised value of each channel byte
}

// New validates p and returns its Preprocessor.
func New(p manifest.Preprocess) (*Preprocessor, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	pp := &Preprocessor{p: p}
	for c := 0; c < 3; c++ {
		for v := 0; v < 256; v++ {
			// torchvision: ToTensor divides by 255, Normalize subtracts the mean and
			// divides by the std, each a float32 operation.
			x := float32(v) / 255
			x = float32(x - p.Mean[c])
			pp.lut[c][v] = x / p.Std[c]
		}
	}
	return pp, nil
}

// Config returns the preprocessing block the Preprocessor applies.
func (pp *Preprocessor) Config() manifest.Preprocess { return pp.p }

// TensorLen is the number of float32 values of one image: 3·CropSize·CropSize.
func (pp *Preprocessor) TensorLen() int { return 3 * pp.p.CropSize * pp.p.CropSize }

// OutputSize is torchvision 0.14's Resize(size) output for a w×h image: the shorter side
// becomes size, the longer int(size·long/short) (truncated).
func OutputSize(w, h, size int) (ow, oh int) {
	if w <= h {
		return size, int(float64(size*h) / float64(w))
	}
	return int(float64(size*w) / float64(h)), size
}

// CenterOffset is torchvision's CenterCrop offset along a side: int(round((side-crop)/2))
// with Python's round-half-to-even.
func CenterOffset(side, crop int) int {
	return int(math.RoundToEven(float64(side-crop) / 2))
}

// Resized returns the CropSize×CropSize uint8 image that the model sees before
// normalisation: img cropped to box (nil for the whole image), resized, centre-cropped.
func (pp *Preprocessor) Resized(img *imageio.RGB, box *image.Rectangle) (*imageio.RGB, error) {
	out := imageio.NewRGB(pp.p.CropSize, pp.p.CropSize)
	sc := scratchPool.Get().(*scratch)
	defer scratchPool.Put(sc)
	if err := pp.resizedInto(img, box, out, sc); err != nil {
		return nil, err
	}
	return out, nil
}

// Tensor writes the normalised CHW float32 tensor of img (cropped to box, nil for none)
// into dst, which must hold exactly TensorLen values.
func (pp *Preprocessor) Tensor(img *imageio.RGB, box *image.Rectangle, dst []float32) error {
	if len(dst) != pp.TensorLen() {
		return fmt.Errorf("preprocess: tensor buffer holds %d values, want 3·%d·%d = %d", len(dst), pp.p.CropSize, pp.p.CropSize, pp.TensorLen())
	}
	sc := scratchPool.Get().(*scratch)
	defer scratchPool.Put(sc)
	cs := pp.p.CropSize
	sc.crop.W, sc.crop.H = cs, cs
	sc.crop.Pix = grow(sc.crop.Pix, 3*cs*cs)
	if err := pp.resizedInto(img, box, &sc.crop, sc); err != nil {
		return err
	}
	return pp.Normalize(&sc.crop, dst)
}

// Normalize writes the CHW float32 tensor of a CropSize×CropSize image into dst (length
// TensorLen): (v/255 - mean[c]) / std[c], computed in float32 as torchvision does.
func (pp *Preprocessor) Normalize(img *imageio.RGB, dst []float32) error {
	cs := pp.p.CropSize
	if img.W != cs || img.H != cs {
		return fmt.Errorf("preprocess: normalise a %dx%d image, want %dx%d", img.W, img.H, cs, cs)
	}
	n := cs * cs
	if len(dst) != 3*n {
		return fmt.Errorf("preprocess: tensor buffer holds %d values, want %d", len(dst), 3*n)
	}
	r, g, b := dst[:n], dst[n:2*n], dst[2*n:3*n]
	lr, lg, lb := &pp.lut[0], &pp.lut[1], &pp.lut[2]
	pix := img.Pix[:3*n]
	for i := range n {
		p := pix[3*i : 3*i+3]
		r[i], g[i], b[i] = lr[p[0]], lg[p[1]], lb[p[2]]
	}
	return nil
}

func (pp *Preprocessor) resizedInto(img *imageio.RGB, box *image.Rectangle, out *imageio.RGB, sc *scratch) error {
	if img == nil || img.W < 1 || img.H < 1 || len(img.Pix) != 3*img.W*img.H {
		return errors.New("preprocess: empty or malformed image")
	}
	src, err := cropView(img, box)
	if err != nil {
		return err
	}
	ow, oh := OutputSize(src.w, src.h, pp.p.ResizeTo)
	cs := pp.p.CropSize
	resampleRegion(src, ow, oh, CenterOffset(ow, cs), CenterOffset(oh, cs), out, sc)
	return nil
}

// cropView applies a bounding box (left, top, right, bottom) as PIL's img.crop does,
// which is what OML does with a torchvision transform: the parts of the box outside the
// image are black. A box that is empty, inverted or has no pixel inside the image is an
// error with ReasonBadBox.
func cropView(img *imageio.RGB, box *image.Rectangle) (view, error) {
	full := viewOf(img)
	if box == nil {
		return full, nil
	}
	b := *box
	bounds := image.Rect(0, 0, img.W, img.H)
	if b.Dx() <= 0 || b.Dy() <= 0 || !b.Overlaps(bounds) {
		return view{}, &imageio.Error{Reason: ReasonBadBox, Err: fmt.Errorf(
			"box (x1=%d, y1=%d, x2=%d, y2=%d) is empty or outside the %dx%d image", b.Min.X, b.Min.Y, b.Max.X, b.Max.Y, img.W, img.H)}
	}
	if b.In(bounds) {
		return view{pix: img.Pix, stride: 3 * img.W, x0: b.Min.X, y0: b.Min.Y, w: b.Dx(), h: b.Dy()}, nil
	}
	// Partly outside: materialise with black padding (rare; costs one copy).
	pad := imageio.NewRGB(b.Dx(), b.Dy())
	in := b.Intersect(bounds)
	for y := in.Min.Y; y < in.Max.Y; y++ {
		s := img.Pix[3*(y*img.W+in.Min.X) : 3*(y*img.W+in.Max.X)]
		copy(pad.Pix[3*((y-b.Min.Y)*pad.W+in.Min.X-b.Min.X):], s)
	}
	return viewOf(pad), nil
}

// Resized is Preprocessor.Resized for a one-off call; prefer New once per model.
func Resized(img *imageio.RGB, box *image.Rectangle, p manifest.Preprocess) (*imageio.RGB, error) {
	pp, err := New(p)
	if err != nil {
		return nil, err
	}
	return pp.Resized(img, box)
}

// Normalize is Preprocessor.Normalize for a one-off call.
func Normalize(img *imageio.RGB, p manifest.Preprocess, dst []float32) error {
	pp, err := New(p)
	if err != nil {
		return err
	}
	return pp.Normalize(img, dst)
}

// Tensor is Preprocessor.Tensor for a one-off call.
func Tensor(img *imageio.RGB, box *image.Rectangle, p manifest.Preprocess, dst []float32) error {
	pp, err := New(p)
	if err != nil {
		return err
	}
	return pp.Tensor(img, box, dst)
}
