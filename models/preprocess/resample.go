package preprocess

import (
	"math"
	"sync"

	"github.com/stirpipe/stirpipe/models/imageio"
)

// Fixed-point precision of the 8-bit resampler, as PIL's Resample.c: 32 bits less 8 for
// the sample and 2 spare bits for the filter's negative lobes.
const precisionBits = 32 - 8 - 2

// bicubic is PIL's Keys cubic with a = -0.5 (support 2). The operations are written in
// PIL's order so the float64 results match bit for bit.
func bicubic(x float64) float64 {
	const a = -0.5
	if x < 0 {
		x = -x
	}
	if x < 1 {
		return float64(float64(float64(float64(float64(a+2)*x)-(a+3))*x)*x) + 1
	}
	if x < 2 {
		return float64(float64(float64(float64(float64(x-5)*x)+8)*x)-4) * a
	}
	return 0
}

// axis holds the resampling coefficients from in samples to out samples along one axis,
// for the window of outputs [first, first+n) only (a centre crop of an extreme aspect
// ratio would otherwise need millions): output first+i reads count[i] inputs from
// start[i] with weights coef[i*ksize:], in 22-bit fixed point (PIL's precompute_coeffs
// followed by normalize_coeffs_8bpc).
type axis struct {
	ksize int
	start []int32
	count []int32
	coef  []int32
}

type axisKey struct{ in, out, first, n int }

func newAxis(in, out, first, n int) *axis {
	// PIL passes the source box as C floats, so sizes beyond 2^24 round as float32.
	scale := float64(float32(in)) / float64(out)
	filterscale := max(scale, 1)
	support := 2 * filterscale
	ksize := int(math.Ceil(support))*2 + 1
	a := &axis{
		ksize: ksize,
		start: make([]int32, n),
		count: make([]int32, n),
		coef:  make([]int32, n*ksize),
	}
	w := make([]float64, ksize)
	ss := 1 / filterscale
	for i := 0; i < n; i++ {
		center := float64(float64(first+i)+0.5) * scale
		// C's (int) truncates toward zero; negative values clamp to 0 anyway.
		xmin := max(int(center-support+0.5), 0)
		xmax := min(int(center+support+0.5), in) - xmin
		var ww float64
		for x := 0; x < xmax; x++ {
			v := bicubic(float64(float64(float64(x+xmin)-center)+0.5) * ss)
			w[x] = v
			ww += v
		}
		k := a.coef[i*ksize : (i+1)*ksize]
		for x := 0; x < xmax; x++ {
			v := w[x]
			if ww != 0 {
				v /= ww
			}
			if v < 0 {
				k[x] = int32(-0.5 + float64(v*(1<<precisionBits)))
			} else {
				k[x] = int32(0.5 + float64(v*(1<<precisionBits)))
			}
		}
		a.start[i] = int32(xmin)
		a.count[i] = int32(xmax)
	}
	return a
}

// axisCache shares coefficients between images of the same size. It is bounded: when
// full it is emptied (catalog images cluster on a few sizes, so it refills quickly).
var axisCache = struct {
	sync.Mutex
	m map[axisKey]*axis
}{m: map[axisKey]*axis{}}

const axisCacheMax = 4096

func cachedAxis(in, out, first, n int) *axis {
	key := axisKey{in, out, first, n}
	axisCache.Lock()
	a := axisCache.m[key]
	axisCache.Unlock()
	if a != nil {
		return a
	}
	a = newAxis(in, out, first, n)
	axisCache.Lock()
	if len(axisCache.m) >= axisCacheMax {
		clear(axisCache.m)
	}
	axisCache.m[key] = a
	axisCache.Unlock()
	return a
}

func clip8(v int32) uint8 {
	v >>= precisionBits
	if v < 0 {
		return 0
	}
	if v > 255 {
		return 255
	}
	return uint8(v)
}

// view is a rectangle of a packed RGB buffer.
type view struct {
	pix    []uint8
	stride int // bytes per row
	x0, y0 int // top-left pixel
	w, h   int
}

func viewOf(img *imageio.RGB) view {
	return view{pix: img.Pix, stride: 3 * img.W, w: img.W, h: img.H}
}

func (v view) row(y int) []uint8 {
	off := (v.y0+y)*v.stride + 3*v.x0
	return v.pix[off : off+3*v.w]
}

