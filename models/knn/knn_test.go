package knn

import (
	"github.com/stirpipe/stirpipe/models/ort/orttest"

	"cmp"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/stirpipe/stirpipe/models/ort"
)

func TestMain(m *testing.M) { orttest.Main(m, "models/knn") }

// refNeighbor is a neighbour found by the float64 brute-force reference.
type refNeighbor struct {
	idx  int
	dist float64
}

// reference is the float64 brute force: every non-excluded gallery row, exact Euclidean
// distance of the float32 inputs, sorted by (distance, row), the first k.
func reference(q Query, g Gallery, o Options) [][]refNeighbor {
	out := make([][]refNeighbor, len(q.IDs))
	for i := range q.IDs {
		qv := q.Vectors[i*q.Dim : (i+1)*q.Dim]
		var all []refNeighbor
		for j := range g.IDs {
			if o.ExcludeSelf && g.IDs[j] == q.IDs[i] {
				continue
			}
			if o.ExcludeSameSequence && q.Sequences != nil && g.Sequences != nil &&
				q.Sequences[i] != "" && q.Sequences[i] == g.Sequences[j] {
				continue
			}
			all = append(all, refNeighbor{j, trueDist(qv, g.Vectors[j*g.Dim:(j+1)*g.Dim])})
		}
		slices.SortFunc(all, func(a, b refNeighbor) int {
			if c := cmp.Compare(a.dist, b.dist); c != 0 {
				return c
			}
			return cmp.Compare(a.idx, b.idx)
		})
		out[i] = all[:min(o.K, len(all))]
	}
	return out
}

// trueDist is the Euclidean distance in float64.
func trueDist(a, b []float32) float64 {
	var s float64
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		s += d * d
	}
	return math.Sqrt(s)
}

// compare checks got against the reference. Where the ids differ, the engine's row must
// be a valid candidate whose exact distance is within tieTol of the reference's at that
// position (a swap of near-ties); such positions are counted and returned. Every reported
// distance must be within distTol·max(1, scale) of the exact one, scale being the largest
// reference distance.
func compare(t *testing.T, got [][]Neighbor, want [][]refNeighbor, q Query, g Gallery, o Options, tieTol, distTol float64) (swaps int) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d result lists, want %d", len(got), len(want))
	}
	scale := 1.0
	for _, w := range want {
		for _, r := range w {
			scale = max(scale, r.dist)
		}
	}
	bad := 0
	for i := range want {
		if len(got[i]) != len(want[i]) {
			t.Errorf("query %d (%s): got %d neighbours, want %d", i, q.IDs[i], len(got[i]), len(want[i]))
			continue
		}
		seen := map[int]bool{}
		qv := q.Vectors[i*q.Dim : (i+1)*q.Dim]
		for r, nb := range got[i] {
			w := want[i][r]
			exact := trueDist(qv, g.Vectors[nb.Index*g.Dim:(nb.Index+1)*g.Dim])
			switch {
			case seen[nb.Index]:
				t.Errorf("query %d rank %d: row %d returned twice", i, r, nb.Index)
			case o.ExcludeSelf && g.IDs[nb.Index] == q.IDs[i]:
				t.Errorf("query %d rank %d: row %d is the query itself", i, r, nb.Index)
			case o.ExcludeSameSequence && q.Sequences != nil && g.Sequences != nil && q.Sequences[i] != "" &&
				g.Sequences[nb.Index] == q.Sequences[i]:
				t.Errorf("query %d rank %d: row %d has the query's sequence %q", i, r, nb.Index, q.Sequences[i])
			case nb.Index != w.idx && math.Abs(exact-w.dist) >= tieTol:
				t.Errorf("query %d rank %d: got row %d (exact distance %.9g), want row %d (%.9g)", i, r, nb.Index, exact, w.idx, w.dist)
			case nb.Index != w.idx:
				swaps++
			}
			seen[nb.Index] = true
			if math.Abs(float64(nb.Dist)-exact) > distTol*scale {
				t.Errorf("query %d rank %d (row %d): distance %.9g, exact %.9g", i, r, nb.Index, nb.Dist, exact)
			}
			if r > 0 && cmp.Or(cmp.Compare(got[i][r-1].Dist, nb.Dist), cmp.Compare(got[i][r-1].Index, nb.Index)) > 0 {
				t.Errorf("query %d rank %d: not ascending by (distance, row): %+v then %+v", i, r, got[i][r-1], nb)
			}
		}
		if t.Failed() {
			if bad++; bad > 5 {
				t.FailNow()
			}
		}
	}
	return swaps
}

// ids returns n ascending item ids.
func ids(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%06d", prefix, i)
	}
	return out
}

func randomVectors(r *rand.Rand, n, d int, unit bool, scale float64) []float32 {
	v := make([]float32, n*d)
	for i := range n {
		row := v[i*d : (i+1)*d]
		var s float64
		for j := range row {
			x := r.NormFloat64()
			row[j] = float32(x)
			s += x * x
		}
		f := scale * math.Exp(r.NormFloat64())
		if unit {
			f = 1 / math.Sqrt(s)
		}
		for j := range row {
			row[j] = float32(float64(row[j]) * f)
		}
	}
	return v
}

// normalize rescales every row of v to unit length (in float64, then rounded).
func normalize(v []float32, d int) {
	for i := 0; i < len(v); i += d {
		row := v[i : i+d]
		var s float64
		for _, x := range row {
			s += float64(x) * float64(x)
		}
		for j := range row {
			row[j] = float32(float64(row[j]) / math.Sqrt(s))
		}
	}
}

