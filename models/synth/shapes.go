package synth

import "math"

// shadeKind is how a part is lit.
type shadeKind uint8

const (
	shFlat   shadeKind = iota // one brightness (box faces)
	shCyl                     // brightness varies across x (cylinders)
	shSphere                  // brightness falls off from the centre (cushions, blobs)
)

// part is one filled region of an object, in object coordinates.
type part struct {
	fill, holes [][]vec
	mat         int
	shade       shadeKind
	k           float64 // brightness factor
	wrap        bool    // pattern wraps around a vertical cylinder
	phase       float64 // wrap offset (yaw × radius)
	frame       [4]float64
}

// builder collects the parts of one object seen from one pose.
type builder struct {
	p         *product
	yaw, tilt float64
	parts     []part
}

func (b *builder) add(mat int, sh shadeKind, fill ...[]vec) *part {
	b.parts = append(b.parts, part{fill: fill, mat: mat, shade: sh, k: 1})
	return &b.parts[len(b.parts)-1]
}

// cyl makes p a cylinder around x = cx with radius rx whose pattern turns with the yaw.
func (p *part) cyl(b *builder, cx, rx float64) *part {
	p.shade, p.wrap, p.phase = shCyl, true, b.yaw*rx
	p.frame = [4]float64{cx, 0, rx, 1}
	return p
}

func (p *part) bright(k float64) *part { p.k = k; return p }

// scaleX squeezes every part from index `from` horizontally around x = 0 (foreshortening).
func (b *builder) scaleX(from int, k float64) {
	for i := from; i < len(b.parts); i++ {
		pt := &b.parts[i]
		for _, set := range [][][]vec{pt.fill, pt.holes} {
			for _, path := range set {
				for j := range path {
					path[j].x *= k
				}
			}
		}
		pt.frame[0] *= k
		pt.frame[2] *= k
		pt.phase *= k
	}
}

// cone is the silhouette of a vertical truncated cone (a cylinder when rt == rb).
func cone(cx, yTop, rt, yBot, rb, tilt float64) []vec {
	pts := arc(cx, yTop, rt, rt*tilt, math.Pi, 2*math.Pi, 16, true)
	return append(pts, arc(cx, yBot, rb, rb*tilt, 0, math.Pi, 16, true)...)
}

// band is the visible front strip of a cylinder between heights yA < yB.
func band(cx, yA, yB, rx, tilt float64) []vec {
	pts := arc(cx, yB, rx, rx*tilt, 0, math.Pi, 16, true)
	return append(pts, arc(cx, yA, rx, rx*tilt, math.Pi, 0, 16, true)...)
}

func quadPath(q [4]vec) []vec { return []vec{q[0], q[1], q[2], q[3]} }

// surface is where a product's mark may go.
type surface struct {
	x0, y0, x1, y1 float64
	cyl            bool    // on a cylinder around cx with radius rx
	cx, rx         float64 //
	squash         float64 // horizontal foreshortening of a flat surface (0 = 1)
}

// mark draws the product's logo on s; on a cylinder it turns with the yaw and
// hides when it faces away.
func (b *builder) mark(s surface) {
	m := &b.p.mark
	w, h := s.x1-s.x0, s.y1-s.y0
	size := m.size * math.Min(w, h) / 2
	cy := s.y0 + m.b*h
	var cx, sq float64
	if s.cyl {
		rel := (m.a-0.5)*2.2 - b.yaw
		c := math.Cos(rel)
		if c < 0.3 {
			return
		}
		cx, sq = s.cx+s.rx*math.Sin(rel), c
		size = m.size * math.Min(2*s.rx, h) / 2
	} else {
		cx, sq = s.x0+m.a*w, s.squash
		if sq == 0 {
			sq = 1
		}
	}
	sn, cs := math.Sincos(m.angle)
	tf := func(pts []vec) []vec {
		out := make([]vec, len(pts))
		for i, p := range pts {
			x, y := p.x*cs-p.y*sn, p.x*sn+p.y*cs
			out[i] = vec{cx + x*size*sq, cy + y*size}
		}
		return out
	}
	var patch []vec
	switch m.patch {
	case 0:
		patch = ellipse(0, 0, 1, 1, 24)
	case 1:
		patch = roundRect(-0.95, -0.95, 0.95, 0.95, 0.35)
	case 2:
		patch = []vec{{0, -1.25}, {1.25, 0}, {0, 1.25}, {-1.25, 0}}
	case 3:
		patch = ellipse(0, 0, 1.05, 1.05, 6)
	}
	glyph := matGlyph
	if patch == nil {
		glyph = matAccent
	} else {
		b.add(matAccent, shFlat, tf(patch))
	}
	var g [][]vec
	for _, st := range m.strokes {
		e := tf([]vec{st[0], st[1]})
		g = append(g, stroke(e, 0.2*size*math.Sqrt(sq))...)
	}
	if len(g) > 0 {
		b.add(glyph, shFlat, g...)
	}
	if m.ring {
		b.add(glyph, shFlat, tf(ellipse(0, 0, 0.65, 0.65, 20))).holes = [][]vec{tf(ellipse(0, 0, 0.45, 0.45, 20))}
	}
}

