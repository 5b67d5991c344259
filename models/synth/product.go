package synth

import (
	"hash/fnv"
	"math"
	"math/rand/v2"
	"strconv"
)

// Random streams: every random decision draws from a PCG seeded by
// (Options.Seed, stream, ids...), so the result for one image never depends on
// which worker renders it or in which order.
const (
	streamPlan uint64 = iota + 1
	streamCategory
	streamProduct
	streamView
	streamSession
	streamPixels
)

func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

func seeds(seed int64, stream uint64, ids ...uint64) (uint64, uint64) {
	h := mix64(uint64(seed) ^ 0x5851f42d4c957f2d)
	h = mix64(h ^ stream*0x9e3779b97f4a7c15)
	for _, id := range ids {
		h = mix64(h ^ (id + 0x632be59bd9b4e019))
	}
	return h, mix64(h ^ 0xda942042e4dd58b5)
}

func newRand(seed int64, stream uint64, ids ...uint64) *rand.Rand {
	a, b := seeds(seed, stream, ids...)
	return rand.New(rand.NewPCG(a, b))
}

func uniform(r *rand.Rand, a, b float64) float64 { return a + (b-a)*r.Float64() }

// rgb is a colour with channels in [0, 1].
type rgb struct{ r, g, b float64 }

func (c rgb) mix(d rgb, t float64) rgb {
	return rgb{c.r + (d.r-c.r)*t, c.g + (d.g-c.g)*t, c.b + (d.b-c.b)*t}
}

func (c rgb) mul(k float64) rgb { return rgb{c.r * k, c.g * k, c.b * k} }

func (c rgb) luma() float64 { return 0.299*c.r + 0.587*c.g + 0.114*c.b }

func hsv(h, s, v float64) rgb {
	h = (h - math.Floor(h)) * 6
	i := math.Floor(h)
	f := h - i
	p, q, t := v*(1-s), v*(1-s*f), v*(1-s*(1-f))
	switch int(i) {
	case 0:
		return rgb{v, t, p}
	case 1:
		return rgb{q, v, p}
	case 2:
		return rgb{p, v, t}
	case 3:
		return rgb{p, q, v}
	case 4:
		return rgb{t, p, v}
	default:
		return rgb{v, p, q}
	}
}

// texKind is a surface pattern.
type texKind uint8

const (
	texNone texKind = iota
	texStripes
	texDots
	texChecks
	texGradient
	texNoise
	numTex
)

// material is a colour pair and a pattern that mixes them, in object units.
type material struct {
	c0, c1       rgb
	tex          texKind
	period, duty float64
	cs, sn       float64 // pattern direction
	gloss        float64
	seed         uint32
}

// Material slots of a product.
const (
	matBody   = iota // main, patterned
	matTrim          // secondary parts
	matAccent        // mark patch
	matGlyph         // mark glyph
	matDark          // rubber, slots, tyres
	matMetal         // poles, rims
	matGlow          // bulbs
	numMats
)

// family is a shape family: how products of a category are drawn.
type family uint8

const (
	famMug family = iota
	famBottle
	famBox
	famShoe
	famLamp
	famChair
	famKettle
	famTable
	famSofa
	famBag
	famFan
	famBicycle
	numFamilies
)

var builtinCategories = []string{
	"mug", "bottle", "box", "shoe", "lamp", "chair",
	"kettle", "table", "sofa", "bag", "fan", "bicycle",
}

// BuiltinCategories returns the category names that have their own shape
// family, in family order.
func BuiltinCategories() []string { return append([]string(nil), builtinCategories...) }

// CategoryNames returns n category names: the built-in ones first, then
// numbered repeats ("mug_2", …) that reuse the families with other traits.
func CategoryNames(n int) []string {
	out := make([]string, 0, n)
	for i := 0; i < n; i++ {
		name := builtinCategories[i%len(builtinCategories)]
		if k := i / len(builtinCategories); k > 0 {
			name = name + "_" + strconv.Itoa(k+1)
		}
		out = append(out, name)
	}
	return out
}

// categoryTraits are shared by every product of a category, so that products of
// one category are hard negatives of each other.
type categoryTraits struct {
	name  string
	fam   family
	style int
	prop  [8]float64
	tex   [2]texKind
	hue   float64
	sat   float64
}

func familyFor(name string, index int) family {
	base := name
	for i := len(name) - 1; i >= 0; i-- {
		if name[i] == '_' {
			base = name[:i]
			break
		}
		if name[i] < '0' || name[i] > '9' {
			break
		}
	}
	for i, b := range builtinCategories {
		if b == name || b == base {
			return family(i)
		}
	}
	return family(index % int(numFamilies))
}

func newCategory(seed int64, name string, index int) *categoryTraits {
	h := fnv.New64a()
	h.Write([]byte(name))
	r := newRand(seed, streamCategory, h.Sum64())
	c := &categoryTraits{name: name, fam: familyFor(name, index), style: r.IntN(3)}
	for i := range c.prop {
		c.prop[i] = uniform(r, 0.15, 0.85)
	}
	c.tex[0] = texKind(1 + r.IntN(int(numTex)-1))
	c.tex[1] = texKind(1 + r.IntN(int(numTex)-1))
	c.hue = r.Float64()
	c.sat = uniform(r, 0.3, 0.8)
	return c
}

