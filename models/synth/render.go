package synth

import (
	"image"
	"image/draw"
	"math"
	"math/rand/v2"

	"golang.org/x/image/vector"
)

// scene holds every per-image choice: canvas, background, pose, light, camera.
type scene struct {
	w, h int

	bgKind       int // 0 studio white, 1 gradient, 2 wall and floor, 3 clutter
	bg0, bg1     rgb
	bgAngle      float64
	horizon      float64 // wall/floor edge, fraction of the height
	horizonGap   float64 // how far above the object's foot the floor starts
	tiles        bool
	tilePeriod   float64
	clutterSeed  uint64
	clutterCount int

	yaw, tilt, rot, shear float64
	persp                 [2]float64
	flip                  bool
	fillNoBox, fillBox    float64
	posX, posY            float64
	crop                  bool

	lx, shadow       float64
	bright, contrast float64
	cast             rgb
	vignette, noise  float64
	quality          int
	distractor       bool
	distractorPick   float64
	distractorFill   float64
	distractorYaw    float64
	distractorCorner [2]float64
	pixelSeed        uint64
	boxPad           float64
}

func lightColour(r *rand.Rand) rgb {
	if r.Float64() < 0.5 {
		v := uniform(r, 0.9, 1)
		return hsv(r.Float64(), uniform(r, 0, 0.04), v)
	}
	return hsv(r.Float64(), uniform(r, 0.05, 0.3), uniform(r, 0.7, 0.97))
}

// newScene draws a scene for a nominal image side.
func newScene(r *rand.Rand, size int) scene {
	var s scene
	side := float64(size) * uniform(r, 0.85, 1.2)
	aspect := 1.0
	if r.Float64() < 0.7 {
		aspect = math.Exp(uniform(r, math.Log(0.75), math.Log(1.33)))
	}
	s.w = max(32, int(math.Round(side*math.Sqrt(aspect))))
	s.h = max(32, int(math.Round(side/math.Sqrt(aspect))))

	switch u := r.Float64(); {
	case u < 0.35:
		s.bgKind = 0
	case u < 0.6:
		s.bgKind = 1
	case u < 0.8:
		s.bgKind = 2
	default:
		s.bgKind = 3
	}
	s.bg0 = hsv(r.Float64(), uniform(r, 0, 0.03), uniform(r, 0.93, 1))
	s.bg1 = lightColour(r)
	if s.bgKind >= 2 {
		s.bg0 = lightColour(r)
		s.bg1 = hsv(r.Float64(), uniform(r, 0.05, 0.35), uniform(r, 0.35, 0.8))
	}
	s.bgAngle = uniform(r, 0, 2*math.Pi)
	s.horizonGap = uniform(r, 0.05, 0.45)
	s.tiles = r.Float64() < 0.3
	s.tilePeriod = uniform(r, 0.06, 0.15)
	s.clutterSeed = r.Uint64()
	s.clutterCount = 4 + r.IntN(9)

	s.yaw = uniform(r, -1.1, 1.1)
	s.tilt = uniform(r, 0.12, 0.45)
	s.rot = r.NormFloat64() * 0.1
	if r.Float64() < 0.15 {
		s.rot = uniform(r, -0.5, 0.5)
	}
	s.shear = r.NormFloat64() * 0.05
	s.persp = [2]float64{uniform(r, -0.2, 0.2), uniform(r, -0.2, 0.2)}
	s.flip = r.Float64() < 0.3
	s.fillNoBox = uniform(r, 0.55, 0.9)
	s.fillBox = uniform(r, 0.28, 0.55)
	s.posX, s.posY = uniform(r, -1, 1), uniform(r, -1, 1)
	s.crop = r.Float64() < 0.08

	s.lx = uniform(r, -1, 1)
	s.shadow = uniform(r, 0.12, 0.45)
	s.bright = r.NormFloat64() * 0.05
	s.contrast = uniform(r, 0.85, 1.15)
	s.cast = rgb{1 + r.NormFloat64()*0.035, 1 + r.NormFloat64()*0.035, 1 + r.NormFloat64()*0.035}
	s.vignette = uniform(r, 0, 0.3)
	s.noise = uniform(r, 0, 5)
	s.quality = 60 + r.IntN(36)
	s.distractor = r.Float64() < 0.6
	s.distractorPick = r.Float64()
	s.distractorFill = uniform(r, 0.15, 0.28)
	s.distractorYaw = uniform(r, -1.1, 1.1)
	s.distractorCorner = [2]float64{uniform(r, 0.15, 0.3), uniform(r, 0.2, 0.8)}
	s.pixelSeed = r.Uint64()
	s.boxPad = uniform(r, 0.005, 0.05)
	return s
}

