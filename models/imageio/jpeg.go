package imageio

import "image"

// libjpeg's YCbCr→RGB tables (jdcolor.c): 16-bit fixed point, Cr→R and Cb→B rounded,
// the two G terms summed before one rounding shift.
var (
	jpegCrR, jpegCbB, jpegCrG, jpegCbG [256]int32
)

func init() {
	const (
		scaleBits = 16
		half      = 1 << (scaleBits - 1)
	)
	fix := func(x float64) int32 { return int32(x*(1<<scaleBits) + 0.5) }
	for i := range 256 {
		x := int32(i - 128)
		jpegCrR[i] = (fix(1.40200)*x + half) >> scaleBits
		jpegCbB[i] = (fix(1.77200)*x + half) >> scaleBits
		jpegCrG[i] = -fix(0.71414) * x
		jpegCbG[i] = -fix(0.34414)*x + half
	}
}

func clampU8(v int32) uint8 { return uint8(min(max(v, 0), 255)) }

// rangeLimit clamps to 0..255 by lookup (libjpeg's range_limit): entry v+rangeOffset is
// clampU8(v) for every v a conversion can produce (-227..482).
const (
	rangeOffset = 384
	rangeMask   = 1023
)

var rangeLimit = func() (t [rangeMask + 1]uint8) {
	for i := range t {
		t[i] = clampU8(int32(i - rangeOffset))
	}
	return t
}()

// jpegYCbCrToRGB converts a decoded JPEG as libjpeg-turbo does by default (and so as PIL
// sees it): subsampled chroma is upsampled with the "fancy" triangle filter for 4:2:2,
// 4:2:0 and 4:4:0 (edges replicated), by replication for other ratios, then converted
// with libjpeg's fixed-point tables.
func jpegYCbCrToRGB(m *image.YCbCr) *RGB {
	b := m.Rect
	w, h := b.Dx(), b.Dy()
	out := NewRGB(w, h)
	yBase := m.YOffset(b.Min.X, b.Min.Y)
	cBase := m.COffset(b.Min.X, b.Min.Y)
	cw, ch := chromaSize(m.SubsampleRatio, w, h)
	// Upsampled chroma rows; 2·cw ≥ w covers the padding column of odd widths.
	cbRow := make([]uint8, max(w, 2*cw))
	crRow := make([]uint8, max(w, 2*cw))

	for y := 0; y < h; y++ {
		yRow := m.Y[yBase+y*m.YStride:][:w]
		switch {
		case m.SubsampleRatio == image.YCbCrSubsampleRatio444:
			off := cBase + y*m.CStride
			copy(cbRow, m.Cb[off:off+w])
			copy(crRow, m.Cr[off:off+w])
		case m.SubsampleRatio == image.YCbCrSubsampleRatio422 && cw > 2:
			off := cBase + y*m.CStride
			fancyH2V1(cbRow, m.Cb[off:off+cw])
			fancyH2V1(crRow, m.Cr[off:off+cw])
		case m.SubsampleRatio == image.YCbCrSubsampleRatio420 && cw > 2:
			near, far := nearFarRows(y, ch)
			n, f := cBase+near*m.CStride, cBase+far*m.CStride
			fancyH2V2(cbRow, m.Cb[n:n+cw], m.Cb[f:f+cw])
			fancyH2V2(crRow, m.Cr[n:n+cw], m.Cr[f:f+cw])
		case m.SubsampleRatio == image.YCbCrSubsampleRatio440:
			near, far := nearFarRows(y, ch)
			bias := int32(1) // far row above
			if y&1 == 1 {
				bias = 2 // far row below
			}
			n, f := cBase+near*m.CStride, cBase+far*m.CStride
			fancyH1V2(cbRow, m.Cb[n:n+cw], m.Cb[f:f+cw], bias)
			fancyH1V2(crRow, m.Cr[n:n+cw], m.Cr[f:f+cw], bias)
		default:
			// Replication (libjpeg's h2v1/h2v2/int upsamplers): nearest chroma sample.
			for x := 0; x < w; x++ {
				ci := m.COffset(b.Min.X+x, b.Min.Y+y)
				cbRow[x], crRow[x] = m.Cb[ci], m.Cr[ci]
			}
		}
		ycbcrRow(out.Row(y), yRow, cbRow, crRow)
	}
	return out
}

