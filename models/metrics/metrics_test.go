package metrics

import (
	"math"
	"strings"
	"testing"
)

// rel builds a relevance list from 0/1 digits.
func rel(bits ...int) []bool {
	out := make([]bool, len(bits))
	for i, b := range bits {
		out[i] = b == 1
	}
	return out
}

var nan = math.NaN()

func TestEvaluateHandComputed(t *testing.T) {
	ks := Options{CMC: []int{1, 2, 3, 5, 10}, Precision: []int{1, 2, 3, 5, 10}, MAP: []int{1, 2, 3, 5, 10}}
	tests := []struct {
		name           string
		relevant       []bool
		n              int
		want           Case
		cmc, prec, mAP []float64 // at k = 1, 2, 3, 5, 10
	}{
		{
			// method.md §5: map@5 = (1/2 + 2/4)/2.
			name: "method worked example", relevant: rel(0, 1, 0, 1, 0), n: 2, want: CaseRegular,
			cmc:  []float64{0, 1, 1, 1, 1},
			prec: []float64{0, 1.0 / 2, 1.0 / 2, 2.0 / 2, 2.0 / 2},
			mAP:  []float64{0, 0.5 / 1, 0.5 / 1, (0.5 + 0.5) / 2, (0.5 + 0.5) / 2},
		},
		{
			// Hits at ranks 1 and 3; k = 10 > L = 5 uses k' = 5; precision divides by min(n, k').
			name: "hits at 1 and 3, n=3", relevant: rel(1, 0, 1, 0, 0), n: 3, want: CaseRegular,
			cmc:  []float64{1, 1, 1, 1, 1},
			prec: []float64{1, 1.0 / 2, 2.0 / 3, 2.0 / 3, 2.0 / 3},
			mAP:  []float64{1, 1, (1 + 2.0/3) / 2, (1 + 2.0/3) / 2, (1 + 2.0/3) / 2},
		},
		{
			name: "single hit at 3 of a 3-list", relevant: rel(0, 0, 1), n: 1, want: CaseRegular,
			cmc:  []float64{0, 0, 1, 1, 1},
			prec: []float64{0, 0, 1, 1, 1},
			mAP:  []float64{0, 0, 1.0 / 3, 1.0 / 3, 1.0 / 3},
		},
		{
			// OML's precision does not penalise a list shorter than k when all of it is relevant.
			name: "all relevant, short list, n=10", relevant: rel(1, 1, 1, 1), n: 10, want: CaseRegular,
			cmc:  []float64{1, 1, 1, 1, 1},
			prec: []float64{1, 1, 1, 1, 1},
			mAP:  []float64{1, 1, 1, 1, 1},
		},
		{
			name: "hit at 10", relevant: rel(0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1), n: 5, want: CaseRegular,
			cmc:  []float64{0, 0, 0, 0, 1},
			prec: []float64{0, 0, 0, 0, 1.0 / 5},
			mAP:  []float64{0, 0, 0, 0, 1.0 / 10},
		},
		{
			name: "no hit at all, n>0", relevant: rel(0, 0, 0, 0, 0, 0), n: 4, want: CaseRegular,
			cmc:  []float64{0, 0, 0, 0, 0},
			prec: []float64{0, 0, 0, 0, 0},
			mAP:  []float64{0, 0, 0, 0, 0},
		},
		// The edge cases of method.md §5.
		{
			name: "empty list, n=0: every metric 1", relevant: nil, n: 0, want: CaseEmptyNoRelevant,
			cmc: []float64{1, 1, 1, 1, 1}, prec: []float64{1, 1, 1, 1, 1}, mAP: []float64{1, 1, 1, 1, 1},
		},
		{
			name: "empty list, n>0: every metric 0", relevant: []bool{}, n: 3, want: CaseEmptyWithRelevant,
			cmc: []float64{0, 0, 0, 0, 0}, prec: []float64{0, 0, 0, 0, 0}, mAP: []float64{0, 0, 0, 0, 0},
		},
		{
			name: "non-empty list, n=0: precision undefined", relevant: rel(0, 0, 0), n: 0, want: CaseNoRelevant,
			cmc: []float64{0, 0, 0, 0, 0}, prec: []float64{nan, nan, nan, nan, nan}, mAP: []float64{0, 0, 0, 0, 0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ks.Evaluate(Query{ID: "q", Label: 7, Category: "c", Relevant: tt.relevant, NRelevant: tt.n})
			if err != nil {
				t.Fatal(err)
			}
			if r.Case != tt.want {
				t.Errorf("case = %v, want %v", r.Case, tt.want)
			}
			if r.Retrieved != len(tt.relevant) || r.NRelevant != tt.n || r.ID != "q" || r.Label != 7 || r.Category != "c" {
				t.Errorf("identity fields = %+v", r)
			}
			checkValues(t, "cmc", ks.CMC, r.CMC, tt.cmc)
			checkValues(t, "precision", ks.Precision, r.Precision, tt.prec)
			checkValues(t, "map", ks.MAP, r.MAP, tt.mAP)
		})
	}
}

