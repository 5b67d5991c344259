package imageio

import (
	"fmt"
	"image"
)

// webpYCbCrToRGB converts a decoded lossy WebP frame (4:2:0) as libwebp's default
// decoder does (and so as PIL sees it): "fancy" chroma upsampling (dec/io_dec.c,
// dsp/upsampling.c) and the 14-bit fixed-point YUV→RGB of dsp/yuv.h. The VP8 planes
// themselves are bit-exact between decoders, so the result matches libwebp exactly.
func webpYCbCrToRGB(m *image.YCbCr) (*RGB, error) {
	if m.SubsampleRatio != image.YCbCrSubsampleRatio420 {
		return nil, fmt.Errorf("lossy WebP with chroma subsampling %v, want 4:2:0", m.SubsampleRatio)
	}
	b := m.Rect
	w, h := b.Dx(), b.Dy()
	out := NewRGB(w, h)
	yBase := m.YOffset(b.Min.X, b.Min.Y)
	cBase := m.COffset(b.Min.X, b.Min.Y)
	cw, ch := (w+1)/2, (h+1)/2
	uRow := make([]int32, w)
	vRow := make([]int32, w)
	for y := 0; y < h; y++ {
		near, far := nearFarRows(y, ch)
		n, f := cBase+near*m.CStride, cBase+far*m.CStride
		webpUpsampleRow(uRow, m.Cb[n:n+cw], m.Cb[f:f+cw])
		webpUpsampleRow(vRow, m.Cr[n:n+cw], m.Cr[f:f+cw])
		yRow := m.Y[yBase+y*m.YStride:][:w]
		d := out.Row(y)
		for x := 0; x < w; x++ {
			yy := webpMultHi(int32(yRow[x]), 19077)
			u, v := uRow[x], vRow[x]
			d[3*x] = webpClip8(yy + webpMultHi(v, 26149) - 14234)
			d[3*x+1] = webpClip8(yy - webpMultHi(u, 6419) - webpMultHi(v, 13320) + 8708)
			d[3*x+2] = webpClip8(yy + webpMultHi(u, 33050) - 17685)
		}
	}
	return out, nil
}

func webpMultHi(v, c int32) int32 { return (v * c) >> 8 }

func webpClip8(v int32) uint8 {
	const mask = 256<<6 - 1
	if v&^mask == 0 {
		return uint8(v >> 6)
	}
	if v < 0 {
		return 0
	}
	return 255
}

// webpUpsampleRow interpolates one full-width chroma row from the nearer (near) and the
// farther (far) half-resolution rows with libwebp's integer arithmetic: the first and
// (for even widths) last samples are (3·near + far + 2)/4; the others combine a 2×2
// neighbourhood through two rounded "diagonal" averages, as UPSAMPLE_FUNC does.
func webpUpsampleRow(dst []int32, near, far []uint8) {
	w := len(dst)
	dst[0] = (3*int32(near[0]) + int32(far[0]) + 2) >> 2
	for x := 1; x <= (w-1)>>1; x++ {
		n0, n1 := int32(near[x-1]), int32(near[x])
		f0, f1 := int32(far[x-1]), int32(far[x])
		avg := n0 + n1 + f0 + f1 + 8
		dA := (avg + 2*(n1+f0)) >> 3
		dB := (avg + 2*(n0+f1)) >> 3
		dst[2*x-1] = (dA + n0) >> 1
		dst[2*x] = (dB + n1) >> 1
	}
	if w&1 == 0 {
		last := len(near) - 1
		dst[w-1] = (3*int32(near[last]) + int32(far[last]) + 2) >> 2
	}
}