// jitter turns a photo-session scene into one more shot of the same session:
// same camera, background and light; slightly different pose and framing.
func (s *scene) jitter(r *rand.Rand) {
	s.yaw += r.NormFloat64() * 0.12
	s.tilt = math.Max(0.08, s.tilt+r.NormFloat64()*0.03)
	s.rot += r.NormFloat64() * 0.04
	s.fillNoBox = math.Min(0.92, s.fillNoBox*uniform(r, 0.93, 1.07))
	s.fillBox *= uniform(r, 0.93, 1.07)
	s.posX = math.Max(-1, math.Min(1, s.posX+r.NormFloat64()*0.15))
	s.posY = math.Max(-1, math.Min(1, s.posY+r.NormFloat64()*0.15))
	s.noise = uniform(r, 0, 5)
	s.quality = 60 + r.IntN(36)
	s.pixelSeed = r.Uint64()
	s.boxPad = uniform(r, 0.005, 0.05)
}

// canvas is an RGBA image plus a reusable rasterizer and coverage buffer.
type canvas struct {
	img  *image.RGBA
	w, h int
	z    vector.Rasterizer
	mask []uint8
	pts  []vec
}

func newCanvas(w, h int) *canvas {
	return &canvas{img: image.NewRGBA(image.Rect(0, 0, w, h)), w: w, h: h}
}

// raster computes the anti-aliased coverage of fill minus holes (image
// coordinates) and returns the covered rectangle and its coverage, row-major.
func (c *canvas) raster(fill, holes [][]vec) (image.Rectangle, []uint8) {
	minX, minY := math.Inf(1), math.Inf(1)
	maxX, maxY := math.Inf(-1), math.Inf(-1)
	for _, p := range fill {
		for _, q := range p {
			minX, maxX = math.Min(minX, q.x), math.Max(maxX, q.x)
			minY, maxY = math.Min(minY, q.y), math.Max(maxY, q.y)
		}
	}
	x0, y0 := max(0, int(math.Floor(minX))), max(0, int(math.Floor(minY)))
	x1, y1 := min(c.w, int(math.Ceil(maxX))+1), min(c.h, int(math.Ceil(maxY))+1)
	if x1 <= x0 || y1 <= y0 {
		return image.Rectangle{}, nil
	}
	bw, bh := x1-x0, y1-y0
	c.z.Reset(bw, bh)
	o := vec{float64(x0), float64(y0)}
	trace := func(p []vec) {
		if len(p) < 3 {
			return
		}
		c.z.MoveTo(float32(p[0].x-o.x), float32(p[0].y-o.y))
		for _, q := range p[1:] {
			c.z.LineTo(float32(q.x-o.x), float32(q.y-o.y))
		}
		c.z.ClosePath()
	}
	for _, p := range fill {
		trace(oriented(p, true))
	}
	for _, p := range holes {
		trace(oriented(p, false))
	}
	n := bw * bh
	if cap(c.mask) < n {
		c.mask = make([]uint8, n)
	}
	dst := &image.Alpha{Pix: c.mask[:n], Stride: bw, Rect: image.Rect(0, 0, bw, bh)}
	c.z.DrawOp = draw.Src
	c.z.Draw(dst, dst.Rect, image.Opaque, image.Point{})
	return image.Rect(x0, y0, x1, y1), dst.Pix
}

func to8(v float64) uint8 {
	v = v*255 + 0.5
	if v <= 0 {
		return 0
	}
	if v >= 255 {
		return 255
	}
	return uint8(v)
}

// blend paints colour col over pixel offset i with coverage a.
func (c *canvas) blend(i int, col rgb, a uint8) {
	p := c.img.Pix[i : i+3 : i+3]
	if a == 255 {
		p[0], p[1], p[2] = to8(col.r), to8(col.g), to8(col.b)
		return
	}
	t := float64(a) / 255
	p[0] = to8(float64(p[0])/255*(1-t) + col.r*t)
	p[1] = to8(float64(p[1])/255*(1-t) + col.g*t)
	p[2] = to8(float64(p[2])/255*(1-t) + col.b*t)
}