// scratch holds the reusable buffers of one resize.
type scratch struct {
	tmp  []uint8     // horizontal pass output
	acc  []int32     // vertical pass accumulators
	crop imageio.RGB // Tensor's uint8 crop
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// resampleRegion computes the window [cx, cx+dst.W) × [cy, cy+dst.H) of src resized to
// outW×outH exactly as PIL 9.4's ImagingResample with BICUBIC does for an RGB image:
// a horizontal pass over the source rows the vertical pass needs, then a vertical pass,
// each rounding and clipping to 8 bits; a pass is skipped when its axis keeps its size.
// Output pixels depend only on their own coefficients, so computing a window gives the
// same bytes as resizing everything and cropping.
func resampleRegion(src view, outW, outH, cx, cy int, dst *imageio.RGB, sc *scratch) {
	needH := outW != src.w
	needV := outH != src.h
	var ax, ay *axis
	if needH {
		ax = cachedAxis(src.w, outW, cx, dst.W)
	}
	// Source rows feeding the output rows [cy, cy+dst.H).
	rowFirst, rowLast := cy, cy+dst.H
	if needV {
		ay = cachedAxis(src.h, outH, cy, dst.H)
		rowFirst = int(ay.start[0])
		rowLast = int(ay.start[dst.H-1] + ay.count[dst.H-1])
	}

	// Horizontal pass into tmp: rows [rowFirst, rowLast), columns [cx, cx+dst.W).
	mid := view{pix: src.pix, stride: src.stride, x0: src.x0 + cx, y0: src.y0 + rowFirst, w: dst.W, h: rowLast - rowFirst}
	if needH {
		n := 3 * dst.W
		sc.tmp = grow(sc.tmp, n*(rowLast-rowFirst))
		for y := rowFirst; y < rowLast; y++ {
			horizontalRow(sc.tmp[(y-rowFirst)*n:][:n], src.row(y), ax)
		}
		mid = view{pix: sc.tmp, stride: n, w: dst.W, h: rowLast - rowFirst}
	}

	if !needV {
		for y := 0; y < dst.H; y++ {
			copy(dst.Row(y), mid.row(y))
		}
		return
	}
	sc.acc = grow(sc.acc, 3*dst.W)
	for oy := 0; oy < dst.H; oy++ {
		k := ay.coef[oy*ay.ksize:][:ay.count[oy]]
		verticalRow(dst.Row(oy), sc.acc, mid, int(ay.start[oy])-rowFirst, k)
	}
}

// horizontalRow resamples one RGB row into the output columns ax covers, four taps per
// step.
func horizontalRow(dst, src []uint8, ax *axis) {
	const half = 1 << (precisionBits - 1)
	ksize := ax.ksize
	for o := 0; o < len(dst)/3; o++ {
		start, n := int(ax.start[o]), int(ax.count[o])
		k := ax.coef[o*ksize : o*ksize+n]
		s := src[3*start : 3*(start+n)]
		r, g, b := int32(half), int32(half), int32(half)
		j := 0
		for ; j+3 < len(k); j += 4 {
			w0, w1, w2, w3 := k[j], k[j+1], k[j+2], k[j+3]
			p := s[3*j : 3*j+12 : 3*j+12]
			r += int32(p[0])*w0 + int32(p[3])*w1 + int32(p[6])*w2 + int32(p[9])*w3
			g += int32(p[1])*w0 + int32(p[4])*w1 + int32(p[7])*w2 + int32(p[10])*w3
			b += int32(p[2])*w0 + int32(p[5])*w1 + int32(p[8])*w2 + int32(p[11])*w3
		}
		for ; j < len(k); j++ {
			w := k[j]
			p := s[3*j : 3*j+3 : 3*j+3]
			r += int32(p[0]) * w
			g += int32(p[1]) * w
			b += int32(p[2]) * w
		}
		d := dst[3*o : 3*o+3 : 3*o+3]
		d[0], d[1], d[2] = clip8(r), clip8(g), clip8(b)
	}
}

// verticalRow accumulates rows[j]·k[j] into acc (four rows per sweep to cut the
// accumulator traffic) and writes the clipped result to dst.
func verticalRow(dst []uint8, acc []int32, mid view, start int, k []int32) {
	const half = 1 << (precisionBits - 1)
	n := len(dst)
	acc = acc[:n]
	for x := range acc {
		acc[x] = half
	}
	j := 0
	for ; j+3 < len(k); j += 4 {
		w0, w1, w2, w3 := k[j], k[j+1], k[j+2], k[j+3]
		r0 := mid.row(start + j)[:n]
		r1 := mid.row(start + j + 1)[:n]
		r2 := mid.row(start + j + 2)[:n]
		r3 := mid.row(start + j + 3)[:n]
		for x := 0; x < n; x++ {
			acc[x] += int32(r0[x])*w0 + int32(r1[x])*w1 + int32(r2[x])*w2 + int32(r3[x])*w3
		}
	}
	for ; j+1 < len(k); j += 2 {
		w0, w1 := k[j], k[j+1]
		r0 := mid.row(start + j)[:n]
		r1 := mid.row(start + j + 1)[:n]
		for x := 0; x < n; x++ {
			acc[x] += int32(r0[x])*w0 + int32(r1[x])*w1
		}
	}
	if j < len(k) {
		w := k[j]
		r := mid.row(start + j)[:n]
		for x := 0; x < n; x++ {
			acc[x] += int32(r[x]) * w
		}
	}
	for x, v := range acc {
		dst[x] = clip8(v)
	}
}

// ResizeBicubic returns img resized to w×h with PIL 9.4's Image.resize((w, h),
// Image.BICUBIC): antialiased (the filter widens when shrinking), Keys a = -0.5,
// byte-identical to PIL on 8-bit RGB. It panics if w or h is not positive.
func ResizeBicubic(img *imageio.RGB, w, h int) *imageio.RGB {
	if w < 1 || h < 1 {
		panic("preprocess: ResizeBicubic to an empty size")
	}
	out := imageio.NewRGB(w, h)
	if img.W == w && img.H == h {
		copy(out.Pix, img.Pix)
		return out
	}
	sc := scratchPool.Get().(*scratch)
	resampleRegion(viewOf(img), w, h, 0, 0, out, sc)
	scratchPool.Put(sc)
	return out
}
