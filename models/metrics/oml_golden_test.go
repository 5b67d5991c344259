package metrics

// Golden values from OML's own code: testdata/oml_golden.json was written by
// testdata/make_oml_golden.py, which runs OML's unmodified oml/functional/metrics.py and
// oml/functional/knn.py (commit in the file) under Debian's torch 1.13. See
// models/recipe/oml_metrics_golden.md for the exact command.

import (
	"encoding/json"
	"math"
	"os"
	"reflect"
	"sort"
	"strconv"
	"testing"
)

// omlValues maps k to OML's per-query float32 values (null = NaN).
type omlValues map[string][]*float64

type omlGolden struct {
	OMLCommit    string  `json:"oml_commit"`
	FunctionalKs Options `json:"functional_ks"`
	Functional   []struct {
		Name      string    `json:"name"`
		GtTops    [][]int   `json:"gt_tops"`
		NGts      []int     `json:"n_gts"`
		CMC       omlValues `json:"cmc"`
		Precision omlValues `json:"precision"`
		MAP       omlValues `json:"map"`
	} `json:"functional"`
	RetrievalKs Options        `json:"retrieval_ks"`
	Retrieval   []omlRetrieval `json:"retrieval"`
}

type omlRetrieval struct {
	Name   string `json:"name"`
	Mode   string `json:"mode"` // batched_knn (query/gallery overlap) or batched_knn_qg
	Inputs struct {
		TopN              int         `json:"top_n"`
		Embeddings        [][]float64 `json:"embeddings"`
		Labels            []int64     `json:"labels"`
		Sequence          []int64     `json:"sequence"`
		IDsQuery          []int       `json:"ids_query"`
		IDsGallery        []int       `json:"ids_gallery"`
		EmbeddingsQuery   [][]float64 `json:"embeddings_query"`
		EmbeddingsGallery [][]float64 `json:"embeddings_gallery"`
		LabelsQuery       []int64     `json:"labels_query"`
		LabelsGallery     []int64     `json:"labels_gallery"`
		SequenceQuery     []int64     `json:"sequence_query"`
		SequenceGallery   []int64     `json:"sequence_gallery"`
	} `json:"inputs"`
	QueryCategories []string `json:"query_categories"`
	RetrievedIDs    [][]int  `json:"retrieved_ids"`
	GtTops          [][]int  `json:"gt_tops"`
	NGts            []int    `json:"n_gts"`
	// PerQuery maps metric → k → per-query values (reduce=False, OVERALL).
	PerQuery map[string]omlValues `json:"per_query"`
	// Reduced maps scope ("OVERALL" or a category) → metric → k → OML's mean (null = NaN).
	Reduced map[string]map[string]map[string]*float64 `json:"reduced"`
	// Nanmean is numpy.nanmean of OML's per-query values (not an OML output).
	Nanmean map[string]map[string]map[string]*float64 `json:"nanmean"`
}

// omlTol covers OML's float32 per-query values and float32 means.
const omlTol = 1e-6

func loadGolden(t *testing.T) omlGolden {
	t.Helper()
	b, err := os.ReadFile("testdata/oml_golden.json")
	if err != nil {
		t.Fatal(err)
	}
	var g omlGolden
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatalf("testdata/oml_golden.json: %v", err)
	}
	if g.OMLCommit == "" || len(g.Functional) == 0 || len(g.Retrieval) == 0 {
		t.Fatal("testdata/oml_golden.json: incomplete")
	}
	return g
}

func toRel(bits []int) []bool {
	out := make([]bool, len(bits))
	for i, b := range bits {
		out[i] = b != 0
	}
	return out
}

func f(p *float64) float64 {
	if p == nil {
		return math.NaN()
	}
	return *p
}

// comparePerQuery checks our values of query i against OML's for every k of metric m.
func comparePerQuery(t *testing.T, where string, m Metric, ks []int, ours []float64, oml omlValues, i int) {
	t.Helper()
	for j, k := range ks {
		want, ok := oml[strconv.Itoa(k)]
		if !ok || i >= len(want) {
			t.Fatalf("%s: golden lacks %s for query %d", where, Key(m, k), i)
		}
		if !near(ours[j], f(want[i]), omlTol) {
			t.Errorf("%s: query %d %s = %v, OML %v", where, i, Key(m, k), ours[j], f(want[i]))
		}
	}
}

func TestOMLGoldenFunctional(t *testing.T) {
	g := loadGolden(t)
	o := g.FunctionalKs
	for _, c := range g.Functional {
		t.Run(c.Name, func(t *testing.T) {
			for i, tops := range c.GtTops {
				r, err := o.Evaluate(Query{ID: strconv.Itoa(i), Relevant: toRel(tops), NRelevant: c.NGts[i]})
				if err != nil {
					t.Fatal(err)
				}
				comparePerQuery(t, c.Name, MetricCMC, o.CMC, r.CMC, c.CMC, i)
				comparePerQuery(t, c.Name, MetricPrecision, o.Precision, r.Precision, c.Precision, i)
				comparePerQuery(t, c.Name, MetricMAP, o.MAP, r.MAP, c.MAP, i)
			}
		})
	}
}

// knn ranks a gallery for one query as method.md §3 says: Euclidean distance, ascending,
// gallery rows excluded when excluded(j); keeps at most topN of the gallery size.
func knn(q []float64, gallery [][]float64, topN int, excluded func(j int) bool) []int {
	type cand struct {
		j int
		d float64
	}
	var cs []cand
	for j, gv := range gallery {
		if excluded(j) {
			continue
		}
		s := 0.0
		for i := range q {
			s += (q[i] - gv[i]) * (q[i] - gv[i])
		}
		cs = append(cs, cand{j, math.Sqrt(s)})
	}
	sort.SliceStable(cs, func(a, b int) bool { return cs[a].d < cs[b].d })
	n := min(topN, len(gallery), len(cs))
	ids := make([]int, n)
	for i := range ids {
		ids[i] = cs[i].j
	}
	return ids
}