// build returns the parts of product p seen with the given yaw (turn around
// the vertical axis, radians) and tilt (camera elevation as the ratio of an
// ellipse's height to its width), back to front.
func build(p *product, yaw, tilt float64) []part {
	b := &builder{p: p, yaw: yaw, tilt: tilt}
	switch p.fam {
	case famMug:
		b.mug()
	case famBottle:
		b.bottle()
	case famBox:
		b.box()
	case famShoe:
		b.shoe()
	case famLamp:
		b.lamp()
	case famChair:
		b.chair()
	case famKettle:
		b.kettle()
	case famTable:
		b.table()
	case famSofa:
		b.sofa()
	case famBag:
		b.bag()
	case famFan:
		b.fan()
	default:
		b.bicycle()
	}
	return b.parts
}

// sideHandle is a D-shaped handle on a cylinder of radius rx attached between
// heights ya and yb, at angle theta (0 faces the camera).
func (b *builder) sideHandle(rx, ya, yb, ext, width, theta float64, mat int) (front bool, draw func()) {
	rel := theta - b.yaw
	s, c := math.Sincos(rel)
	xa := rx * s * 0.94
	e := ext * math.Abs(s)
	if s < 0 {
		e = -e
	}
	pts := []vec{{xa, ya}, {xa + e*0.8, ya - 0.02}, {xa + e, lerp(ya, yb, 0.45)}, {xa + e*0.75, yb}, {xa, yb + 0.03}}
	return c > 0.1, func() { b.add(mat, shCyl, stroke(pts, width)...) }
}

func (b *builder) mug() {
	p, pr := b.p, b.p.prop
	w, h := lerp(0.45, 0.75, pr[0]), lerp(0.6, 1.0, pr[1])
	if p.style == 1 {
		w, h = w*0.8, h*1.2
	} else if p.style == 2 {
		w, h = w*1.15, h*0.8
	}
	y0, y1 := -h, h
	hmat := matBody
	if p.bit(0) {
		hmat = matTrim
	}
	front, handle := b.sideHandle(w, lerp(y0, y1, 0.2), lerp(y0, y1, 0.72), lerp(0.3, 0.55, pr[2])*w, lerp(0.07, 0.13, pr[3]), math.Pi/2, hmat)
	if !front {
		handle()
	}
	b.add(matBody, shCyl, cone(0, y0, w, y1, w, b.tilt)).cyl(b, 0, w)
	if p.bit(1) {
		b.add(matTrim, shCyl, band(0, y1-lerp(0.1, 0.3, pr[4])*h, y1, w, b.tilt)).cyl(b, 0, w)
	}
	if p.style == 1 { // lid
		b.add(matTrim, shCyl, cone(0, y0-0.12, w*0.96, y0, w, b.tilt)).cyl(b, 0, w)
		b.add(matTrim, shFlat, ellipse(0, y0-0.12, w*0.96, w*0.96*b.tilt, 32)).bright(1.15)
		b.add(matDark, shFlat, ellipse(w*0.4, y0-0.12, w*0.2, w*0.2*b.tilt, 16))
	} else {
		b.add(matBody, shFlat, ellipse(0, y0, w, w*b.tilt, 32)).bright(1.1)
		b.add(matTrim, shFlat, ellipse(0, y0, w*0.9, w*0.9*b.tilt, 32)).bright(0.55)
	}
	b.mark(surface{y0: y0 + 0.3*h, y1: y1 - 0.3*h, cyl: true, rx: w})
	if front {
		handle()
	}
}

