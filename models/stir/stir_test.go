package stir

import (
	"math"
	"reflect"
	"slices"
	"testing"
)

func TestApply(t *testing.T) {
	for _, c := range []struct {
		name      string
		ids       []string
		dist      []float32
		scores    []float32
		topN      int
		wantIDs   []string
		wantDist  []float32
		wantScore []float32
	}{
		{
			// method.md §4's worked example: no rescale since 0.4 ≤ 0.6.
			name: "worked example", ids: []string{"3", "2", "1", "0", "4"}, dist: []float32{0.1, 0.2, 0.5, 0.6, 0.7},
			scores: []float32{0.4, 0.2, 0.3}, topN: 3,
			wantIDs: []string{"2", "1", "3", "0", "4"}, wantDist: []float32{0.2, 0.3, 0.4, 0.6, 0.7}, wantScore: []float32{0.2, 0.3, 0.4},
		},
		{
			// Head scores above the tail: scaled so the last meets 0.3, minus Eps.
			name: "rescale", ids: []string{"a", "b", "c"}, dist: []float32{0.1, 0.2, 0.3},
			scores: []float32{0.9, 0.6}, topN: 2,
			wantIDs: []string{"b", "a", "c"},
			wantDist: []float32{
				float32(0.6)*(float32(0.3)/float32(0.9)) - Eps,
				float32(0.9)*(float32(0.3)/float32(0.9)) - Eps,
				0.3,
			},
			wantScore: []float32{0.6, 0.9},
		},
		{
			// Fewer candidates than top_n: the whole list is the head, no tail, no rescale.
			name: "shorter than top_n", ids: []string{"x", "y"}, dist: []float32{0.5, 0.7},
			scores: []float32{0.8, 0.1}, topN: 5,
			wantIDs: []string{"y", "x"}, wantDist: []float32{0.1, 0.8}, wantScore: []float32{0.1, 0.8},
		},
		{
			// Ties keep the embedding order (stable sort).
			name: "ties", ids: []string{"p", "q", "r", "s"}, dist: []float32{0.1, 0.2, 0.3, 0.9},
			scores: []float32{0.5, 0.2, 0.5}, topN: 3,
			wantIDs: []string{"q", "p", "r", "s"}, wantDist: []float32{0.2, 0.5, 0.5, 0.9}, wantScore: []float32{0.2, 0.5, 0.5},
		},
		{
			// The last head score equals the first tail distance: not greater, so no rescale.
			name: "boundary equal", ids: []string{"a", "b", "c"}, dist: []float32{0.1, 0.2, 0.4},
			scores: []float32{0.4, 0.3}, topN: 2,
			wantIDs: []string{"b", "a", "c"}, wantDist: []float32{0.3, 0.4, 0.4}, wantScore: []float32{0.3, 0.4},
		},
		{
			name: "empty list", ids: []string{}, dist: []float32{}, scores: []float32{}, topN: 5,
			wantIDs: []string{}, wantDist: []float32{}, wantScore: []float32{},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			labels := make([]int64, len(c.ids))
			for i := range labels {
				labels[i] = int64(i)
			}
			in := List{IDs: c.ids, Labels: labels, Distances: c.dist}
			before := append([]float32(nil), c.dist...)
			got, err := Apply(in, c.scores, c.topN)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.IDs, c.wantIDs) || !reflect.DeepEqual(got.Distances, c.wantDist) || !reflect.DeepEqual(got.Scores, c.wantScore) {
				t.Fatalf("Apply = ids %v dist %v scores %v\nwant ids %v dist %v scores %v", got.IDs, got.Distances, got.Scores, c.wantIDs, c.wantDist, c.wantScore)
			}
			for i := 1; i < len(got.Distances); i++ {
				if got.Distances[i] < got.Distances[i-1] {
					t.Errorf("distances not sorted: %v", got.Distances)
				}
			}
			// Labels travel with their ids.
			for i, id := range got.IDs {
				for j, orig := range c.ids {
					if orig == id && got.Labels[i] != labels[j] {
						t.Errorf("label of %s = %d, want %d", id, got.Labels[i], labels[j])
					}
				}
			}
			if !slices.Equal(in.Distances, before) {
				t.Error("Apply modified its input")
			}
		})
	}
}

func TestApplyErrors(t *testing.T) {
	l := List{IDs: []string{"a", "b"}, Distances: []float32{0.1, 0.2}}
	for _, c := range []struct {
		name   string
		scores []float32
		topN   int
	}{
		{"top_n 0", []float32{0.1}, 0},
		{"too few scores", []float32{0.1}, 2},
		{"NaN score", []float32{0.1, float32(math.NaN())}, 2},
	} {
		if _, err := Apply(l, c.scores, c.topN); err == nil {
			t.Errorf("%s: no error", c.name)
		}
	}
}
