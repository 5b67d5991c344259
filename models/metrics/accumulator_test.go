package metrics

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

func TestSum(t *testing.T) {
	tests := []struct {
		name   string
		values []float64
		want   Sum
	}{
		{"empty", nil, Sum{}},
		{"ones", []float64{1, 1, 1}, Sum{Units: 3}},
		{"halves carry", []float64{0.5, 0.5, 0.5}, Sum{Units: 1, Frac: 1 << 63}},
		{"three quarters", []float64{0.75, 0.75}, Sum{Units: 1, Frac: 1 << 63}},
		{"just below one carries", []float64{1 - 0x1p-53, 1 - 0x1p-53}, Sum{Units: 1, Frac: 1<<64 - 1<<12}},
		{"zero, NaN and negatives add nothing", []float64{0, math.NaN(), -0.5}, Sum{}},
		{"above one clamps", []float64{1.5}, Sum{Units: 1}},
		{"below 2^-64 truncates", []float64{0x1p-70, 0x1p-64}, Sum{Frac: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s Sum
			for _, v := range tt.values {
				s.Add(v)
			}
			if s != tt.want {
				t.Fatalf("sum = %+v, want %+v", s, tt.want)
			}
		})
	}
	var s Sum
	for i := 0; i < 10; i++ {
		s.Add(0.1)
	}
	if math.Abs(s.Float64()-1) > 1e-15 {
		t.Errorf("ten times 0.1 = %v", s.Float64())
	}
}

// randomQueries returns queries of every edge case: lists of 0..14 items, n from 0 up,
// four categories and some uncategorised queries.
func randomQueries(seed uint64, count int) []Query {
	rng := rand.New(rand.NewPCG(seed, 1))
	cats := []string{"bike", "chair", "lamp", "mug", ""}
	qs := make([]Query, count)
	for i := range qs {
		l := rng.IntN(15)
		relevant := make([]bool, l)
		hits := 0
		for j := range relevant {
			relevant[j] = rng.IntN(3) == 0
			if relevant[j] {
				hits++
			}
		}
		n := hits + rng.IntN(4)
		if hits == 0 && rng.IntN(4) == 0 {
			n = 0
		}
		qs[i] = Query{ID: "q", Label: int64(i), Category: cats[rng.IntN(len(cats))], Relevant: relevant, NRelevant: n}
	}
	return qs
}

var testKs = Options{CMC: []int{1, 5, 10}, Precision: []int{1, 5, 10}, MAP: []int{5, 10, 20}}

func TestAccumulatorMergeOrder(t *testing.T) {
	qs := randomQueries(1, 3000)
	whole, err := NewAccumulator(testKs)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range qs {
		if err := whole.Add(q); err != nil {
			t.Fatal(err)
		}
	}
	want := whole.Report()

	rng := rand.New(rand.NewPCG(2, 2))
	for trial := 0; trial < 5; trial++ {
		// Random partition into shards, queries shuffled inside them, shards merged in a
		// random order, half of them through a JSON round trip (as a runner would encode).
		perm := rng.Perm(len(qs))
		nShards := 2 + rng.IntN(30)
		shards := make([]*Accumulator, nShards)
		for i := range shards {
			shards[i], _ = NewAccumulator(testKs)
		}
		for _, p := range perm {
			if err := shards[rng.IntN(nShards)].Add(qs[p]); err != nil {
				t.Fatal(err)
			}
		}
		for i, s := range shards {
			if i%2 == 0 {
				shards[i] = roundTrip(t, s)
			}
		}
		rng.Shuffle(len(shards), func(i, j int) { shards[i], shards[j] = shards[j], shards[i] })
		// Merge as a tree of random shape.
		for len(shards) > 1 {
			i := rng.IntN(len(shards) - 1)
			if err := shards[i].Merge(shards[i+1]); err != nil {
				t.Fatal(err)
			}
			shards = append(shards[:i+1], shards[i+2:]...)
		}
		if got := shards[0].Report(); !reflect.DeepEqual(got, want) {
			t.Fatalf("trial %d: merged report differs from the sequential one:\n got %+v\nwant %+v", trial, got, want)
		}
	}

	// The exact sums agree with a plain float64 mean of the per-query values.
	results, report, err := Compute(qs, testKs)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(report, want) {
		t.Fatal("Compute's report differs from the accumulator's")
	}
	checkNaiveMeans(t, results, report)
}