func (b *builder) bottle() {
	p, pr := b.p, b.p.prop
	w := lerp(0.3, 0.48, pr[0])
	nw := w * lerp(0.28, 0.42, pr[1])
	yb, ys := 1.0, lerp(-0.3, 0.15, pr[2])
	yn := ys - lerp(0.35, 0.55, pr[3])
	switch p.style {
	case 1: // jar
		nw, yn = w*lerp(0.65, 0.8, pr[1]), ys-0.15
	case 2: // sports bottle
		nw = w * lerp(0.5, 0.65, pr[1])
	}
	ycap := yn - lerp(0.12, 0.28, pr[4])
	t := b.tilt
	var out []vec
	out = append(out, arc(0, yb, w, w*t, 0, math.Pi, 16, true)...)
	sh := (ys - yn) * 0.6
	for i := 0; i <= 8; i++ { // left shoulder, quadratic Bézier
		u := float64(i) / 8
		a, c, d := vec{-w, ys}, vec{-w, ys - sh}, vec{-nw, ys - sh}
		out = append(out, a.lerp(c, u).lerp(c.lerp(d, u), u))
	}
	out = append(out, arc(0, yn, nw, nw*t, math.Pi, 2*math.Pi, 12, true)...)
	for i := 8; i >= 0; i-- {
		u := float64(i) / 8
		a, c, d := vec{w, ys}, vec{w, ys - sh}, vec{nw, ys - sh}
		out = append(out, a.lerp(c, u).lerp(c.lerp(d, u), u))
	}
	bodyMat, labelMat := matBody, matTrim
	if p.bit(2) {
		bodyMat, labelMat = matTrim, matBody
	}
	b.add(bodyMat, shCyl, out).cyl(b, 0, w)
	yA, yB := lerp(ys, yb, lerp(0.05, 0.25, pr[5])), lerp(ys, yb, lerp(0.7, 0.9, pr[6]))
	b.add(labelMat, shCyl, band(0, yA, yB, w*1.005, t)).cyl(b, 0, w)
	capMat := matTrim
	if p.bit(1) {
		capMat = matMetal
	}
	cw := nw * 1.12
	if p.style == 2 {
		cw = nw * 1.3
	}
	b.add(capMat, shCyl, cone(0, ycap, cw, yn+0.03, cw, t)).cyl(b, 0, cw)
	b.add(capMat, shFlat, ellipse(0, ycap, cw, cw*t, 24)).bright(1.15)
	b.mark(surface{y0: yA, y1: yB, cyl: true, rx: w})
}

func (b *builder) box() {
	p, pr := b.p, b.p.prop
	w, h, d := lerp(0.5, 0.9, pr[0]), lerp(0.35, 0.8, pr[1]), lerp(0.3, 0.7, pr[2])
	if p.style == 2 { // cabinet
		w, h = lerp(0.4, 0.65, pr[0]), lerp(0.8, 1.1, pr[1])
	}
	s, c := math.Sincos(b.yaw)
	fw := w * (0.55 + 0.45*c)
	sd, td := 1.6*d*s, 1.6*d*b.tilt
	front := [4]vec{{-fw, -h}, {fw, -h}, {fw, h}, {-fw, h}}
	var side [4]vec
	if sd > 0 {
		side = [4]vec{{fw, -h}, {fw + sd, -h - td}, {fw + sd, h - td}, {fw, h}}
	} else {
		side = [4]vec{{-fw + sd, -h - td}, {-fw, -h}, {-fw, h}, {-fw + sd, h - td}}
	}
	top := [4]vec{{-fw + sd, -h - td}, {fw + sd, -h - td}, {fw, -h}, {-fw, -h}}
	if p.style == 2 { // feet
		for _, x := range []float64{-fw * 0.85, fw * 0.85} {
			b.add(matDark, shFlat, rect(x-0.04, h-0.02, x+0.04, h+0.07))
		}
	}
	b.add(matBody, shFlat, quadPath(side)).bright(0.72)
	topMat := matBody
	if p.bit(3) {
		topMat = matTrim
	}
	b.add(topMat, shFlat, quadPath(top)).bright(1.1)
	b.add(matBody, shFlat, quadPath(front))
	switch p.style {
	case 0: // packaging: flap seam and a band
		b.add(matDark, shFlat, stroke([]vec{quadPoint(top, 0, 0.5), quadPoint(top, 1, 0.5)}, 0.012)...)
		if p.bit(4) {
			b.add(matTrim, shFlat, quadRect(front, 0, lerp(0.6, 0.8, pr[3]), 1, lerp(0.82, 0.95, pr[4])))
		}
	case 1: // toaster-like appliance: slots, lever, knob
		b.add(matDark, shFlat, quadRect(top, 0.12, 0.25, 0.88, 0.38), quadRect(top, 0.12, 0.6, 0.88, 0.73))
		b.add(matMetal, shFlat, quadRect(side, 0.3, 0.2, 0.7, 0.3))
		b.add(matTrim, shSphere, ellipse(fw*0.65, h*0.6, 0.07*(0.55+0.45*c), 0.07, 16))
	case 2: // cabinet: drawers with knobs
		n := 2 + int(pr[5]*2.99)
		for i := 1; i < n; i++ {
			y := float64(i) / float64(n)
			b.add(matDark, shFlat, quadRect(front, 0.03, y-0.006, 0.97, y+0.006))
		}
		for i := 0; i < n; i++ {
			q := quadPoint(front, 0.5, (float64(i)+0.5)/float64(n))
			b.add(matMetal, shSphere, ellipse(q.x, q.y, 0.05*(0.55+0.45*c), 0.035, 12))
		}
	}
	sq := 0.55 + 0.45*c
	b.mark(surface{x0: -fw, y0: -h, x1: fw, y1: h, squash: sq})
}