// fillFlat paints a flat colour through the coverage of paths with opacity alpha.
func (c *canvas) fillFlat(fill, holes [][]vec, col rgb, alpha float64) {
	r, mask := c.raster(fill, holes)
	bw := r.Dx()
	for y := r.Min.Y; y < r.Max.Y; y++ {
		row := mask[(y-r.Min.Y)*bw:]
		for x := r.Min.X; x < r.Max.X; x++ {
			if a := row[x-r.Min.X]; a != 0 {
				c.blend(c.img.PixOffset(x, y), col, uint8(float64(a)*alpha+0.5))
			}
		}
	}
}

func hash2(ix, iy int64, seed uint32) float64 {
	h := uint32(ix)*0x8da6b343 ^ uint32(iy)*0xd8163841 ^ seed*0xcb1ab31f
	h ^= h >> 13
	h *= 0x5bd1e995
	h ^= h >> 15
	return float64(h&0xffffff) / 0xffffff
}

func valueNoise(x, y float64, seed uint32) float64 {
	fx, fy := math.Floor(x), math.Floor(y)
	ix, iy := int64(fx), int64(fy)
	tx, ty := x-fx, y-fy
	tx, ty = tx*tx*(3-2*tx), ty*ty*(3-2*ty)
	a := lerp(hash2(ix, iy, seed), hash2(ix+1, iy, seed), tx)
	b := lerp(hash2(ix, iy+1, seed), hash2(ix+1, iy+1, seed), tx)
	return lerp(a, b, ty)
}

// pulse is 1 inside [0, duty) of a unit period, with soft edges of width e.
func pulse(f, duty, e float64) float64 {
	var d float64
	if f < duty {
		d = math.Min(f, duty-f)
	} else {
		d = -math.Min(f-duty, 1-f)
	}
	return clamp01(0.5 + d/e)
}

// at evaluates the material's pattern at object coordinates (u, v); aa is the
// size of a pixel in object units, used to soften pattern edges.
func (m *material) at(u, v, aa float64) rgb {
	if m.tex == texNone {
		return m.c0
	}
	x, y := u*m.cs+v*m.sn, -u*m.sn+v*m.cs
	e := math.Max(aa/m.period, 1e-3)
	var k float64
	switch m.tex {
	case texStripes:
		f := x / m.period
		k = pulse(f-math.Floor(f), m.duty, e)
	case texDots:
		fx, fy := x/m.period, y/m.period
		dx, dy := fx-math.Floor(fx)-0.5, fy-math.Floor(fy)-0.5
		r := m.duty * 0.55
		k = 1 - smoothstep(r-e, r+e, math.Hypot(dx, dy))
	case texChecks:
		fx, fy := x/m.period, y/m.period
		sx := pulse(fx-math.Floor(fx), 0.5, e)
		sy := pulse(fy-math.Floor(fy), 0.5, e)
		k = sx + sy - 2*sx*sy
	case texGradient:
		k = clamp01(0.5 + x*0.6)
	case texNoise:
		n := 0.65*valueNoise(u/m.period, v/m.period, m.seed) + 0.35*valueNoise(2*u/m.period+5.3, 2*v/m.period+1.7, m.seed+1)
		k = smoothstep(0.4, 0.6, n)
	}
	return m.c0.mix(m.c1, k)
}

