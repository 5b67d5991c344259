package imageio

import (
	"image"
	"image/color"
)

// fromImage converts a decoded image to RGB the way PIL's convert("RGB") treats the same
// file: alpha is dropped (not composited), non-premultiplied colour is kept, 16-bit
// samples keep their high byte, greyscale is replicated, CMYK uses PIL's formula.
// grey16Clip selects PIL's treatment of 16-bit greyscale PNG (mode "I"): samples are
// clipped to 255 rather than scaled.
func fromImage(src image.Image, grey16Clip bool) *RGB {
	b := src.Bounds()
	w, h := b.Dx(), b.Dy()
	out := NewRGB(w, h)
	switch m := src.(type) {
	case *image.Gray:
		for y := 0; y < h; y++ {
			s := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):][:w]
			d := out.Row(y)
			for x, v := range s {
				d[3*x], d[3*x+1], d[3*x+2] = v, v, v
			}
		}
	case *image.Gray16:
		for y := 0; y < h; y++ {
			s := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):][:2*w]
			d := out.Row(y)
			for x := 0; x < w; x++ {
				v := grey16(s[2*x], s[2*x+1], grey16Clip)
				d[3*x], d[3*x+1], d[3*x+2] = v, v, v
			}
		}
	case *image.RGBA:
		// Only opaque images come as RGBA from the decoders used here (PNG without
		// alpha, RGB JPEG), so premultiplied and straight colour agree.
		copyRGBFrom4(out, m.Pix, m.Stride, m.PixOffset(b.Min.X, b.Min.Y))
	case *image.NRGBA:
		copyRGBFrom4(out, m.Pix, m.Stride, m.PixOffset(b.Min.X, b.Min.Y))
	case *image.RGBA64:
		copyRGBFrom8(out, m.Pix, m.Stride, m.PixOffset(b.Min.X, b.Min.Y), false)
	case *image.NRGBA64:
		copyRGBFrom8(out, m.Pix, m.Stride, m.PixOffset(b.Min.X, b.Min.Y), grey16Clip)
	case *image.Paletted:
		var pal [256][3]uint8
		for i, c := range m.Palette {
			if i < len(pal) {
				pal[i] = straightRGB(c)
			}
		}
		for y := 0; y < h; y++ {
			s := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):][:w]
			d := out.Row(y)
			for x, idx := range s {
				c := pal[idx]
				d[3*x], d[3*x+1], d[3*x+2] = c[0], c[1], c[2]
			}
		}
	case *image.CMYK:
		for y := 0; y < h; y++ {
			s := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):][:4*w]
			d := out.Row(y)
			for x := 0; x < w; x++ {
				d[3*x], d[3*x+1], d[3*x+2] = cmykToRGB(s[4*x], s[4*x+1], s[4*x+2], s[4*x+3])
			}
		}
	case *image.YCbCr:
		// Not reached from Decode (JPEG and WebP have their own conversions); kept so
		// fromImage accepts any image.
		for y := 0; y < h; y++ {
			d := out.Row(y)
			for x := 0; x < w; x++ {
				yi, ci := m.YOffset(b.Min.X+x, b.Min.Y+y), m.COffset(b.Min.X+x, b.Min.Y+y)
				d[3*x], d[3*x+1], d[3*x+2] = color.YCbCrToRGB(m.Y[yi], m.Cb[ci], m.Cr[ci])
			}
		}
	default:
		for y := 0; y < h; y++ {
			d := out.Row(y)
			for x := 0; x < w; x++ {
				c := straightRGB(src.At(b.Min.X+x, b.Min.Y+y))
				d[3*x], d[3*x+1], d[3*x+2] = c[0], c[1], c[2]
			}
		}
	}
	return out
}

// grey16 reduces a big-endian 16-bit grey sample: PIL keeps the high byte, except for
// 16-bit greyscale PNG (mode "I") whose values are clipped to 255.
func grey16(hi, lo uint8, clip bool) uint8 {
	if !clip {
		return hi
	}
	if hi != 0 {
		return 255
	}
	return lo
}

func copyRGBFrom4(out *RGB, pix []uint8, stride, off int) {
	for y := 0; y < out.H; y++ {
		s := pix[off+y*stride:][:4*out.W]
		d := out.Row(y)
		for x := 0; x < out.W; x++ {
			d[3*x], d[3*x+1], d[3*x+2] = s[4*x], s[4*x+1], s[4*x+2]
		}
	}
}

// copyRGBFrom8 takes the high byte of each big-endian 16-bit R, G, B sample, or with
// grey16Clip the clipped value (see grey16).
func copyRGBFrom8(out *RGB, pix []uint8, stride, off int, grey16Clip bool) {
	for y := 0; y < out.H; y++ {
		s := pix[off+y*stride:][:8*out.W]
		d := out.Row(y)
		for x := 0; x < out.W; x++ {
			p := s[8*x:]
			d[3*x] = grey16(p[0], p[1], grey16Clip)
			d[3*x+1] = grey16(p[2], p[3], grey16Clip)
			d[3*x+2] = grey16(p[4], p[5], grey16Clip)
		}
	}
}

// straightRGB returns the non-premultiplied 8-bit colour of c, keeping the colour of
// (partly) transparent entries as PIL does.
func straightRGB(c color.Color) [3]uint8 {
	switch c := c.(type) {
	case color.RGBA:
		if c.A == 0xff {
			return [3]uint8{c.R, c.G, c.B}
		}
	case color.NRGBA:
		return [3]uint8{c.R, c.G, c.B}
	}
	n := color.NRGBAModel.Convert(c).(color.NRGBA)
	return [3]uint8{n.R, n.G, n.B}
}

// cmykToRGB is PIL's cmyk2rgb: with nk = 255-k, each channel is nk - c·nk/255, the
// product divided by 255 with PIL's rounding.
func cmykToRGB(c, m, y, k uint8) (uint8, uint8, uint8) {
	nk := 255 - int(k)
	f := func(v uint8) uint8 {
		t := int(v)*nk + 128
		r := nk - ((t>>8)+t)>>8
		return uint8(max(r, 0))
	}
	return f(c), f(m), f(y)
}