func (b *builder) shoe() {
	p, pr := b.p, b.p.prop
	from := len(b.parts)
	L, hh := lerp(0.85, 1.0, pr[0]), lerp(0.45, 0.7, pr[1])
	soleH, toeH := lerp(0.07, 0.16, pr[2]), lerp(0.18, 0.3, pr[3])
	if p.style == 1 { // boot
		hh = lerp(0.9, 1.25, pr[1])
	}
	sb := 0.5
	st := sb - soleH
	solePts := []vec{{-L, st}, {-0.3, st - 0.01}, {L * 0.7, st}, {L * 1.0, st - soleH*0.5}, {L * 1.02, sb - soleH*0.3},
		{L * 0.8, sb}, {-0.2, sb}, {-L * 0.98, sb}, {-L * 1.02, sb - soleH*0.5}}
	if p.style == 2 { // raised heel
		solePts[7], solePts[8] = vec{-L * 0.9, sb + 0.12}, vec{-L * 1.0, sb - soleH*0.2}
	}
	upper := []vec{{-L * 0.98, st}, {-L * 1.04, st - hh*0.5}, {-L * 0.95, st - hh}, {-L * 0.55, st - hh*0.86},
		{-L * 0.15, st - hh*1.02}, {L * 0.25, st - toeH*1.5}, {L * 0.75, st - toeH}, {L * 0.99, st - toeH*0.35}, {L * 0.9, st + 0.01}}
	if p.style == 1 {
		upper[3] = vec{-L * 0.55, st - hh*0.98}
		upper[4] = vec{-L * 0.2, st - hh*0.95}
	}
	b.add(matBody, shSphere, smoothPath(upper, 5))
	b.add(matTrim, shFlat, []vec{{-L * 0.97, st}, {-L * 1.03, st - hh*0.45}, {-L * 0.72, st - hh*0.4}, {-L * 0.6, st}}).bright(0.95)
	b.add(matDark, shFlat, ellipse(-L*0.6, st-hh*0.9, 0.22*L, 0.045+0.1*b.tilt, 16))
	soleMat := matTrim
	if p.bit(5) {
		soleMat = matGlow
	}
	b.add(soleMat, shFlat, smoothPath(solePts, 4))
	n := 3 + int(pr[4]*2.99)
	if p.style == 1 {
		n += 2
	}
	a0, a1 := vec{-L * 0.12, st - hh*0.93}, vec{L * 0.28, st - toeH*1.45}
	if p.style == 1 {
		a0 = vec{-L * 0.35, st - hh*0.9}
	}
	var laces [][]vec
	for i := 0; i < n; i++ {
		c := a0.lerp(a1, (float64(i)+0.5)/float64(n))
		laces = append(laces, stroke([]vec{c.add(vec{-0.06, -0.03}), c.add(vec{0.06, 0.03})}, 0.025)...)
	}
	b.add(matGlyph, shFlat, laces...)
	xs := 0.6 + 0.4*math.Cos(b.yaw*1.2)
	b.mark(surface{x0: -L * 0.55, y0: st - hh*0.55, x1: L * 0.35, y1: st - 0.04})
	b.scaleX(from, xs)
}

func (b *builder) lamp() {
	p, pr := b.p, b.p.prop
	t := b.tilt
	baseR, baseH := lerp(0.3, 0.55, pr[0]), lerp(0.06, 0.14, pr[1])
	rt := lerp(0.25, 0.42, pr[2])
	rb := rt * lerp(1.3, 1.9, pr[3])
	if p.style == 2 { // drum shade
		rb = rt
	}
	shH := lerp(0.45, 0.8, pr[4])
	ysb := lerp(-0.2, 0.15, pr[5])
	yst := ysb - shH
	baseMat := matTrim
	if p.bit(6) {
		baseMat = matMetal
	}
	b.add(baseMat, shCyl, cone(0, 1-baseH, baseR*0.9, 1, baseR, t)).cyl(b, 0, baseR)
	b.add(baseMat, shFlat, ellipse(0, 1-baseH, baseR*0.9, baseR*0.9*t, 24)).bright(1.15)
	sw := lerp(0.025, 0.05, pr[6])
	b.add(matMetal, shCyl, rect(-sw, ysb-0.1, sw, 1-baseH)).frame = [4]float64{0, 0, sw, 1}
	if p.style == 1 { // globe
		r := shH * 0.62
		cy := ysb - r*0.8
		b.add(matBody, shSphere, ellipse(0, cy, r, r, 40))
		b.mark(surface{x0: -r * 0.7, y0: cy - r*0.5, x1: r * 0.7, y1: cy + r*0.5})
		return
	}
	b.add(matGlow, shFlat, ellipse(0, ysb, rb*0.95, rb*0.95*t, 24)).bright(0.95)
	b.add(matBody, shCyl, cone(0, yst, rt, ysb, rb, t)).cyl(b, 0, (rt+rb)/2)
	b.add(matGlow, shFlat, ellipse(0, yst, rt*0.97, rt*0.97*t, 24)).bright(0.85)
	if p.bit(7) {
		b.add(matTrim, shCyl, cone(0, ysb-0.05, rb*0.98, ysb, rb, t)).cyl(b, 0, rb)
	}
	b.mark(surface{y0: yst + 0.15*shH, y1: ysb - 0.15*shH, cyl: true, rx: (rt + rb) / 2})
}