// gridVectors draws small-integer components: every inner product and distance is exact
// in float32, so many distances tie exactly.
func gridVectors(r *rand.Rand, n, d, levels int) []float32 {
	v := make([]float32, n*d)
	for i := range v {
		v[i] = float32(r.IntN(2*levels+1) - levels)
	}
	return v
}

// duplicated returns n rows drawn (with repetition) from the distinct rows of base.
func duplicated(r *rand.Rand, base []float32, d, n int) []float32 {
	distinct := len(base) / d
	v := make([]float32, 0, n*d)
	for range n {
		k := r.IntN(distinct)
		v = append(v, base[k*d:(k+1)*d]...)
	}
	return v
}

func newEngine(t testing.TB, o Options) *Engine {
	t.Helper()
	e, err := NewEngine(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Error(err)
		}
	})
	return e
}

// searchCase is one search compared with the reference.
type searchCase struct {
	name  string
	q     Query
	g     Gallery
	o     Options
	exact bool // ids must match the reference exactly (no near-tie swaps)
}

func searchCases() []searchCase {
	r := rand.New(rand.NewPCG(7, 11))
	var cases []searchCase
	add := func(c searchCase) { cases = append(cases, c) }

	// Random unit vectors, every item both query and gallery (SOP style).
	{
		const n, d = 700, 24
		v := randomVectors(r, n, d, true, 1)
		id := ids("p", n)
		seq := make([]string, n)
		for i := range seq {
			seq[i] = fmt.Sprintf("s%d", i/5) // sequences of 5 rows
		}
		g := Gallery{IDs: id, Sequences: seq, Vectors: v, Dim: d}
		q := Query{IDs: id, Sequences: seq, Vectors: v, Dim: d}
		add(searchCase{name: "random unit, self excluded", q: q, g: g,
			o: Options{K: 20, Normalized: true, ExcludeSelf: true}, exact: true})
		add(searchCase{name: "random unit, self and sequence excluded", q: q, g: g,
			o: Options{K: 20, Normalized: true, ExcludeSelf: true, ExcludeSameSequence: true}, exact: true})
		add(searchCase{name: "random unit, nothing excluded: self at 0", q: q, g: g,
			o: Options{K: 5, Normalized: true}, exact: true})
		add(searchCase{name: "random unit, odd tiles and chunks", q: q, g: g,
			o: Options{K: 33, Normalized: true, ExcludeSelf: true, ExcludeSameSequence: true, TileRows: 7, ChunkRows: 61, Threads: 2}, exact: true})
		add(searchCase{name: "random unit, one thread, chunk of 1", q: Query{IDs: id[:40], Sequences: seq[:40], Vectors: v[:40*d], Dim: d}, g: g,
			o: Options{K: 9, Normalized: true, ExcludeSelf: true, TileRows: 16, ChunkRows: 1, Threads: 1}, exact: true})
	}
	// Random vectors of widely varying norms, disjoint queries (In-shop style).
	{
		const nq, ng, d = 150, 900, 40
		q := Query{IDs: ids("q", nq), Vectors: randomVectors(r, nq, d, false, 3), Dim: d}
		g := Gallery{IDs: ids("g", ng), Vectors: randomVectors(r, ng, d, false, 3), Dim: d}
		add(searchCase{name: "random, not normalized", q: q, g: g, o: Options{K: 25, ChunkRows: 128}, exact: true})
	}
	// A gallery spanning several exact-distance buckets (exactBucketRows).
	{
		const nq, ng, d = 60, 9000, 4
		g := Gallery{IDs: ids("g", ng), Vectors: randomVectors(r, ng, d, true, 1), Dim: d}
		q := Query{IDs: ids("q", nq), Vectors: randomVectors(r, nq, d, true, 1), Dim: d}
		add(searchCase{name: "large gallery, small D", q: q, g: g, o: Options{K: 40, Normalized: true}, exact: true})
	}
	// D = 1: many near-ties on a line.
	{
		const n = 300
		v := randomVectors(r, n, 1, false, 1)
		id := ids("x", n)
		add(searchCase{name: "dimension 1", q: Query{IDs: id, Vectors: v, Dim: 1},
			g: Gallery{IDs: id, Vectors: v, Dim: 1}, o: Options{K: 12, ExcludeSelf: true, ChunkRows: 50}, exact: true})
	}
	// Small-integer grid vectors: exact distances, many exact ties, ties at the K boundary.
	{
		const nq, ng, d = 120, 400, 3
		q := Query{IDs: ids("q", nq), Vectors: gridVectors(r, nq, d, 2), Dim: d}
		g := Gallery{IDs: ids("g", ng), Vectors: gridVectors(r, ng, d, 2), Dim: d}
		for _, k := range []int{1, 7, 50} {
			add(searchCase{name: fmt.Sprintf("grid ties, K=%d", k), q: q, g: g, o: Options{K: k, ChunkRows: 37, TileRows: 11}, exact: true})
		}
	}
	// Exact duplicates of unit vectors: ties broken by id, also across chunks; queries are
	// copies of gallery rows (distance 0).
	{
		const ng, d = 500, 16
		base := randomVectors(r, 12, d, true, 1)
		gv := duplicated(r, base, d, ng)
		qv := duplicated(r, base, d, 40)
		g := Gallery{IDs: ids("g", ng), Vectors: gv, Dim: d}
		q := Query{IDs: ids("q", 40), Vectors: qv, Dim: d}
		for _, k := range []int{1, 30, 45, 100} {
			add(searchCase{name: fmt.Sprintf("duplicates, K=%d", k), q: q, g: g,
				o: Options{K: k, Normalized: true, ChunkRows: 64, TileRows: 8}, exact: true})
		}
		add(searchCase{name: "duplicates, not normalized", q: q, g: g, o: Options{K: 60, ChunkRows: 100}, exact: true})
	}
	// One sequence covers most of the gallery: exclusions remove far more than K rows.
	{
		const n, d = 400, 8
		v := randomVectors(r, n, d, true, 1)
		id := ids("s", n)
		seq := make([]string, n)
		for i := range seq {
			if i%10 != 0 {
				seq[i] = "big"
			} else if i%20 == 0 {
				seq[i] = fmt.Sprintf("own%d", i)
			}
		}
		add(searchCase{name: "sequence excluding 90%", q: Query{IDs: id, Sequences: seq, Vectors: v, Dim: d},
			g: Gallery{IDs: id, Sequences: seq, Vectors: v, Dim: d},
			o: Options{K: 45, Normalized: true, ExcludeSelf: true, ExcludeSameSequence: true, ChunkRows: 32}, exact: true})
	}
	// Tiny galleries and K larger than the gallery.
	{
		const d = 5
		qv := randomVectors(r, 6, d, true, 1)
		gv := randomVectors(r, 3, d, true, 1)
		q := Query{IDs: []string{"a", "c", "e", "g", "i", "k"}, Sequences: []string{"", "s", "", "t", "", ""}, Vectors: qv, Dim: d}
		for _, n := range []int{0, 1, 3} {
			g := Gallery{IDs: []string{"a", "b", "c"}[:n], Sequences: []string{"", "s", "t"}[:n], Vectors: gv[:n*d], Dim: d}
			add(searchCase{name: fmt.Sprintf("gallery of %d, K=10", n), q: q, g: g,
				o: Options{K: 10, Normalized: true, ExcludeSelf: true, ExcludeSameSequence: true}, exact: true})
		}
		add(searchCase{name: "no queries", q: Query{Dim: d}, g: Gallery{IDs: []string{"a"}, Vectors: gv[:d], Dim: d},
			o: Options{K: 3}, exact: true})
	}
	// Near-duplicates of large vectors: the inner-product formula cancels, refinement must
	// give the exact distance.
	{
		const n, d = 60, 32
		base := randomVectors(r, n, d, false, 100)
		v := slices.Clone(base)
		for i := range v {
			v[i] *= 1 + float32(r.NormFloat64())*1e-6
		}
		q := Query{IDs: ids("q", n), Vectors: v, Dim: d}
		g := Gallery{IDs: ids("g", n), Vectors: base, Dim: d}
		add(searchCase{name: "near-duplicates, large norms", q: q, g: g, o: Options{K: 3}, exact: true})
		vu := slices.Clone(base)
		normalize(vu, d)
		bu := slices.Clone(vu)
		for i := range vu {
			vu[i] += float32(r.NormFloat64()) * 1e-4
		}
		normalize(vu, d)
		add(searchCase{name: "near-duplicates, unit", q: Query{IDs: ids("q", n), Vectors: vu, Dim: d},
			g: Gallery{IDs: ids("g", n), Vectors: bu, Dim: d}, o: Options{K: 3, Normalized: true}, exact: true})
	}
	return cases
}