// queriesFromInputs rebuilds each query's relevance and n from the raw catalog data.
func queriesFromInputs(c omlRetrieval) ([]Query, [][]int) {
	in := c.Inputs
	var qs []Query
	var retrieved [][]int
	add := func(qi int, qv []float64, gallery [][]float64, excluded func(int) bool, same func(int) bool) {
		ids := knn(qv, gallery, in.TopN, excluded)
		rel := make([]bool, len(ids))
		for i, j := range ids {
			rel[i] = same(j)
		}
		n := 0
		for j := range gallery {
			if !excluded(j) && same(j) {
				n++
			}
		}
		retrieved = append(retrieved, ids)
		qs = append(qs, Query{ID: strconv.Itoa(qi), Category: c.QueryCategories[qi], Relevant: rel, NRelevant: n})
	}
	switch c.Mode {
	case "batched_knn":
		gallery := make([][]float64, len(in.IDsGallery))
		for j, row := range in.IDsGallery {
			gallery[j] = in.Embeddings[row]
		}
		for qi, qrow := range in.IDsQuery {
			add(qi, in.Embeddings[qrow], gallery,
				func(j int) bool { // same row, or same sequence
					grow := in.IDsGallery[j]
					return grow == qrow || in.Sequence[grow] == in.Sequence[qrow]
				},
				func(j int) bool { return in.Labels[in.IDsGallery[j]] == in.Labels[qrow] })
		}
	case "batched_knn_qg":
		for qi, qv := range in.EmbeddingsQuery {
			add(qi, qv, in.EmbeddingsGallery,
				func(j int) bool { return in.SequenceGallery[j] == in.SequenceQuery[qi] },
				func(j int) bool { return in.LabelsGallery[j] == in.LabelsQuery[qi] })
		}
	}
	return qs, retrieved
}

func TestOMLGoldenRetrieval(t *testing.T) {
	g := loadGolden(t)
	o := g.RetrievalKs
	for _, c := range g.Retrieval {
		t.Run(c.Name, func(t *testing.T) {
			qs, retrieved := queriesFromInputs(c)
			if len(qs) != len(c.GtTops) {
				t.Fatalf("%d queries, OML %d", len(qs), len(c.GtTops))
			}
			// Our reading of §3 (exclusions, n over the whole gallery) reproduces OML's
			// retrieval, relevance and n_gt.
			for i, q := range qs {
				if !reflect.DeepEqual(retrieved[i], c.RetrievedIDs[i]) && !(len(retrieved[i]) == 0 && len(c.RetrievedIDs[i]) == 0) {
					t.Errorf("query %d: retrieved %v, OML %v", i, retrieved[i], c.RetrievedIDs[i])
				}
				if !reflect.DeepEqual(q.Relevant, toRel(c.GtTops[i])) || q.NRelevant != c.NGts[i] {
					t.Errorf("query %d: relevant %v n %d, OML gt_tops %v n_gt %d", i, q.Relevant, q.NRelevant, c.GtTops[i], c.NGts[i])
				}
			}

			results, r, err := Compute(qs, o)
			if err != nil {
				t.Fatal(err)
			}
			undefined := 0
			for i, res := range results {
				comparePerQuery(t, c.Name, MetricCMC, o.CMC, res.CMC, c.PerQuery["cmc"], i)
				comparePerQuery(t, c.Name, MetricPrecision, o.Precision, res.Precision, c.PerQuery["precision"], i)
				comparePerQuery(t, c.Name, MetricMAP, o.MAP, res.MAP, c.PerQuery["map"], i)
				if res.Case == CaseNoRelevant {
					undefined++
				}
			}
			if r.Overall.Counts.UndefinedPrecision != int64(undefined) || undefined == 0 {
				t.Errorf("UndefinedPrecision = %d, queries with NaN precision %d (the golden cases must have some)",
					r.Overall.Counts.UndefinedPrecision, undefined)
			}

			// Means: equal to OML's where OML's are defined; where OML's precision mean is
			// NaN, ours is the mean over the queries with a defined precision.
			if len(c.Reduced) != 1+len(r.Categories) {
				t.Errorf("OML scopes %d, ours 1 + %v", len(c.Reduced), r.CategoryNames())
			}
			nanScopes := 0
			for scope, byMetric := range c.Reduced {
				s, ok := r.Overall, true
				if scope != "OVERALL" {
					s, ok = r.Categories[scope]
				}
				if !ok {
					t.Errorf("no category %q", scope)
					continue
				}
				for _, m := range Metrics {
					for _, k := range o.Ks(m) {
						want := byMetric[string(m)][strconv.Itoa(k)]
						got, defined := s.Mean(m, k)
						if want == nil {
							nanScopes++
							want = c.Nanmean[scope][string(m)][strconv.Itoa(k)]
							if m != MetricPrecision || s.Counts.UndefinedPrecision == 0 {
								t.Errorf("%s %s: OML NaN but %d undefined precisions", scope, Key(m, k), s.Counts.UndefinedPrecision)
							}
						}
						if !defined || !near(got, f(want), omlTol) {
							t.Errorf("%s %s = %v (defined %v), OML %v", scope, Key(m, k), got, defined, f(want))
						}
					}
				}
			}
			if nanScopes == 0 {
				t.Error("no scope with OML NaN precision: the golden no longer covers that case")
			}
		})
	}
}