// platform returns the four corners of a horizontal rectangle (front-left,
// front-right, back-right, back-left) seen with the builder's pose.
func (b *builder) platform(halfW, depth, y float64) (fl, fr, br, bl vec, cx float64) {
	s, c := math.Sincos(b.yaw)
	cx = 0.6 + 0.4*c
	dv := vec{s * depth * 1.3, -(0.2 + b.tilt) * depth * 1.6}
	fl, fr = vec{-halfW * cx, y}, vec{halfW * cx, y}
	return fl, fr, fr.add(dv), fl.add(dv), cx
}

func (b *builder) chair() {
	p, pr := b.p, b.p.prop
	sw, sd, seatY := lerp(0.45, 0.7, pr[0]), lerp(0.25, 0.45, pr[1]), lerp(0.0, 0.25, pr[2])
	backH, legW, thick := lerp(0.6, 1.0, pr[3]), lerp(0.04, 0.08, pr[4]), lerp(0.06, 0.12, pr[5])
	fl, fr, br, bl, cx := b.platform(sw, sd, seatY)
	dy := bl.y - fl.y
	in := vec{0, thick}
	leg := func(top vec, ground float64, dx float64) []vec {
		return []vec{top.add(in).add(vec{dx * legW, 0}), {top.x + dx*legW*1.5, ground}}
	}
	lean := br.sub(fr).scale(0.25)
	back := [4]vec{bl.add(vec{0, -backH}).add(lean), br.add(vec{0, -backH}).add(lean), br, bl}
	// Back legs run up into the backrest as posts.
	for i, c := range []vec{bl, br} {
		dx := 1 - 2*float64(i)
		post := quadPoint(back, 0.5-dx*0.42, 0.35)
		b.add(matTrim, shFlat, stroke([]vec{post, c.add(vec{dx * legW, 0}), {c.x + dx*legW*1.5, 1 + dy}}, legW)...).bright(0.8)
	}
	bp := b.add(matBody, shSphere, smoothPath(quadPath(back), 3))
	if p.style == 1 { // slatted back
		bp.mat = matTrim
		n := 2 + int(pr[6]*1.99)
		for i := 0; i < n; i++ {
			s0 := 0.12 + 0.76*float64(i)/float64(n)
			bp.holes = append(bp.holes, quadRect(back, s0+0.03, 0.12, s0+0.76/float64(n)-0.03, 0.7))
		}
	}
	b.add(matBody, shSphere, quadPath([4]vec{bl, br, fr, fl})).bright(1.08)
	b.add(matTrim, shFlat, []vec{fl, fr, fr.add(in), fl.add(in)}).bright(0.8)
	b.add(matTrim, shFlat, stroke(leg(fl, 1, 1), legW)...)
	b.add(matTrim, shFlat, stroke(leg(fr, 1, -1), legW)...)
	if p.style == 2 { // armrests
		for _, pair := range [][2]vec{{fl, bl}, {fr, br}} {
			a := pair[0].add(vec{0, -backH * 0.35})
			c := pair[1].add(vec{0, -backH * 0.4})
			b.add(matTrim, shFlat, stroke([]vec{pair[0], a, c}, legW*1.2)...)
		}
	}
	if p.style != 1 {
		b.mark(surface{x0: back[0].x, y0: back[0].y + 0.05, x1: back[1].x, y1: back[3].y - 0.05, squash: cx})
	} else {
		b.mark(surface{x0: fl.x, y0: br.y, x1: fr.x, y1: fl.y, squash: cx})
	}
}