func TestSearchMatchesReference(t *testing.T) {
	for _, c := range searchCases() {
		t.Run(c.name, func(t *testing.T) {
			e := newEngine(t, c.o)
			got, err := e.Search(c.q, c.g)
			if err != nil {
				t.Fatal(err)
			}
			want := reference(c.q, c.g, c.o)
			swaps := compare(t, got, want, c.q, c.g, c.o, 1e-5, 1e-6)
			if c.exact && swaps > 0 {
				t.Errorf("%d near-tie swaps; want the reference's ids exactly", swaps)
			}
			for i, l := range got {
				if len(l) < min(c.o.K, len(want[i])) {
					t.Errorf("query %d: %d neighbours, want %d", i, len(l), min(c.o.K, len(want[i])))
				}
			}
		})
	}
}

// TestDuplicatesTieByID checks exact ties directly: every query equals gallery rows 3, 5
// and 9 (and nothing else is closer), so with K = 2 the result is rows 3 and 5 at
// distance 0, whatever the blocking.
func TestDuplicatesTieByID(t *testing.T) {
	const d = 7
	r := rand.New(rand.NewPCG(3, 4))
	base := randomVectors(r, 12, d, true, 1)
	target := base[:d]
	gv := slices.Clone(base)
	copy(gv[5*d:], target)
	copy(gv[9*d:], target)
	copy(gv[3*d:], target)
	g := Gallery{IDs: ids("g", 12), Vectors: gv, Dim: d}
	q := Query{IDs: []string{"q"}, Vectors: slices.Clone(target), Dim: d}
	for _, chunk := range []int{1, 2, 4, 5, 100} {
		for _, k := range []int{2, 4} {
			e := newEngine(t, Options{K: k, Normalized: true, ChunkRows: chunk})
			got, err := e.Search(q, g)
			if err != nil {
				t.Fatal(err)
			}
			wantIdx := []int{0, 3, 5, 9}[:k]
			for i, nb := range got[0] {
				if nb.Index != wantIdx[i] || nb.Dist != 0 {
					t.Errorf("chunk %d, K %d: got %+v, want rows %v at distance 0", chunk, k, got[0], wantIdx)
					break
				}
			}
		}
	}
}