func checkValues(t *testing.T, metric string, ks []int, got, want []float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", metric, len(got), len(want))
	}
	for i := range want {
		if !near(got[i], want[i], 1e-15) {
			t.Errorf("%s@%d = %v, want %v", metric, ks[i], got[i], want[i])
		}
	}
}

// near compares with an absolute tolerance; NaN equals only NaN.
func near(a, b, tol float64) bool {
	if math.IsNaN(a) || math.IsNaN(b) {
		return math.IsNaN(a) && math.IsNaN(b)
	}
	return math.Abs(a-b) <= tol
}

func TestEvaluateCutoffSubsets(t *testing.T) {
	// Each metric walks its own cutoffs: a metric with fewer ks, or none, is unaffected by
	// the others.
	q := Query{ID: "q", Relevant: rel(0, 1, 0, 1, 0), NRelevant: 2}
	r, err := Options{MAP: []int{5}}.Evaluate(q)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.CMC) != 0 || len(r.Precision) != 0 || len(r.MAP) != 1 || r.MAP[0] != 0.5 {
		t.Fatalf("got %+v, want only map@5 = 0.5", r)
	}
	r, err = Options{CMC: []int{1, 100}, Precision: []int{3}, MAP: []int{2, 4}}.Evaluate(q)
	if err != nil {
		t.Fatal(err)
	}
	checkValues(t, "cmc", []int{1, 100}, r.CMC, []float64{0, 1})
	checkValues(t, "precision", []int{3}, r.Precision, []float64{0.5})
	checkValues(t, "map", []int{2, 4}, r.MAP, []float64{0.5, 0.5})
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		want []string // substrings of the error; none means valid
	}{
		{"valid", Options{CMC: []int{1, 5}, Precision: []int{5}, MAP: []int{5, 100}}, nil},
		{"one metric only", Options{MAP: []int{1}}, nil},
		{"no cutoffs", Options{}, []string{"no cutoffs"}},
		{"zero and negative", Options{CMC: []int{0}, MAP: []int{-3}}, []string{"cmc cutoff 0", "map cutoff -3"}},
		{"not increasing", Options{Precision: []int{5, 1}}, []string{"precision cutoffs [5 1]: want strictly increasing"}},
		{"duplicate", Options{CMC: []int{1, 1}}, []string{"strictly increasing"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.o.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if _, err := tt.o.Evaluate(Query{}); err == nil {
				t.Error("Evaluate accepted invalid options")
			}
			if _, err := NewAccumulator(tt.o); err == nil {
				t.Error("NewAccumulator accepted invalid options")
			}
		})
	}
}

func TestQueryValidation(t *testing.T) {
	o := Options{CMC: []int{1}}
	tests := []struct {
		name string
		q    Query
		want string
	}{
		{"negative n", Query{ID: "a", NRelevant: -1}, `query "a": NRelevant = -1`},
		{"more hits than n", Query{ID: "b", Relevant: rel(1, 0, 1), NRelevant: 1}, `query "b": 2 relevant items among the 3 retrieved but NRelevant = 1`},
		{"hits with n=0", Query{ID: "c", Relevant: rel(0, 1), NRelevant: 0}, `query "c": 1 relevant items`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := o.Evaluate(tt.q)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Evaluate error = %v, want it to contain %q", err, tt.want)
			}
			acc, _ := NewAccumulator(o)
			if err := acc.Add(tt.q); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Add error = %v, want it to contain %q", err, tt.want)
			}
			if acc.Overall.Counts.Queries != 0 {
				t.Error("a rejected query was counted")
			}
		})
	}
}

func TestCaseString(t *testing.T) {
	for c, want := range map[Case]string{
		CaseRegular: "regular", CaseEmptyNoRelevant: "empty_no_relevant",
		CaseEmptyWithRelevant: "empty_with_relevant", CaseNoRelevant: "no_relevant", Case(9): "Case(9)",
	} {
		if got := c.String(); got != want {
			t.Errorf("Case(%d).String() = %q, want %q", uint8(c), got, want)
		}
	}
}