// checkNaiveMeans recomputes every mean from per-query values with float64 sums.
func checkNaiveMeans(t *testing.T, results []QueryResult, r Report) {
	t.Helper()
	type acc struct {
		sum map[string]float64
		n   map[string]int
	}
	sums := map[string]*acc{}
	add := func(scope, key string, v float64) {
		a := sums[scope]
		if a == nil {
			a = &acc{sum: map[string]float64{}, n: map[string]int{}}
			sums[scope] = a
		}
		if !math.IsNaN(v) {
			a.sum[key] += v
			a.n[key]++
		}
	}
	for _, res := range results {
		scopes := []string{""}
		if res.Category != "" {
			scopes = append(scopes, "cat:"+res.Category)
		}
		for _, scope := range scopes {
			for i, k := range r.KS.CMC {
				add(scope, Key(MetricCMC, k), res.CMC[i])
			}
			for i, k := range r.KS.Precision {
				add(scope, Key(MetricPrecision, k), res.Precision[i])
			}
			for i, k := range r.KS.MAP {
				add(scope, Key(MetricMAP, k), res.MAP[i])
			}
		}
	}
	for scope, a := range sums {
		s := r.Overall
		if scope != "" {
			s = r.Categories[strings.TrimPrefix(scope, "cat:")]
		}
		for key, sum := range a.sum {
			want := sum / float64(a.n[key])
			if got, ok := s.Metrics[key]; !ok || math.Abs(got-want) > 1e-12 {
				t.Errorf("scope %q %s = %v (defined %v), naive mean %v", scope, key, got, ok, want)
			}
		}
	}
}

func roundTrip(t *testing.T, a *Accumulator) *Accumulator {
	t.Helper()
	b, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	var out Accumulator
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&out, a) {
		t.Fatalf("JSON round trip changed the accumulator:\n%s", b)
	}
	return &out
}