// ycbcrRow converts one row of full-resolution Y, Cb and Cr samples to packed RGB.
func ycbcrRow(d, ys, cbs, crs []uint8) {
	n := len(ys)
	cbs, crs, d = cbs[:n], crs[:n], d[:3*n]
	for x := 0; x < n; x++ {
		yy := int32(ys[x]) + rangeOffset
		cb, cr := cbs[x], crs[x]
		p := d[3*x : 3*x+3 : 3*x+3]
		p[0] = rangeLimit[(yy+jpegCrR[cr])&rangeMask]
		p[1] = rangeLimit[(yy+(jpegCbG[cb]+jpegCrG[cr])>>16)&rangeMask]
		p[2] = rangeLimit[(yy+jpegCbB[cb])&rangeMask]
	}
}

// chromaSize is the size of the chroma planes that carry image data:
// ceil(w·hc/hmax) × ceil(h·vc/vmax), as libjpeg's downsampled_width/height.
func chromaSize(r image.YCbCrSubsampleRatio, w, h int) (cw, ch int) {
	switch r {
	case image.YCbCrSubsampleRatio422:
		return (w + 1) / 2, h
	case image.YCbCrSubsampleRatio420:
		return (w + 1) / 2, (h + 1) / 2
	case image.YCbCrSubsampleRatio440:
		return w, (h + 1) / 2
	case image.YCbCrSubsampleRatio411:
		return (w + 3) / 4, h
	case image.YCbCrSubsampleRatio410:
		return (w + 3) / 4, (h + 1) / 2
	}
	return w, h
}

// nearFarRows returns, for full-resolution row y of an image whose chroma is vertically
// halved to ch rows, the nearer chroma row and the farther one (above for even y, below
// for odd y), replicating the edge rows.
func nearFarRows(y, ch int) (near, far int) {
	near = y / 2
	if y&1 == 0 {
		far = max(near-1, 0)
	} else {
		far = min(near+1, ch-1)
	}
	return near, far
}

// fancyH2V1 doubles a row horizontally: each output is ¾ of the nearer input plus ¼ of
// the next one, rounding alternately down and up (libjpeg's h2v1_fancy_upsample). dst
// holds 2·len(src) samples; src has at least 2.
func fancyH2V1(dst, src []uint8) {
	n := len(src)
	dst = dst[:2*n]
	// Edges replicate the outermost sample, which makes their outputs equal to it.
	dst[0] = src[0]
	dst[2*n-1] = src[n-1]
	dst[1] = uint8((3*int32(src[0]) + int32(src[1]) + 2) >> 2)
	dst[2*n-2] = uint8((3*int32(src[n-1]) + int32(src[n-2]) + 1) >> 2)
	for i := 1; i < n-1; i++ {
		c := 3 * int32(src[i])
		dst[2*i] = uint8((c + int32(src[i-1]) + 1) >> 2)
		dst[2*i+1] = uint8((c + int32(src[i+1]) + 2) >> 2)
	}
}

// fancyH2V2 doubles a chroma row both ways: vertically ¾ near + ¼ far into column sums,
// then horizontally ¾ + ¼ of neighbouring sums (libjpeg's h2v2_fancy_upsample). dst
// holds 2·len(near) samples; near has at least 2.
func fancyH2V2(dst, near, far []uint8) {
	n := len(near)
	far, dst = far[:n], dst[:2*n]
	cur := 3*int32(near[0]) + int32(far[0])
	dst[0] = uint8((4*cur + 8) >> 4)
	for i := 1; i < n; i++ {
		next := 3*int32(near[i]) + int32(far[i])
		d := dst[2*i-1 : 2*i+1 : 2*i+1]
		d[0] = uint8((3*cur + next + 7) >> 4)
		d[1] = uint8((3*next + cur + 8) >> 4)
		cur = next
	}
	dst[2*n-1] = uint8((4*cur + 7) >> 4)
}

// fancyH1V2 interpolates a chroma row vertically: ¾ near + ¼ far (libjpeg-turbo's
// h1v2_fancy_upsample).
func fancyH1V2(dst, near, far []uint8, bias int32) {
	dst, far = dst[:len(near)], far[:len(near)]
	for i := range near {
		dst[i] = uint8((3*int32(near[i]) + int32(far[i]) + bias) >> 2)
	}
}