// drawParts renders an object's parts through homography hm (object →
// image). When box is not nil it grows to hold every pixel covered at least half.
func (c *canvas) drawParts(parts []part, p *product, hm mat3, lx float64, box *image.Rectangle) {
	inv := hm.inverse()
	// Size of one pixel in object units, near the object's centre.
	o0, o1 := inv.apply(vec{float64(c.w) / 2, float64(c.h) / 2}), inv.apply(vec{float64(c.w)/2 + 1, float64(c.h) / 2})
	aa := math.Hypot(o1.x-o0.x, o1.y-o0.y)
	tf := func(set [][]vec) [][]vec {
		out := make([][]vec, len(set))
		for i, path := range set {
			q := make([]vec, len(path))
			for j, pt := range path {
				q[j] = hm.apply(pt)
			}
			out[i] = q
		}
		return out
	}
	for i := range parts {
		pt := &parts[i]
		r, mask := c.raster(tf(pt.fill), tf(pt.holes))
		if mask == nil {
			continue
		}
		fr := pt.frame
		if fr[2] == 0 {
			x0, y0, x1, y1 := math.Inf(1), math.Inf(1), math.Inf(-1), math.Inf(-1)
			for _, path := range pt.fill {
				for _, q := range path {
					x0, x1 = math.Min(x0, q.x), math.Max(x1, q.x)
					y0, y1 = math.Min(y0, q.y), math.Max(y1, q.y)
				}
			}
			fr = [4]float64{(x0 + x1) / 2, (y0 + y1) / 2, math.Max((x1-x0)/2, 1e-6), math.Max((y1-y0)/2, 1e-6)}
		}
		mat := &p.mats[pt.mat]
		bw := r.Dx()
		for y := r.Min.Y; y < r.Max.Y; y++ {
			row := mask[(y-r.Min.Y)*bw:]
			for x := r.Min.X; x < r.Max.X; x++ {
				a := row[x-r.Min.X]
				if a == 0 {
					continue
				}
				o := inv.apply(vec{float64(x) + 0.5, float64(y) + 0.5})
				c.blend(c.img.PixOffset(x, y), pt.colour(mat, o, fr, aa, lx), a)
				if box != nil && a >= 128 {
					*box = box.Union(image.Rect(x, y, x+1, y+1))
				}
			}
		}
	}
}

// colour is the lit colour of the part at object point o.
func (pt *part) colour(m *material, o vec, fr [4]float64, aa, lx float64) rgb {
	u, v := o.x, o.y
	s, spec := 1.0, 0.0
	switch pt.shade {
	case shCyl:
		t := math.Max(-1, math.Min(1, (u-fr[0])/fr[2]))
		n := math.Sqrt(1 - t*t)
		s = 0.6 + 0.4*n + 0.18*lx*t
		d := t - 0.45*lx
		spec = m.gloss * math.Exp(-d*d*40)
		if pt.wrap {
			u = fr[2]*math.Asin(t) + pt.phase
		}
	case shSphere:
		t, q := (u-fr[0])/fr[2], (v-fr[1])/fr[3]
		n := math.Sqrt(math.Max(0, 1-t*t-q*q))
		s = 0.62 + 0.38*n + 0.12*(lx*t-0.6*q)
		dt, dq := t-0.35*lx, q+0.35
		spec = m.gloss * 0.6 * math.Exp(-(dt*dt+dq*dq)*12)
	}
	col := m.at(u, v, aa)
	k := s * pt.k
	return rgb{col.r*k + spec, col.g*k + spec, col.b*k + spec}
}

// background paints the scene's backdrop.
func (c *canvas) background(s *scene) {
	w, h := float64(c.w), float64(c.h)
	sn, cs := math.Sincos(s.bgAngle)
	pix := c.img.Pix
	for y := 0; y < c.h; y++ {
		fy := (float64(y) + 0.5) / h
		for x := 0; x < c.w; x++ {
			fx := (float64(x) + 0.5) / w
			var col rgb
			switch s.bgKind {
			case 0:
				col = s.bg0.mix(s.bg0.mul(0.93), fy*fy)
			case 1, 3:
				col = s.bg0.mix(s.bg1, clamp01(0.5+((fx-0.5)*cs+(fy-0.5)*sn)*0.9))
			case 2:
				k := smoothstep(s.horizon-0.02, s.horizon+0.02, fy)
				floor := s.bg1.mul(0.85 + 0.25*(fy-s.horizon))
				if s.tiles && fy > s.horizon {
					// Tiles recede towards the horizon.
					d := (fy - s.horizon + 0.02)
					tx, ty := (fx-0.5)/d*0.08/s.tilePeriod, 0.08/d/s.tilePeriod*0.2
					t := pulse(tx-math.Floor(tx), 0.5, 0.05) + pulse(ty-math.Floor(ty), 0.5, 0.05)
					if t > 0.5 && t < 1.5 {
						floor = floor.mul(0.9)
					}
				}
				col = s.bg0.mul(0.95+0.05*fy).mix(floor, k)
			}
			i := (y*c.w + x) * 4
			pix[i], pix[i+1], pix[i+2], pix[i+3] = to8(col.r), to8(col.g), to8(col.b), 255
		}
	}
	if s.bgKind != 3 {
		return
	}
	r := rand.New(rand.NewPCG(s.clutterSeed, 1))
	unit := math.Min(w, h)
	for i := 0; i < s.clutterCount; i++ {
		col := hsv(r.Float64(), uniform(r, 0.1, 0.6), uniform(r, 0.3, 0.95))
		cx, cy := uniform(r, 0, w), uniform(r, 0, h)
		a, b := uniform(r, 0.05, 0.3)*unit, uniform(r, 0.05, 0.3)*unit
		var path [][]vec
		switch r.IntN(3) {
		case 0:
			m := translate(cx, cy).mul(rotation(uniform(r, 0, math.Pi)))
			q := rect(-a, -b, a, b)
			for j := range q {
				q[j] = m.apply(q[j])
			}
			path = [][]vec{q}
		case 1:
			path = [][]vec{ellipse(cx, cy, a, b, 32)}
		default:
			path = stroke([]vec{{cx, cy}, {cx + a*2 - a, cy + b*2 - b}, {uniform(r, 0, w), uniform(r, 0, h)}}, uniform(r, 0.01, 0.04)*unit)
		}
		c.fillFlat(path, nil, col, uniform(r, 0.35, 0.85))
	}
}