// TestTilingDoesNotChangeResults runs one search under many block sizes and thread counts:
// the lists must be identical, ids and distances to the bit (GEMM kernels differ with the
// block shape, but reported distances are exact).
func TestTilingDoesNotChangeResults(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	const n, d = 333, 20
	v := randomVectors(r, n, d, true, 1)
	// Some duplicates so that ties are present.
	copy(v[10*d:20*d], v[:10*d])
	id := ids("i", n)
	q := Query{IDs: id, Vectors: v, Dim: d}
	g := Gallery{IDs: id, Vectors: v, Dim: d}
	var first [][]Neighbor
	for _, o := range []Options{
		{TileRows: 1000, ChunkRows: 1000, Threads: 1},
		{TileRows: 1, ChunkRows: 3, Threads: 2},
		{TileRows: 17, ChunkRows: 64, Threads: 2},
		{TileRows: 64, ChunkRows: 17, Threads: 3},
	} {
		o.K, o.Normalized, o.ExcludeSelf = 15, true, true
		got, err := newEngine(t, o).Search(q, g)
		if err != nil {
			t.Fatal(err)
		}
		if first == nil {
			first = got
			continue
		}
		for i := range got {
			if !slices.Equal(got[i], first[i]) {
				t.Fatalf("tile %d, chunk %d, threads %d: query %d differs:\n%v\nvs\n%v", o.TileRows, o.ChunkRows, o.Threads, i, got[i], first[i])
			}
		}
	}
}

// TestShardsMerge splits a gallery into shards, searches each and merges: the result must
// equal the search of the whole gallery (ties across shards broken by id).
func TestShardsMerge(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 9))
	const n, d, k = 400, 6, 12
	v := gridVectors(r, n, d, 1) // many exact ties
	id := ids("m", n)
	labels := make([]int64, n)
	seq := make([]string, n)
	for i := range labels {
		labels[i] = int64(i / 4)
		seq[i] = fmt.Sprintf("s%d", i/3)
	}
	g := Gallery{IDs: id, Labels: labels, Sequences: seq, Vectors: v, Dim: d}
	q := Query{IDs: id[:100], Sequences: seq[:100], Vectors: v[:100*d], Dim: d}
	o := Options{K: k, ExcludeSelf: true, ExcludeSameSequence: true}
	e := newEngine(t, o)
	whole, err := e.Search(q, g)
	if err != nil {
		t.Fatal(err)
	}
	full, err := NewIndex(g)
	if err != nil {
		t.Fatal(err)
	}
	bounds := []int{0, 97, 98, 250, n}
	perShard := make([][][]Result, len(bounds)-1)
	for s := range perShard {
		a, b := bounds[s], bounds[s+1]
		ix, err := NewIndex(Gallery{IDs: id[a:b], Labels: labels[a:b], Sequences: seq[a:b], Vectors: v[a*d : b*d], Dim: d})
		if err != nil {
			t.Fatal(err)
		}
		got, err := e.SearchIndex(q, ix)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range got {
			perShard[s] = append(perShard[s], ix.Results(l))
		}
	}
	for i := range q.IDs {
		var lists [][]Result
		for s := range perShard {
			lists = append(lists, perShard[s][i])
		}
		got := Merge(k, lists...)
		want := full.Results(whole[i])
		if !slices.Equal(got, want) {
			t.Fatalf("query %d: merged %v\nwant %v", i, got, want)
		}
		for _, res := range got {
			if res.Label != labels[full.find(res.ID)] {
				t.Fatalf("query %d: result %v has the wrong label", i, res)
			}
		}
	}
}

func TestMerge(t *testing.T) {
	a := []Result{{ID: "b", Dist: 0.1}, {ID: "d", Dist: 0.5}, {ID: "x", Dist: 0.9}}
	b := []Result{{ID: "a", Dist: 0.5}, {ID: "c", Dist: 0.5}, {ID: "b", Dist: 0.2}}
	tests := []struct {
		k    int
		in   [][]Result
		want []string
	}{
		{3, [][]Result{a, b}, []string{"b", "a", "c"}},
		{10, [][]Result{a, b}, []string{"b", "a", "c", "d", "x"}},
		{0, [][]Result{a, b}, []string{"b", "a", "c", "d", "x"}},
		{2, [][]Result{a}, []string{"b", "d"}},
		{2, [][]Result{nil, {}}, []string{}},
		{2, nil, []string{}},
	}
	for _, tc := range tests {
		got := Merge(tc.k, tc.in...)
		names := []string{}
		for _, r := range got {
			names = append(names, r.ID)
		}
		if !slices.Equal(names, tc.want) {
			t.Errorf("Merge(%d, %v) = %v, want %v", tc.k, tc.in, names, tc.want)
		}
	}
	if got := Merge(3, a, b); got[0].Dist != 0.1 {
		t.Errorf("duplicate id kept at %v, want its smallest distance 0.1", got[0].Dist)
	}
}