func TestAccumulatorCountsAndCategories(t *testing.T) {
	o := Options{CMC: []int{1, 3}, Precision: []int{3}, MAP: []int{3}}
	qs := []Query{
		{ID: "a1", Category: "a", Relevant: rel(1, 0, 0), NRelevant: 1},   // regular
		{ID: "a2", Category: "a", Relevant: rel(0, 1), NRelevant: 2},      // short
		{ID: "a3", Category: "a", Relevant: nil, NRelevant: 2},            // empty, n>0, short
		{ID: "b1", Category: "b", Relevant: rel(0, 0, 0), NRelevant: 0},   // n=0: precision undefined
		{ID: "b2", Category: "b", Relevant: nil, NRelevant: 0},            // empty, n=0: all 1, short
		{ID: "u1", Category: "", Relevant: rel(0, 0, 1, 1), NRelevant: 2}, // OVERALL only
	}
	_, r, err := Compute(qs, o)
	if err != nil {
		t.Fatal(err)
	}
	wantCounts := map[string]Counts{
		"":  {Queries: 6, EmptyList: 2, NoRelevant: 2, EmptyNoRelevant: 1, UndefinedPrecision: 1, ShortList: 3},
		"a": {Queries: 3, EmptyList: 1, ShortList: 2},
		"b": {Queries: 2, EmptyList: 1, NoRelevant: 2, EmptyNoRelevant: 1, UndefinedPrecision: 1, ShortList: 1},
	}
	// Per-query values, by hand (cmc@1, cmc@3, precision@3, map@3):
	// a1 1 1 1 1 | a2 0 1 1/2 1/2 | a3 0 0 0 0 | b1 0 0 - 0 | b2 1 1 1 1 | u1 0 1 1/2 1/3
	wantMeans := map[string]map[string]float64{
		"":  {"cmc@1": 2.0 / 6, "cmc@3": 4.0 / 6, "precision@3": (1 + 0.5 + 0 + 1 + 0.5) / 5, "map@3": (1 + 0.5 + 0 + 0 + 1 + 1.0/3) / 6},
		"a": {"cmc@1": 1.0 / 3, "cmc@3": 2.0 / 3, "precision@3": 1.5 / 3, "map@3": 1.5 / 3},
		"b": {"cmc@1": 1.0 / 2, "cmc@3": 1.0 / 2, "precision@3": 1, "map@3": 1.0 / 2},
	}
	if len(r.Categories) != 2 {
		t.Fatalf("categories %v, want a and b", r.CategoryNames())
	}
	for name, wc := range wantCounts {
		s := r.Overall
		if name != "" {
			s = r.Categories[name]
		}
		if s.Counts != wc {
			t.Errorf("scope %q counts = %+v, want %+v", name, s.Counts, wc)
		}
		if len(s.Metrics) != len(wantMeans[name]) {
			t.Errorf("scope %q metrics = %v", name, s.Metrics)
		}
		for key, w := range wantMeans[name] {
			if got := s.Metrics[key]; math.Abs(got-w) > 1e-15 {
				t.Errorf("scope %q %s = %v, want %v", name, key, got, w)
			}
		}
	}

	// A scope whose every query has n = 0 and a non-empty list has no precision mean.
	_, r, err = Compute([]Query{{ID: "x", Category: "z", Relevant: rel(0), NRelevant: 0}}, o)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := r.Categories["z"].Mean(MetricPrecision, 3); ok {
		t.Error("precision mean defined over zero queries")
	}
	if v, ok := r.Categories["z"].Mean(MetricCMC, 1); !ok || v != 0 {
		t.Errorf("cmc@1 = %v, %v; want 0, true", v, ok)
	}
}

func TestAccumulatorMergeErrors(t *testing.T) {
	a, _ := NewAccumulator(Options{CMC: []int{1}})
	b, _ := NewAccumulator(Options{CMC: []int{1, 5}})
	if err := a.Merge(b); err == nil || !strings.Contains(err.Error(), "different cutoffs") {
		t.Errorf("merge of different cutoffs: %v", err)
	}
	broken := &Accumulator{KS: Options{CMC: []int{1}}}
	if err := a.Merge(broken); err == nil || !strings.Contains(err.Error(), "NewAccumulator") {
		t.Errorf("merge of an accumulator without sums: %v", err)
	}
	if err := broken.Add(Query{ID: "q", NRelevant: 1}); err == nil || !strings.Contains(err.Error(), "NewAccumulator") {
		t.Errorf("add to an accumulator without sums: %v", err)
	}
}

// BenchmarkAccumulatorAdd measures one query of 100 retrieved items at typical cutoffs.
func BenchmarkAccumulatorAdd(b *testing.B) {
	qs := make([]Query, 64)
	rng := rand.New(rand.NewPCG(3, 3))
	for i := range qs {
		r := make([]bool, 100)
		h := 0
		for j := range r {
			if rng.IntN(10) == 0 {
				r[j] = true
				h++
			}
		}
		qs[i] = Query{Category: []string{"a", "b", "c"}[i%3], Relevant: r, NRelevant: h + 2}
	}
	acc, _ := NewAccumulator(Options{CMC: []int{1, 5, 10, 100}, Precision: []int{1, 5, 10, 100}, MAP: []int{5, 10, 100}})
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if err := acc.Add(qs[i%len(qs)]); err != nil {
			b.Fatal(err)
		}
	}
}