func (b *builder) kettle() {
	p, pr := b.p, b.p.prop
	rx, ry, cy := lerp(0.45, 0.62, pr[0]), lerp(0.45, 0.6, pr[1]), 0.25
	t := b.tilt
	spoutFront := math.Cos(-math.Pi/2-b.yaw) > 0
	sxp := -rx * math.Cos(b.yaw) * 0.9
	spout := []vec{{sxp, cy - 0.05}, {sxp - lerp(0.3, 0.5, pr[2])*math.Cos(b.yaw), cy - ry*0.75}, {sxp - (lerp(0.3, 0.5, pr[2])-0.06)*math.Cos(b.yaw), cy - ry*0.75 + 0.02}, {sxp + 0.02, cy + 0.3}}
	if !spoutFront {
		b.add(matBody, shFlat, spout).bright(0.85)
	}
	var hFront bool
	var handle func()
	if p.style != 0 {
		hFront, handle = b.sideHandle(rx, cy-ry*0.7, cy+ry*0.4, rx*0.55, lerp(0.08, 0.14, pr[3]), math.Pi/2, matTrim)
		if !hFront {
			handle()
		}
	}
	b.add(matDark, shFlat, ellipse(0, cy+ry*0.86, rx*0.8, rx*0.8*t+0.02, 24))
	if p.style == 1 { // cylindrical electric kettle
		b.add(matBody, shCyl, cone(0, cy-ry, rx*0.82, cy+ry*0.85, rx, t)).cyl(b, 0, rx)
	} else {
		var egg []vec
		for i := 0; i < 48; i++ {
			a := 2 * math.Pi * float64(i) / 48
			s, c := math.Sincos(a)
			egg = append(egg, vec{rx * c * (1 + 0.12*s), cy + math.Min(ry*s, ry*0.86)})
		}
		b.add(matBody, shCyl, egg).cyl(b, 0, rx)
	}
	b.add(matTrim, shFlat, ellipse(0, cy-ry*0.92, rx*0.42, rx*0.42*math.Max(t, 0.15), 24)).bright(1.05)
	b.add(matDark, shSphere, ellipse(0, cy-ry*0.97-0.04, 0.07, 0.05, 12))
	b.mark(surface{y0: cy - 0.45*ry, y1: cy + 0.5*ry, cyl: true, rx: rx})
	if spoutFront {
		b.add(matBody, shFlat, spout).bright(1.05)
	}
	if p.style == 0 { // arched top handle
		k := math.Cos(b.yaw)*0.7 + 0.3
		pts := arc(0, cy-ry*0.8, rx*0.55*k, lerp(0.3, 0.45, pr[3]), math.Pi, 2*math.Pi, 12, true)
		b.add(matTrim, shFlat, stroke(pts, lerp(0.06, 0.1, pr[4]))...)
	} else if hFront {
		handle()
	}
}

func (b *builder) table() {
	p, pr := b.p, b.p.prop
	tw, td, ty := lerp(0.7, 1.0, pr[0]), lerp(0.3, 0.6, pr[1]), lerp(-0.3, 0.1, pr[2])
	thick, legW := lerp(0.05, 0.12, pr[3]), lerp(0.05, 0.1, pr[4])
	fl, fr, br, bl, cx := b.platform(tw, td, ty)
	dy := bl.y - fl.y
	inset := vec{0.08 * cx, 0}
	legs := func(a, c vec, ground float64) {
		for _, q := range []vec{a.add(inset), c.sub(inset)} {
			b.add(matTrim, shCyl, rect(q.x-legW/2, q.y, q.x+legW/2, ground)).frame = [4]float64{q.x, 0, legW / 2, 1}
		}
	}
	if p.style == 1 { // pedestal
		mid := fl.lerp(br, 0.5)
		b.add(matTrim, shFlat, ellipse(mid.x, 1+dy/2, tw*0.45*cx, tw*0.45*b.tilt+0.02, 24))
		b.add(matTrim, shCyl, rect(mid.x-legW, mid.y, mid.x+legW, 1+dy/2)).frame = [4]float64{mid.x, 0, legW, 1}
	} else {
		legs(bl, br, 1+dy)
		if p.style == 2 { // lower shelf
			sh := 0.55
			q := [4]vec{bl.add(vec{0, sh}), br.add(vec{0, sh}), fr.add(vec{0, sh}), fl.add(vec{0, sh})}
			b.add(matBody, shFlat, quadPath(q)).bright(0.9)
		}
		legs(fl, fr, 1)
	}
	b.add(matBody, shFlat, quadPath([4]vec{bl, br, fr, fl})).bright(1.1)
	edgeMat := matBody
	if p.bit(8) {
		edgeMat = matTrim
	}
	b.add(edgeMat, shFlat, []vec{fl, fr, fr.add(vec{0, thick}), fl.add(vec{0, thick})}).bright(0.75)
	b.mark(surface{x0: fl.x, y0: br.y, x1: fr.x, y1: fl.y, squash: cx})
}