func TestInvalidInput(t *testing.T) {
	good := []float32{1, 0, 0, 1}
	nan := float32(math.NaN())
	inf := float32(math.Inf(1))
	gallery := Gallery{IDs: []string{"a", "b"}, Vectors: good, Dim: 2}
	query := Query{IDs: []string{"q1", "q2"}, Vectors: good, Dim: 2}
	tests := []struct {
		name string
		o    Options
		q    Query
		g    Gallery
		want []string // substrings of the error
	}{
		{"K zero", Options{K: 0}, query, gallery, []string{"K must be ≥ 1, got 0"}},
		{"K negative and bad threads", Options{K: -1, Threads: -2}, query, gallery, []string{"K must be ≥ 1", "threads must be ≥ 0"}},
		{"bad provider", Options{K: 1, Provider: "tpu"}, query, gallery, []string{`"tpu"`}},
		{"mixed dimensions", Options{K: 1}, Query{IDs: []string{"q"}, Vectors: []float32{1, 2, 3}, Dim: 3}, gallery,
			[]string{"query dimension 3 differs from the gallery's 2"}},
		{"short gallery", Options{K: 1}, query, Gallery{IDs: []string{"a", "b"}, Vectors: good[:3], Dim: 2},
			[]string{"2 ids and 3 floats"}},
		{"short query", Options{K: 1}, Query{IDs: []string{"q1", "q2"}, Vectors: good[:2], Dim: 2}, gallery,
			[]string{"2 ids and 2 floats"}},
		{"zero dimension", Options{K: 1}, query, Gallery{Dim: 0}, []string{"dimension must be ≥ 1"}},
		{"NaN in gallery", Options{K: 1}, query, Gallery{IDs: []string{"a", "b"}, Vectors: []float32{1, 0, nan, 1}, Dim: 2},
			[]string{`gallery row 1 (item "b"): component 0 is NaN`}},
		{"Inf in query", Options{K: 1}, Query{IDs: []string{"q1", "q2"}, Vectors: []float32{1, inf, 0, 1}, Dim: 2}, gallery,
			[]string{`query row 0 (item "q1"): component 1 is +Inf`}},
		{"overflowing norm", Options{K: 1}, Query{IDs: []string{"big"}, Vectors: []float32{3e20, 3e20}, Dim: 2}, gallery,
			[]string{`item "big"`, "overflows float32"}},
		{"zero query, normalized", Options{K: 1, Normalized: true}, Query{IDs: []string{"z"}, Vectors: []float32{0, 0}, Dim: 2}, gallery,
			[]string{`query row 0 (item "z") is the zero vector`}},
		{"zero gallery row, normalized", Options{K: 1, Normalized: true}, query, Gallery{IDs: []string{"a", "b"}, Vectors: []float32{1, 0, 0, 0}, Dim: 2},
			[]string{`gallery row 1 (item "b") is the zero vector`}},
		{"not unit, normalized", Options{K: 1, Normalized: true}, Query{IDs: []string{"long"}, Vectors: []float32{3, 4}, Dim: 2}, gallery,
			[]string{`item "long"`, "norm 5"}},
		{"unsorted ids", Options{K: 1}, query, Gallery{IDs: []string{"b", "a"}, Vectors: good, Dim: 2},
			[]string{`gallery row 1: item id "a" is not greater than the previous row's "b"`}},
		{"duplicate ids", Options{K: 1}, query, Gallery{IDs: []string{"a", "a"}, Vectors: good, Dim: 2},
			[]string{`item id "a" is not greater`}},
		{"empty id", Options{K: 1}, query, Gallery{IDs: []string{"", "a"}, Vectors: good, Dim: 2},
			[]string{"gallery row 0: empty item id"}},
		{"labels and sequences", Options{K: 1}, query, Gallery{IDs: []string{"a", "b"}, Labels: []int64{1}, Sequences: []string{"s"}, Vectors: good, Dim: 2},
			[]string{"2 ids but 1 labels", "2 ids but 1 sequences"}},
		{"query sequences", Options{K: 1}, Query{IDs: []string{"q1", "q2"}, Sequences: []string{"s"}, Vectors: good, Dim: 2}, gallery,
			[]string{"2 ids but 1 sequences"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := NewEngine(tc.o)
			if err == nil {
				defer e.Close()
				_, err = e.Search(tc.q, tc.g)
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// TestManyProblemsAreBounded checks that a gallery full of NaN reports a bounded list.
func TestManyProblemsAreBounded(t *testing.T) {
	n := 50
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(math.NaN())
	}
	_, err := NewIndex(Gallery{IDs: ids("n", n), Vectors: v, Dim: 1})
	if err == nil || !strings.Contains(err.Error(), "… and 40 more") {
		t.Fatalf("got %v, want 10 problems and a count of the rest", err)
	}
}

func TestClosedEngine(t *testing.T) {
	e, err := NewEngine(Options{K: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	_, err = e.Search(Query{IDs: []string{"q"}, Vectors: []float32{1}, Dim: 1}, Gallery{IDs: []string{"g"}, Vectors: []float32{2}, Dim: 1})
	if err == nil || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("search on a closed engine: %v", err)
	}
}

func TestFreeBuffers(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 8))
	const n, d = 300, 24
	g := Gallery{IDs: ids("g", n), Vectors: randomVectors(r, n, d, true, 1), Dim: d}
	q := Query{IDs: ids("q", 40), Vectors: randomVectors(r, 40, d, true, 1), Dim: d}
	e := newEngine(t, Options{K: 7, Normalized: true, Threads: 2, TileRows: 8, ChunkRows: 64})
	ix, err := NewIndex(g)
	if err != nil {
		t.Fatal(err)
	}
	first, err := e.SearchIndex(q, ix)
	if err != nil {
		t.Fatal(err)
	}
	e.FreeBuffers()
	if e.workers != nil {
		t.Fatalf("FreeBuffers kept %d workers' buffers", len(e.workers))
	}
	again, err := e.SearchIndex(q, ix)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(first, again, slices.Equal) {
		t.Fatal("a search after FreeBuffers differs from the one before")
	}
	if _, err := e.SearchSelf(ix); err != nil {
		t.Fatal(err)
	}
	e.FreeBuffers()
	if e.symWorkers != nil || e.shared != nil {
		t.Fatal("FreeBuffers kept SearchSelf's buffers")
	}
}

func TestIndexAccessors(t *testing.T) {
	g := Gallery{IDs: []string{"a", "b", "c", "d"}, Sequences: []string{"x", "", "x", "y"}, Vectors: []float32{1, 2, 3, 4}, Dim: 1}
	ix, err := NewIndex(g)
	if err != nil {
		t.Fatal(err)
	}
	if ix.Len() != 4 || ix.Dim() != 1 || ix.MaxSequenceRows() != 2 {
		t.Errorf("Len %d Dim %d MaxSequenceRows %d, want 4 1 2", ix.Len(), ix.Dim(), ix.MaxSequenceRows())
	}
	if ix.find("c") != 2 || ix.find("zz") != -1 || ix.find("") != -1 {
		t.Error("find")
	}
	e := newEngine(t, Options{K: 2, Threads: 1})
	if o := e.Options(); o.TileRows != DefaultTileRows || o.ChunkRows != DefaultChunkRows || o.Threads != 1 || e.Provider() != "cpu" {
		t.Errorf("defaults: %+v, provider %s", o, e.Provider())
	}
}

// TestSelectorSettlesPerturbedScores feeds the selector inner products perturbed by a
// few ulps, as different GEMM kernels produce (identical gallery rows at different block
// positions were seen to differ by one ulp), in chunks of random order split between two
// merged selectors, on galleries full of exact duplicates and exact distance ties: after
// finish the lists must equal the float64 reference exactly.
func TestSelectorSettlesPerturbedScores(t *testing.T) {
	r := rand.New(rand.NewPCG(12, 13))
	perturb := func(x float32) float32 {
		for range r.IntN(4) {
			if r.IntN(2) == 0 {
				x = math.Nextafter32(x, float32(math.Inf(1)))
			} else {
				x = math.Nextafter32(x, float32(math.Inf(-1)))
			}
		}
		return x
	}
	base := randomVectors(r, 10, 16, true, 1)
	tests := []struct {
		name string
		unit bool
		gv   []float32
		qv   []float32
		d, k int
	}{
		{"unit duplicates, groups of ~20", true, duplicated(r, randomVectors(r, 10, 16, true, 1), 16, 200), randomVectors(r, 20, 16, true, 1), 16, 30},
		{"unit duplicates, queries in the gallery", true, duplicated(r, base, 16, 200), duplicated(r, base, 16, 20), 16, 25},
		{"grid ties", false, gridVectors(r, 300, 3, 2), gridVectors(r, 30, 3, 2), 3, 40},
		{"grid ties, K=1", false, gridVectors(r, 300, 2, 1), gridVectors(r, 30, 2, 1), 2, 1},
	}
	for _, tc := range tests {
		for _, ulps := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s, perturbed %v", tc.name, ulps), func(t *testing.T) {
				ng, nq := len(tc.gv)/tc.d, len(tc.qv)/tc.d
				g := Gallery{IDs: ids("g", ng), Vectors: tc.gv, Dim: tc.d}
				q := Query{IDs: ids("q", nq), Vectors: tc.qv, Dim: tc.d}
				o := Options{K: tc.k, Normalized: tc.unit}
				ix, err := NewIndex(g)
				if err != nil {
					t.Fatal(err)
				}
				want := reference(q, g, o)
				got := make([][]Neighbor, nq)
				for i := range nq {
					qv := tc.qv[i*tc.d : (i+1)*tc.d]
					scores := make([]float32, ng)
					for j := range scores {
						var ip float64
						for c, x := range qv {
							ip += float64(x) * float64(g.Vectors[j*tc.d+c])
						}
						scores[j] = float32(ip)
						if ulps {
							scores[j] = perturb(scores[j])
						}
					}
					// Two selectors see disjoint chunks and are merged, as SearchSelf's workers.
					var s, other selector
					s.reset(tc.k+extraCandidates, -1, -1, sq(qv))
					other.reset(tc.k+extraCandidates, -1, -1, sq(qv))
					// Chunks of random widths, offered in random order.
					var starts []int
					for c0 := 0; c0 < ng; c0 += 1 + r.IntN(40) {
						starts = append(starts, c0)
					}
					for _, k := range r.Perm(len(starts)) {
						c0, c1 := starts[k], ng
						if k+1 < len(starts) {
							c1 = starts[k+1]
						}
						sel := &s
						if r.IntN(8) != 0 { // uneven: s sees few rows, other compacts often
							sel = &other
						}
						if tc.unit {
							sel.scanUnit(scores[c0:c1], int32(c0), ix.seq)
						} else {
							sel.scanGeneral(scores[c0:c1], ix.norm2[c0:c1], int32(c0), ix.seq)
						}
					}
					s.merge(&other)
					got[i] = s.finish(qv, ix, tc.unit, tc.k, nil)
				}
				if swaps := compare(t, got, want, q, g, o, 1e-5, 1e-6); swaps > 0 {
					t.Errorf("%d near-tie swaps; want the reference's ids exactly", swaps)
				}
			})
		}
	}
}

