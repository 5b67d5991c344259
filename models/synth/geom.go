package synth

import "math"

// vec is a point in object or image coordinates (y grows downwards).
type vec struct{ x, y float64 }

func (a vec) add(b vec) vec             { return vec{a.x + b.x, a.y + b.y} }
func (a vec) sub(b vec) vec             { return vec{a.x - b.x, a.y - b.y} }
func (a vec) scale(k float64) vec       { return vec{a.x * k, a.y * k} }
func (a vec) lerp(b vec, t float64) vec { return vec{a.x + (b.x-a.x)*t, a.y + (b.y-a.y)*t} }

// mat3 is a row-major 3×3 homography acting on column vectors (x, y, 1).
type mat3 [9]float64

func translate(dx, dy float64) mat3 { return mat3{1, 0, dx, 0, 1, dy, 0, 0, 1} }

func scaling(sx, sy float64) mat3 { return mat3{sx, 0, 0, 0, sy, 0, 0, 0, 1} }

func rotation(a float64) mat3 {
	s, c := math.Sincos(a)
	return mat3{c, -s, 0, s, c, 0, 0, 0, 1}
}

func shearing(kx, ky float64) mat3 { return mat3{1, kx, 0, ky, 1, 0, 0, 0, 1} }

// mul returns m·n (n is applied first).
func (m mat3) mul(n mat3) mat3 {
	var r mat3
	for i := 0; i < 3; i++ {
		for j := 0; j < 3; j++ {
			r[3*i+j] = m[3*i]*n[j] + m[3*i+1]*n[3+j] + m[3*i+2]*n[6+j]
		}
	}
	return r
}

func (m *mat3) apply(p vec) vec {
	w := m[6]*p.x + m[7]*p.y + m[8]
	return vec{(m[0]*p.x + m[1]*p.y + m[2]) / w, (m[3]*p.x + m[4]*p.y + m[5]) / w}
}

func (m mat3) inverse() mat3 {
	a, b, c := m[0], m[1], m[2]
	d, e, f := m[3], m[4], m[5]
	g, h, i := m[6], m[7], m[8]
	A := e*i - f*h
	B := -(d*i - f*g)
	C := d*h - e*g
	det := a*A + b*B + c*C
	inv := 1 / det
	return mat3{
		A * inv, -(b*i - c*h) * inv, (b*f - c*e) * inv,
		B * inv, (a*i - c*g) * inv, -(a*f - c*d) * inv,
		C * inv, -(a*h - b*g) * inv, (a*e - b*d) * inv,
	}
}

// ellipse samples a full ellipse with n points.
func ellipse(cx, cy, rx, ry float64, n int) []vec {
	return arc(cx, cy, rx, ry, 0, 2*math.Pi, n, false)
}

// arc samples the ellipse from angle a0 to a1 (radians, y down, 0 = +x). When
// closedEnd is true the end point is included.
func arc(cx, cy, rx, ry, a0, a1 float64, n int, closedEnd bool) []vec {
	pts := make([]vec, 0, n+1)
	m := n
	if closedEnd {
		m = n + 1
	}
	for i := 0; i < m; i++ {
		a := a0 + (a1-a0)*float64(i)/float64(n)
		s, c := math.Sincos(a)
		pts = append(pts, vec{cx + rx*c, cy + ry*s})
	}
	return pts
}

func rect(x0, y0, x1, y1 float64) []vec {
	return []vec{{x0, y0}, {x1, y0}, {x1, y1}, {x0, y1}}
}

// roundRect is an axis-aligned rectangle with corner radius r.
func roundRect(x0, y0, x1, y1, r float64) []vec {
	r = math.Min(r, math.Min(x1-x0, y1-y0)/2)
	if r <= 0 {
		return rect(x0, y0, x1, y1)
	}
	const n = 6
	var pts []vec
	pts = append(pts, arc(x1-r, y0+r, r, r, -math.Pi/2, 0, n, true)...)
	pts = append(pts, arc(x1-r, y1-r, r, r, 0, math.Pi/2, n, true)...)
	pts = append(pts, arc(x0+r, y1-r, r, r, math.Pi/2, math.Pi, n, true)...)
	pts = append(pts, arc(x0+r, y0+r, r, r, math.Pi, 1.5*math.Pi, n, true)...)
	return pts
}

// quadPoint maps (s, t) in the unit square bilinearly onto the quadrilateral
// q = (p00, p10, p11, p01).
func quadPoint(q [4]vec, s, t float64) vec {
	a := q[0].lerp(q[1], s)
	b := q[3].lerp(q[2], s)
	return a.lerp(b, t)
}

// quadRect maps the unit-square rectangle [s0,s1]×[t0,t1] onto q.
func quadRect(q [4]vec, s0, t0, s1, t1 float64) []vec {
	return []vec{quadPoint(q, s0, t0), quadPoint(q, s1, t0), quadPoint(q, s1, t1), quadPoint(q, s0, t1)}
}

func signedArea(p []vec) float64 {
	var a float64
	for i := range p {
		j := (i + 1) % len(p)
		a += p[i].x*p[j].y - p[j].x*p[i].y
	}
	return a / 2
}

// oriented returns p with a positive (or negative) signed area.
func oriented(p []vec, positive bool) []vec {
	if (signedArea(p) >= 0) == positive {
		return p
	}
	r := make([]vec, len(p))
	for i := range p {
		r[len(p)-1-i] = p[i]
	}
	return r
}

// stroke turns a polyline into filled sub-paths: one quad per segment and a
// disc at every vertex (round joins and caps).
func stroke(pts []vec, w float64) [][]vec {
	h := w / 2
	var out [][]vec
	for i := 0; i+1 < len(pts); i++ {
		a, b := pts[i], pts[i+1]
		d := b.sub(a)
		l := math.Hypot(d.x, d.y)
		if l == 0 {
			continue
		}
		n := vec{-d.y / l * h, d.x / l * h}
		out = append(out, []vec{a.add(n), b.add(n), b.sub(n), a.sub(n)})
	}
	for _, p := range pts {
		out = append(out, ellipse(p.x, p.y, h, h, 10))
	}
	return out
}

// smoothPath subdivides a closed polygon with Catmull-Rom splines.
func smoothPath(p []vec, steps int) []vec {
	n := len(p)
	out := make([]vec, 0, n*steps)
	for i := 0; i < n; i++ {
		p0, p1, p2, p3 := p[(i+n-1)%n], p[i], p[(i+1)%n], p[(i+2)%n]
		for s := 0; s < steps; s++ {
			t := float64(s) / float64(steps)
			t2, t3 := t*t, t*t*t
			f := func(a, b, c, d float64) float64 {
				return 0.5 * (2*b + (-a+c)*t + (2*a-5*b+4*c-d)*t2 + (-a+3*b-3*c+d)*t3)
			}
			out = append(out, vec{f(p0.x, p1.x, p2.x, p3.x), f(p0.y, p1.y, p2.y, p3.y)})
		}
	}
	return out
}

func lerp(a, b, t float64) float64 { return a + (b-a)*t }

func clamp01(x float64) float64 {
	if x < 0 {
		return 0
	}
	if x > 1 {
		return 1
	}
	return x
}

func smoothstep(e0, e1, x float64) float64 {
	t := clamp01((x - e0) / (e1 - e0))
	return t * t * (3 - 2*t)
}