func (b *builder) sofa() {
	p, pr := b.p, b.p.prop
	sw, seatY, backH := lerp(0.8, 1.0, pr[0]), lerp(0.05, 0.25, pr[1]), lerp(0.45, 0.7, pr[2])
	armW, armH, baseH := lerp(0.12, 0.22, pr[3]), lerp(0.2, 0.4, pr[4]), lerp(0.3, 0.45, pr[5])
	cx := 0.7 + 0.3*math.Cos(b.yaw)
	sh := math.Sin(b.yaw) * 0.12
	from := len(b.parts)
	for _, x := range []float64{-sw + 0.12, sw - 0.12} {
		b.add(matDark, shFlat, rect(x-0.04, seatY+baseH-0.02, x+0.04, seatY+baseH+0.1))
	}
	b.add(matBody, shSphere, roundRect(-sw+armW*0.5+sh, seatY-backH-0.1*b.tilt, sw-armW*0.5+sh, seatY+0.05, 0.1)).bright(0.9)
	b.add(matBody, shFlat, roundRect(-sw, seatY, sw, seatY+baseH, 0.05)).bright(0.82)
	n := 2 + boolInt(p.style == 1)
	inner := 2*sw - 2*armW
	for i := 0; i < n; i++ {
		x0 := -sw + armW + inner*float64(i)/float64(n)
		b.add(matBody, shSphere, roundRect(x0+0.01, seatY-0.1-0.15*b.tilt, x0+inner/float64(n)-0.01, seatY+0.1, 0.06)).bright(1.08)
	}
	armMat := matBody
	if p.bit(9) {
		armMat = matTrim
	}
	for _, x := range []float64{-sw, sw - armW} {
		b.add(armMat, shSphere, roundRect(x, seatY-armH, x+armW, seatY+baseH, armW*0.45)).bright(0.88)
	}
	if p.style == 2 { // throw pillow
		b.add(matAccent, shSphere, roundRect(sw-armW-0.42, seatY-backH*0.6, sw-armW-0.05, seatY-0.05, 0.08))
	}
	b.mark(surface{x0: -sw + armW, y0: seatY - backH*0.85, x1: sw - armW, y1: seatY - 0.15})
	b.scaleX(from, cx)
}

func (b *builder) bag() {
	p, pr := b.p, b.p.prop
	bw := lerp(0.6, 0.9, pr[0])
	tw := bw * lerp(0.7, 0.95, pr[1])
	h := lerp(0.5, 0.8, pr[2])
	yb := 0.9
	yt := yb - 2*h
	from := len(b.parts)
	hw := lerp(0.05, 0.09, pr[3])
	switch p.style {
	case 1: // tote: two straps
		for _, k := range []float64{-0.35, 0.35} {
			b.add(matTrim, shFlat, stroke(arc(k*tw, yt, tw*0.3, h*0.75, math.Pi, 2*math.Pi, 10, true), hw)...).bright(0.9)
		}
	default:
		b.add(matTrim, shFlat, stroke(arc(0, yt+0.02, tw*0.55, h*lerp(0.5, 0.8, pr[4]), math.Pi, 2*math.Pi, 14, true), hw)...)
	}
	r := 0.12
	body := []vec{{-tw + r, yt}, {tw - r, yt}, {tw, yt + r}, {bw, yb - r}, {bw - r, yb}, {-bw + r, yb}, {-bw, yb - r}, {-tw, yt + r}}
	b.add(matBody, shSphere, smoothPath(body, 4))
	surf := surface{x0: -tw * 0.8, y0: yt + 0.1, x1: tw * 0.8, y1: yb - 0.15}
	if p.style != 1 {
		fy := yt + 2*h*lerp(0.35, 0.55, pr[5])
		flap := []vec{{-tw - 0.01, yt}, {tw + 0.01, yt}, {tw * 1.02, fy - 0.15}, {0, fy}, {-tw * 1.02, fy - 0.15}}
		b.add(matTrim, shFlat, smoothPath(flap, 4)).bright(1.05)
		surf = surface{x0: -tw * 0.6, y0: yt + 0.05, x1: tw * 0.6, y1: fy - 0.02}
	}
	if p.style == 2 { // front pocket
		b.add(matTrim, shSphere, roundRect(-bw*0.6, yb-h*0.8, bw*0.6, yb-0.08, 0.08)).bright(0.9)
	}
	b.mark(surf)
	b.scaleX(from, 0.65+0.35*math.Cos(b.yaw))
}