// shadow darkens a soft ellipse under the object's footprint.
func (c *canvas) shadow(cx, cy, rx, ry, strength float64) {
	if rx < 1 || ry < 1 {
		return
	}
	x0, x1 := max(0, int(cx-rx)), min(c.w, int(cx+rx)+1)
	y0, y1 := max(0, int(cy-ry)), min(c.h, int(cy+ry)+1)
	for y := y0; y < y1; y++ {
		dy := (float64(y) + 0.5 - cy) / ry
		for x := x0; x < x1; x++ {
			dx := (float64(x) + 0.5 - cx) / rx
			d := dx*dx + dy*dy
			if d >= 1 {
				continue
			}
			f := 1 - strength*(1-d)*(1-d)
			i := c.img.PixOffset(x, y)
			p := c.img.Pix[i : i+3 : i+3]
			p[0], p[1], p[2] = uint8(float64(p[0])*f), uint8(float64(p[1])*f), uint8(float64(p[2])*f)
		}
	}
}

// camera applies exposure, contrast, colour cast, vignetting and sensor noise.
func (c *canvas) camera(s *scene) {
	var lut [3][256]float64
	cast := [3]float64{s.cast.r, s.cast.g, s.cast.b}
	for ch := 0; ch < 3; ch++ {
		for v := 0; v < 256; v++ {
			lut[ch][v] = ((float64(v)/255-0.5)*s.contrast + 0.5 + s.bright) * cast[ch] * 255
		}
	}
	vx := make([]float64, c.w)
	for x := range vx {
		d := (float64(x)+0.5)/float64(c.w) - 0.5
		vx[x] = d * d
	}
	state := s.pixelSeed | 1
	sigma := s.noise / 128
	pix := c.img.Pix
	for y := 0; y < c.h; y++ {
		d := (float64(y)+0.5)/float64(c.h) - 0.5
		vy := d * d
		for x := 0; x < c.w; x++ {
			vig := 1 - s.vignette*(vx[x]+vy)*2
			state ^= state << 13
			state ^= state >> 7
			state ^= state << 17
			n := state
			i := (y*c.w + x) * 4
			for ch := 0; ch < 3; ch++ {
				// Sum of two uniforms: a triangular, roughly Gaussian sample.
				z := float64(int(n&0xff)+int(n>>8&0xff)-255) * sigma
				n >>= 16
				v := lut[ch][pix[i+ch]]*vig + z
				if v <= 0 {
					pix[i+ch] = 0
				} else if v >= 255 {
					pix[i+ch] = 255
				} else {
					pix[i+ch] = uint8(v + 0.5)
				}
			}
		}
	}
}

// bounds returns the bounding box of every point of parts.
func bounds(parts []part) (lo, hi vec) {
	lo, hi = vec{math.Inf(1), math.Inf(1)}, vec{math.Inf(-1), math.Inf(-1)}
	for i := range parts {
		for _, path := range parts[i].fill {
			for _, q := range path {
				lo = vec{math.Min(lo.x, q.x), math.Min(lo.y, q.y)}
				hi = vec{math.Max(hi.x, q.x), math.Max(hi.y, q.y)}
			}
		}
	}
	return lo, hi
}