// sq is |v|² in float64.
func sq(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return s
}

// TestSearchSelf checks the symmetric search against the reference, under several
// blockings, thread counts, exclusions and both distance formulas.
func TestSearchSelf(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	const n, d = 450, 12
	unit := randomVectors(r, n, d, true, 1)
	copy(unit[40*d:60*d], unit[:20*d]) // exact duplicates
	general := randomVectors(r, n, d, false, 2)
	grid := gridVectors(r, n, 3, 1)
	id := ids("s", n)
	seq := make([]string, n)
	for i := range seq {
		if i%3 != 0 {
			seq[i] = fmt.Sprintf("q%d", i%37)
		}
	}
	tests := []struct {
		name string
		v    []float32
		d    int
		o    Options
	}{
		{"unit, self excluded", unit, d, Options{K: 30, Normalized: true, ExcludeSelf: true}},
		{"unit, self and sequence, odd blocks", unit, d, Options{K: 17, Normalized: true, ExcludeSelf: true, ExcludeSameSequence: true, TileRows: 13, ChunkRows: 29, Threads: 3}},
		{"unit, self kept, chunk smaller than tile", unit, d, Options{K: 5, Normalized: true, TileRows: 64, ChunkRows: 10, Threads: 2}},
		{"general, sequence", general, d, Options{K: 25, ExcludeSelf: true, ExcludeSameSequence: true, TileRows: 50, ChunkRows: 128}},
		{"grid ties", grid, 3, Options{K: 40, ExcludeSelf: true, TileRows: 31, ChunkRows: 77, Threads: 2}},
		{"K larger than the gallery", unit[:9*d], d, Options{K: 20, Normalized: true, ExcludeSelf: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := len(tc.v) / tc.d
			g := Gallery{IDs: id[:m], Sequences: seq[:m], Vectors: tc.v, Dim: tc.d}
			q := Query{IDs: id[:m], Sequences: seq[:m], Vectors: tc.v, Dim: tc.d}
			ix, err := NewIndex(g)
			if err != nil {
				t.Fatal(err)
			}
			e := newEngine(t, tc.o)
			got, err := e.SearchSelf(ix)
			if err != nil {
				t.Fatal(err)
			}
			if swaps := compare(t, got, reference(q, g, tc.o), q, g, tc.o, 1e-5, 1e-6); swaps > 0 {
				t.Errorf("%d near-tie swaps; want the reference's ids exactly", swaps)
			}
			// Same engine, one-sided search: the same lists.
			one, err := e.SearchIndex(q, ix)
			if err != nil {
				t.Fatal(err)
			}
			for i := range one {
				if !slices.Equal(one[i], got[i]) {
					t.Fatalf("query %d: SearchIndex %v\nSearchSelf %v", i, one[i], got[i])
				}
			}
		})
	}
}