// markSpec is a product's logo: a patch with a glyph at a product-specific place.
type markSpec struct {
	patch   int // 0 circle, 1 rounded square, 2 diamond, 3 hexagon, 4 glyph only
	strokes [][2]vec
	ring    bool
	a, b    float64 // place on the mark surface, in [0, 1]
	size    float64
	angle   float64
}

// product is everything that defines how one label looks.
type product struct {
	label int64
	cat   *categoryTraits
	fam   family
	style int
	prop  [8]float64
	mats  [numMats]material
	mark  markSpec
	bits  uint64 // independent binary choices
}

func randomColour(r *rand.Rand) rgb {
	if r.Float64() < 0.3 { // neutral: black, greys, white, beige
		v := []float64{0.08, 0.2, 0.45, 0.7, 0.9, 0.97}[r.IntN(6)]
		return hsv(r.Float64(), uniform(r, 0, 0.08), v)
	}
	return hsv(r.Float64(), uniform(r, 0.35, 0.95), uniform(r, 0.35, 0.95))
}

func newProduct(seed int64, label int64, cat *categoryTraits) *product {
	r := newRand(seed, streamProduct, uint64(label))
	p := &product{label: label, cat: cat, fam: cat.fam, style: cat.style, bits: r.Uint64()}
	if r.Float64() < 0.2 {
		p.style = r.IntN(3)
	}
	for i := range p.prop {
		p.prop[i] = clamp01(cat.prop[i] + r.NormFloat64()*0.14)
	}

	body := &p.mats[matBody]
	switch u := r.Float64(); {
	case u < 0.35: // category colour family
		body.c0 = hsv(cat.hue+r.NormFloat64()*0.04, clamp01(cat.sat+r.NormFloat64()*0.12), uniform(r, 0.35, 0.95))
	default:
		body.c0 = randomColour(r)
	}
	if r.Float64() < 0.5 {
		k := uniform(r, 0.35, 0.6)
		if body.c0.luma() > 0.5 {
			body.c1 = body.c0.mul(1 - k)
		} else {
			body.c1 = body.c0.mix(rgb{1, 1, 1}, k)
		}
	} else {
		body.c1 = randomColour(r)
	}
	switch u := r.Float64(); {
	case u < 0.22:
		body.tex = texNone
	case u < 0.65:
		body.tex = cat.tex[r.IntN(2)]
	default:
		body.tex = texKind(1 + r.IntN(int(numTex)-1))
	}
	body.period = uniform(r, 0.1, 0.4)
	body.duty = uniform(r, 0.25, 0.6)
	ang := []float64{0, math.Pi / 2, math.Pi / 4, -math.Pi / 4, uniform(r, 0, math.Pi)}[r.IntN(5)]
	body.sn, body.cs = math.Sincos(ang)
	body.gloss = uniform(r, 0, 0.45)
	body.seed = r.Uint32()

	trim := &p.mats[matTrim]
	if r.Float64() < 0.5 {
		trim.c0 = hsv(r.Float64(), uniform(r, 0, 0.06), []float64{0.1, 0.3, 0.85, 0.95}[r.IntN(4)])
	} else {
		trim.c0 = randomColour(r)
	}
	trim.gloss = uniform(r, 0, 0.4)

	acc := &p.mats[matAccent]
	acc.c0 = hsv(r.Float64(), uniform(r, 0.6, 1), uniform(r, 0.55, 1))
	acc.gloss = 0.1
	glyph := &p.mats[matGlyph]
	if acc.c0.luma() < 0.55 {
		glyph.c0 = rgb{0.97, 0.97, 0.95}
	} else {
		glyph.c0 = rgb{0.08, 0.08, 0.1}
	}
	p.mats[matDark].c0 = hsv(r.Float64(), 0.15, uniform(r, 0.06, 0.16))
	p.mats[matDark].gloss = 0.15
	p.mats[matMetal].c0 = hsv(r.Float64(), uniform(r, 0, 0.08), uniform(r, 0.55, 0.8))
	p.mats[matMetal].gloss = 0.7
	p.mats[matGlow].c0 = rgb{1, 0.96, 0.82}
	for i := range p.mats {
		if i != matBody {
			p.mats[i].c1 = p.mats[i].c0
		}
	}

	m := &p.mark
	m.patch = r.IntN(5)
	grid := func() vec { return vec{float64(r.IntN(3)-1) * 0.5, float64(r.IntN(3)-1) * 0.5} }
	if r.Float64() < 0.25 {
		m.ring = true
	}
	for n := 2 + r.IntN(3) - boolInt(m.ring); len(m.strokes) < n; {
		a, b := grid(), grid()
		if a != b {
			m.strokes = append(m.strokes, [2]vec{a, b})
		}
	}
	m.a = uniform(r, 0.2, 0.8)
	m.b = uniform(r, 0.2, 0.8)
	m.size = uniform(r, 0.18, 0.32)
	m.angle = r.NormFloat64() * 0.15
	return p
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// bit returns the i-th independent binary choice of the product.
func (p *product) bit(i uint) bool { return p.bits>>i&1 == 1 }