// pose returns the object → image homography that fits parts into fill of a
// w×h canvas, centred at (cx, cy) in pixels when place is false, otherwise at
// a position chosen inside the free margin from s.posX/s.posY.
func (s *scene) pose(parts []part, fill float64, rot, shear float64, flip bool, persp [2]float64, w, h int, place bool, cx, cy float64, crop bool) mat3 {
	lo, hi := bounds(parts)
	cm := lo.lerp(hi, 0.5)
	fx := 1.0
	if flip {
		fx = -1
	}
	a := rotation(rot).mul(shearing(shear, 0)).mul(scaling(fx, 1))
	var elo, ehi = vec{math.Inf(1), math.Inf(1)}, vec{math.Inf(-1), math.Inf(-1)}
	for _, q := range []vec{{lo.x, lo.y}, {hi.x, lo.y}, {hi.x, hi.y}, {lo.x, hi.y}} {
		p := a.apply(q.sub(cm))
		elo = vec{math.Min(elo.x, p.x), math.Min(elo.y, p.y)}
		ehi = vec{math.Max(ehi.x, p.x), math.Max(ehi.y, p.y)}
	}
	ew, eh := ehi.x-elo.x, ehi.y-elo.y
	sc := fill * math.Min(float64(w)/ew, float64(h)/eh)
	if place {
		mx, my := (float64(w)-sc*ew)/2, (float64(h)-sc*eh)/2
		if crop {
			mx, my = mx+0.15*sc*ew, my+0.15*sc*eh
		}
		cx = float64(w)/2 + s.posX*math.Max(mx, 0)*0.9
		cy = float64(h)/2 + s.posY*math.Max(my, 0)*0.9
	}
	size := sc * math.Max(ew, eh)
	p := mat3{1, 0, 0, 0, 1, 0, persp[0] / size, persp[1] / size, 1}
	return translate(cx, cy).mul(p).mul(scaling(sc, sc)).mul(a).mul(translate(-cm.x, -cm.y))
}

// render draws product p in scene s. distractor, when not nil, is drawn
// behind it. It returns the image and the box around p (clamped, padded).
func render(p *product, s *scene, hasBox bool, distractor *product) (*image.RGBA, image.Rectangle) {
	c := newCanvas(s.w, s.h)
	parts := build(p, s.yaw, s.tilt)
	fill := s.fillNoBox
	if hasBox {
		fill = s.fillBox
	}
	hm := s.pose(parts, fill, s.rot, s.shear, s.flip, s.persp, s.w, s.h, true, 0, 0, s.crop && !hasBox)
	lo, hi := vec{math.Inf(1), math.Inf(1)}, vec{math.Inf(-1), math.Inf(-1)}
	for i := range parts {
		for _, path := range parts[i].fill {
			for _, q := range path {
				t := hm.apply(q)
				lo = vec{math.Min(lo.x, t.x), math.Min(lo.y, t.y)}
				hi = vec{math.Max(hi.x, t.x), math.Max(hi.y, t.y)}
			}
		}
	}
	ow, oh := hi.x-lo.x, hi.y-lo.y
	// The object stands on the floor: the wall meets it above its foot.
	s.horizon = math.Max(0.15, math.Min(0.95, (hi.y-s.horizonGap*oh)/float64(s.h)))
	c.background(s)

	if distractor != nil {
		dparts := build(distractor, s.distractorYaw, s.tilt)
		mc := lo.lerp(hi, 0.5)
		dx := float64(s.w) * s.distractorCorner[0]
		if mc.x < float64(s.w)/2 {
			dx = float64(s.w) - dx
		}
		dy := float64(s.h) * s.distractorCorner[1]
		dm := s.pose(dparts, s.distractorFill, s.rot*0.5, 0, !s.flip, [2]float64{}, s.w, s.h, false, dx, dy, false)
		c.drawParts(dparts, distractor, dm, s.lx, nil)
	}

	// Soft contact shadow under the object's footprint.
	c.shadow((lo.x+hi.x)/2-s.lx*0.12*ow, hi.y-0.02*oh, 0.55*ow, math.Max(0.07*oh, 3), s.shadow)

	var box image.Rectangle
	c.drawParts(parts, p, hm, s.lx, &box)
	c.camera(s)
	if box.Empty() {
		box = c.img.Rect
	}
	pad := int(math.Round(s.boxPad * float64(max(box.Dx(), box.Dy()))))
	box = box.Inset(-pad).Intersect(c.img.Rect)
	return c.img, box
}