// TestSearchPairShards covers a catalog split into shards the way a transform would:
// SearchSelf per shard plus SearchPair per pair of shards, merged per item, must equal
// SearchSelf on the whole catalog. Sequences span shards.
func TestSearchPairShards(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 32))
	for _, unit := range []bool{true, false} {
		const n, d, k = 300, 8, 15
		v := randomVectors(r, n, d, unit, 1)
		if unit {
			copy(v[100*d:110*d], v[:10*d]) // duplicates across shards
		} else {
			v = gridVectors(r, n, d, 1)
		}
		id := ids("c", n)
		labels := make([]int64, n)
		seq := make([]string, n)
		for i := range seq {
			labels[i] = int64(i % 50)
			seq[i] = fmt.Sprintf("q%d", i%23)
		}
		o := Options{K: k, Normalized: unit, ExcludeSelf: true, ExcludeSameSequence: true, TileRows: 16, ChunkRows: 40}
		e := newEngine(t, o)
		whole, err := NewIndex(Gallery{IDs: id, Labels: labels, Sequences: seq, Vectors: v, Dim: d})
		if err != nil {
			t.Fatal(err)
		}
		want, err := e.SearchSelf(whole)
		if err != nil {
			t.Fatal(err)
		}
		// Three shards by row ranges, so ids stay sorted in each.
		bounds := []int{0, 90, 210, n}
		shards := make([]*Index, 3)
		for s := range shards {
			lo, hi := bounds[s], bounds[s+1]
			shards[s], err = NewIndex(Gallery{IDs: id[lo:hi], Labels: labels[lo:hi], Sequences: seq[lo:hi], Vectors: v[lo*d : hi*d], Dim: d})
			if err != nil {
				t.Fatal(err)
			}
		}
		lists := make([][][]Result, n)
		add := func(ix *Index, res [][]Neighbor, lo int) {
			for i, l := range res {
				lists[lo+i] = append(lists[lo+i], ix.Results(l))
			}
		}
		for s, ix := range shards {
			res, err := e.SearchSelf(ix)
			if err != nil {
				t.Fatal(err)
			}
			add(ix, res, bounds[s])
			for u := s + 1; u < len(shards); u++ {
				aInB, bInA, err := e.SearchPair(ix, shards[u])
				if err != nil {
					t.Fatal(err)
				}
				add(shards[u], aInB, bounds[s])
				add(ix, bInA, bounds[u])
			}
		}
		for i := range n {
			got := Merge(k, lists[i]...)
			if w := whole.Results(want[i]); !slices.Equal(got, w) {
				t.Fatalf("unit %v, item %d: merged shards %v\nwant %v", unit, i, got, w)
			}
		}
	}
}

// TestSearchPairExcludesAcrossShards puts the same item id in both shards: ExcludeSelf
// must drop it from the other shard's list.
func TestSearchPairExcludesAcrossShards(t *testing.T) {
	a, err := NewIndex(Gallery{IDs: []string{"x", "y"}, Sequences: []string{"s", ""}, Vectors: []float32{0, 1}, Dim: 1})
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewIndex(Gallery{IDs: []string{"w", "x", "z"}, Sequences: []string{"s", "", ""}, Vectors: []float32{0.1, 0, 5}, Dim: 1})
	if err != nil {
		t.Fatal(err)
	}
	e := newEngine(t, Options{K: 3, ExcludeSelf: true, ExcludeSameSequence: true})
	aInB, bInA, err := e.SearchPair(a, b)
	if err != nil {
		t.Fatal(err)
	}
	names := func(ix *Index, l []Neighbor) []string {
		var s []string
		for _, r := range ix.Results(l) {
			s = append(s, r.ID)
		}
		return s
	}
	// x (sequence s) against b: x itself and w (sequence s) are excluded.
	if got := names(b, aInB[0]); !slices.Equal(got, []string{"z"}) {
		t.Errorf("x in b: %v, want [z]", got)
	}
	if got := names(b, aInB[1]); !slices.Equal(got, []string{"w", "x", "z"}) {
		t.Errorf("y in b: %v, want [w x z]", got)
	}
	// w (sequence s) against a: x has sequence s.
	if got := names(a, bInA[0]); !slices.Equal(got, []string{"y"}) {
		t.Errorf("w in a: %v, want [y]", got)
	}
	if got := names(a, bInA[1]); !slices.Equal(got, []string{"y"}) {
		t.Errorf("x in a: %v, want [y]", got)
	}
	if _, _, err := e.SearchPair(a, a); err == nil {
		t.Error("SearchPair(a, a) accepted")
	}
}

