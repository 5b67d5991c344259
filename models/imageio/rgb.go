// Package imageio decodes catalog images into packed 8-bit RGB, the first step of the
// evaluation transform (method.md §2: "decode, convert to RGB").
//
// Images are recognised by their content (magic bytes), never by file extension:
// JPEG, PNG, GIF (first frame) and WebP (lossy and lossless). Dimensions are read from the
// header first and images over a pixel or byte limit are refused before any pixel buffer
// is allocated, so a decompression bomb costs nothing. Every failure is an *Error whose
// Reason is a stable, machine-readable word for the rejects file.
//
// The pixels reproduce what the reference implementation sees, PIL 9.4's
// Image.open(path).convert("RGB"):
//   - PNG, GIF and lossless WebP: exactly, including PIL's quirks (16-bit greyscale PNG
//     is clipped to 255 rather than scaled; alpha is dropped without compositing; the
//     colour of a GIF's transparent palette entry is kept).
//   - lossy WebP: libwebp's "fancy" chroma upsampling and fixed-point YUV→RGB.
//   - JPEG: libjpeg-turbo's "fancy" (triangle) chroma upsampling and its fixed-point
//     YCbCr→RGB tables, and PIL's CMYK→RGB formula; only the inverse DCT differs from
//     libjpeg's (Go's image/jpeg), so pixels may differ by a few levels.
//
// EXIF orientation and ICC profiles are ignored, as PIL's Image.open does.
package imageio

import (
	"fmt"
	"image"
	"image/color"
)

// RGB is a packed 8-bit RGB image: row-major, 3 bytes per pixel (R, G, B), no padding,
// origin at (0, 0). It implements image.Image so it can be encoded or compared with the
// standard library.
type RGB struct {
	// W and H are the width and height in pixels.
	W, H int
	// Pix holds W*H*3 bytes; pixel (x, y) starts at Pix[3*(y*W+x)].
	Pix []uint8
}

// NewRGB returns a zeroed w×h image. It panics if w or h is negative.
func NewRGB(w, h int) *RGB {
	if w < 0 || h < 0 {
		panic(fmt.Sprintf("imageio: negative image size %dx%d", w, h))
	}
	return &RGB{W: w, H: h, Pix: make([]uint8, 3*w*h)}
}

// ColorModel returns color.RGBAModel: every pixel is opaque.
func (m *RGB) ColorModel() color.Model { return color.RGBAModel }

// Bounds returns (0, 0)-(W, H).
func (m *RGB) Bounds() image.Rectangle { return image.Rect(0, 0, m.W, m.H) }

// At returns the opaque colour of pixel (x, y), or transparent black outside the image.
func (m *RGB) At(x, y int) color.Color {
	if x < 0 || y < 0 || x >= m.W || y >= m.H {
		return color.RGBA{}
	}
	i := 3 * (y*m.W + x)
	return color.RGBA{m.Pix[i], m.Pix[i+1], m.Pix[i+2], 0xff}
}

// Row returns the 3*W bytes of row y.
func (m *RGB) Row(y int) []uint8 { return m.Pix[3*y*m.W : 3*(y+1)*m.W] }