func (b *builder) fan() {
	p, pr := b.p, b.p.prop
	R, hy := lerp(0.5, 0.68, pr[0]), lerp(-0.4, -0.2, pr[1])
	poleW, baseR := lerp(0.035, 0.06, pr[2]), lerp(0.35, 0.5, pr[3])
	t := b.tilt
	b.add(matTrim, shCyl, cone(0, 0.92, baseR*0.95, 1, baseR, t)).cyl(b, 0, baseR)
	b.add(matTrim, shFlat, ellipse(0, 0.92, baseR*0.95, baseR*0.95*t, 24)).bright(1.12)
	b.add(matMetal, shCyl, rect(-poleW, hy, poleW, 0.93)).frame = [4]float64{0, 0, poleW, 1}
	sx := 0.55 + 0.45*math.Cos(b.yaw)
	back := math.Sin(b.yaw) * 0.18
	b.add(matTrim, shSphere, ellipse(back, hy, 0.2, 0.2, 20)).bright(0.85)
	nb := 3 + p.style
	off := pr[4] * math.Pi
	var blades [][]vec
	for i := 0; i < nb; i++ {
		a := off + 2*math.Pi*float64(i)/float64(nb)
		bl := ellipse(R*0.48, 0, R*0.44, R*lerp(0.16, 0.26, pr[5]), 20)
		m := rotation(a)
		for j := range bl {
			q := m.apply(bl[j])
			bl[j] = vec{q.x * sx, hy + q.y}
		}
		blades = append(blades, bl)
	}
	b.add(matBody, shFlat, blades...)
	b.add(matTrim, shSphere, ellipse(0, hy, 0.16*sx, 0.16, 20))
	gm := matMetal
	if p.bit(10) {
		gm = matTrim
	}
	g := b.add(gm, shFlat, ellipse(0, hy, R*sx, R, 48), ellipse(0, hy, R*0.6*sx, R*0.6, 40))
	g.holes = [][]vec{ellipse(0, hy, (R-0.04)*sx, R-0.04, 48), ellipse(0, hy, (R*0.6-0.015)*sx, R*0.6-0.015, 40)}
	b.mark(surface{x0: -0.15 * sx, y0: hy - 0.15, x1: 0.15 * sx, y1: hy + 0.15})
}

func (b *builder) bicycle() {
	p, pr := b.p, b.p.prop
	wr, wb := lerp(0.38, 0.48, pr[0]), lerp(0.55, 0.7, pr[1])
	tube, tyre := lerp(0.035, 0.06, pr[2]), lerp(0.04, 0.07, pr[3])
	if p.style == 2 {
		tyre *= 1.5
	}
	from := len(b.parts)
	R, F := vec{-wb, 0.45}, vec{wb, 0.45}
	B := vec{-0.05, 0.5}
	S := vec{-0.22 - 0.1*pr[4], -0.18}
	H := vec{wb * 0.62, -0.22 + 0.1*pr[5]}
	for _, c := range []vec{R, F} {
		t := b.add(matDark, shFlat, ellipse(c.x, c.y, wr, wr, 40))
		t.holes = [][]vec{ellipse(c.x, c.y, wr-tyre, wr-tyre, 40)}
		rim := b.add(matMetal, shFlat, ellipse(c.x, c.y, wr-tyre, wr-tyre, 40))
		rim.holes = [][]vec{ellipse(c.x, c.y, wr-tyre-0.025, wr-tyre-0.025, 40)}
		var spokes [][]vec
		for i := 0; i < 8; i++ {
			s, co := math.Sincos(float64(i) * math.Pi / 8)
			spokes = append(spokes, stroke([]vec{c.add(vec{co * (wr - tyre), s * (wr - tyre)}), c.sub(vec{co * (wr - tyre), s * (wr - tyre)})}, 0.008)...)
		}
		b.add(matMetal, shFlat, spokes...)
		b.add(matMetal, shSphere, ellipse(c.x, c.y, 0.04, 0.04, 12))
	}
	top := S.lerp(B, 0.05)
	if p.style == 1 { // step-through
		top = S.lerp(B, 0.55)
	}
	b.add(matMetal, shFlat, ellipse(B.x, B.y, 0.1, 0.1, 20)).holes = [][]vec{ellipse(B.x, B.y, 0.06, 0.06, 16)}
	var frame [][]vec
	for _, seg := range [][2]vec{{R, B}, {R, S}, {S, B}, {top, H}, {H, B}} {
		frame = append(frame, stroke([]vec{seg[0], seg[1]}, tube)...)
	}
	b.add(matBody, shFlat, frame...)
	b.add(matTrim, shFlat, stroke([]vec{H, F}, tube*0.8)...)
	b.add(matDark, shSphere, smoothPath([]vec{{S.x - 0.14, S.y - 0.12}, {S.x + 0.1, S.y - 0.14}, {S.x + 0.12, S.y - 0.1}, {S.x - 0.12, S.y - 0.07}}, 3))
	b.add(matDark, shFlat, stroke([]vec{S, S.add(vec{0, -0.1})}, tube*0.7)...)
	bar := H.add(vec{-0.04, -0.16})
	b.add(matDark, shFlat, stroke([]vec{H, bar, bar.add(vec{-0.16, 0.03})}, tube*0.8)...)
	m := H.lerp(B, 0.45)
	b.mark(surface{x0: m.x - 0.16, y0: m.y - 0.16, x1: m.x + 0.16, y1: m.y + 0.16})
	b.scaleX(from, 0.55+0.45*math.Cos(b.yaw))
}