func TestSelectLargest(t *testing.T) {
	r := rand.New(rand.NewPCG(41, 42))
	for it := range 500 {
		n := 2 + r.IntN(300)
		k := 1 + r.IntN(n-1)
		a := make([]entry, n)
		for i := range a {
			a[i] = entry{v: float32(r.IntN(1 + it%20)), idx: int32(i)} // many ties
		}
		want := slices.Clone(a)
		slices.SortFunc(want, func(x, y entry) int { return cmp.Compare(y.v, x.v) })
		selectLargest(a, k)
		got := slices.Clone(a[:k])
		slices.SortFunc(got, func(x, y entry) int { return cmp.Compare(y.v, x.v) })
		for i := range got {
			if got[i].v != want[i].v {
				t.Fatalf("n %d k %d: kept keys %v, want the %d largest %v", n, k, got, k, want[:k])
			}
		}
		seen := map[int32]bool{}
		for _, e := range a {
			seen[e.idx] = true
		}
		if len(seen) != n {
			t.Fatalf("n %d k %d: entries lost or duplicated", n, k)
		}
	}
}

func TestSymmetricInvalidInput(t *testing.T) {
	unit, err := NewIndex(Gallery{IDs: []string{"a", "b"}, Vectors: []float32{1, 0, 0, 1}, Dim: 2})
	if err != nil {
		t.Fatal(err)
	}
	long, err := NewIndex(Gallery{IDs: []string{"c"}, Vectors: []float32{3, 4}, Dim: 2})
	if err != nil {
		t.Fatal(err)
	}
	d3, err := NewIndex(Gallery{IDs: []string{"d"}, Vectors: []float32{1, 0, 0}, Dim: 3})
	if err != nil {
		t.Fatal(err)
	}
	e := newEngine(t, Options{K: 1, Normalized: true})
	if _, err := e.SearchSelf(long); err == nil || !strings.Contains(err.Error(), `gallery row 0 (item "c") has norm 5`) {
		t.Errorf("SearchSelf of a non-unit index: %v", err)
	}
	if _, _, err := e.SearchPair(unit, long); err == nil || !strings.Contains(err.Error(), `item "c"`) {
		t.Errorf("SearchPair with a non-unit index: %v", err)
	}
	if _, _, err := e.SearchPair(unit, d3); err == nil || !strings.Contains(err.Error(), "dimensions differ: 2 and 3") {
		t.Errorf("SearchPair of dimensions 2 and 3: %v", err)
	}
	if _, err := e.SearchSelf(nil); err == nil {
		t.Error("SearchSelf(nil) accepted")
	}
	if _, err := e.SearchIndex(Query{Dim: 2}, nil); err == nil {
		t.Error("SearchIndex with a nil index accepted")
	}
	empty, err := NewIndex(Gallery{Dim: 2})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := e.SearchSelf(empty); err != nil || len(got) != 0 {
		t.Errorf("SearchSelf of an empty index: %v, %v", got, err)
	}
	aInB, bInA, err := e.SearchPair(unit, empty)
	if err != nil || len(aInB) != 2 || len(aInB[0]) != 0 || len(bInA) != 0 {
		t.Errorf("SearchPair with an empty index: %v %v %v", aInB, bInA, err)
	}
}

// TestProviders checks the execution provider choice against the installed library: the
// CPU build refuses "cuda" with ort.ErrNoCUDA, and "auto" falls back to the CPU. With a
// CUDA build and a GPU, "cuda" must give the same neighbours as the CPU.
func TestProviders(t *testing.T) {
	r := rand.New(rand.NewPCG(51, 52))
	const n, d = 200, 16
	v := randomVectors(r, n, d, true, 1)
	g := Gallery{IDs: ids("p", n), Vectors: v, Dim: d}
	q := Query{IDs: g.IDs, Vectors: v, Dim: d}
	o := Options{K: 10, Normalized: true, ExcludeSelf: true}
	cpu, err := newEngine(t, o).Search(q, g)
	if err != nil {
		t.Fatal(err)
	}
	auto := o
	auto.Provider = ort.ProviderAuto
	ea := newEngine(t, auto)
	t.Logf("auto provider chose %s", ea.Provider())
	got, err := ea.Search(q, g)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(got, cpu, slices.Equal) {
		t.Errorf("provider %s: neighbours differ from the CPU's", ea.Provider())
	}
	cuda := o
	cuda.Provider = ort.ProviderCUDA
	ec, err := NewEngine(cuda)
	if err != nil {
		if !errors.Is(err, ort.ErrNoCUDA) {
			t.Fatalf("provider cuda: %v, want an error wrapping ort.ErrNoCUDA", err)
		}
		t.Logf("no CUDA provider here: %v", err)
		return
	}
	defer ec.Close()
	got, err = ec.Search(q, g)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(got, cpu, slices.Equal) {
		t.Error("provider cuda: neighbours differ from the CPU's")
	}
}
