package pipelines

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/stirpipe/stirpipe/models/metrics"
	"github.com/stirpipe/stirpipe/schemas/blob"
	"github.com/stirpipe/stirpipe/schemas/lists"
	"github.com/stirpipe/stirpipe/transforms/evaluate"
)

// writeLists writes a neighbours output whose lists hit at the given positions.
func writeLists(t *testing.T, dir string, hits [][]bool, prov lists.Provenance) []lists.Record {
	t.Helper()
	var recs []lists.Record
	for q, h := range hits {
		r := lists.Record{QueryID: fmt.Sprintf("q%03d", q), QueryLabel: int64(q), QueryCategory: []string{"a", "b"}[q%2], NRelevant: int64(q % 4)}
		var nrel int64
		for i, hit := range h {
			label := int64(1000 + i)
			if hit {
				label = int64(q)
				nrel++
			}
			r.NeighborIDs = append(r.NeighborIDs, fmt.Sprintf("g%03d-%d", q, i))
			r.NeighborLabels = append(r.NeighborLabels, label)
			r.Distances = append(r.Distances, float32(i)/10)
		}
		r.NRelevant = max(r.NRelevant, nrel)
		recs = append(recs, r)
	}
	info, err := lists.WriteShard(context.Background(), filepath.Join(dir, lists.ShardName(0, 1, lists.ExtParquet)), recs, prov)
	if err != nil {
		t.Fatal(err)
	}
	if err := lists.WriteManifest(context.Background(), dir, lists.NewManifest(prov, []lists.ShardInfo{info})); err != nil {
		t.Fatal(err)
	}
	return recs
}

// TestEvaluatePipeline: the pipeline's metrics.json equals metrics.Compute on the same lists,
// and a comparison holds before, after and their difference.
func TestEvaluatePipeline(t *testing.T) {
	ctx := context.Background()
	prov := lists.Provenance{Stage: lists.StageNeighbors, ModelName: "m", ModelSHA256: "ab", K: 5, Distance: "euclidean", Engine: "test", Exclusions: "self,sequence"}
	var beforeHits, afterHits [][]bool
	for q := range 40 {
		b := make([]bool, 5)
		a := make([]bool, 5)
		for i := range b {
			b[i] = (q*7+i*3)%5 == 0
		}
		copy(a, b)
		if q%3 == 0 { // reranking brings a hit to the front
			a[0] = true
		}
		if q == 7 {
			b, a = nil, nil // an empty list
		}
		beforeHits, afterHits = append(beforeHits, b), append(afterHits, a)
	}
	before, after := t.TempDir(), t.TempDir()
	recs := writeLists(t, before, beforeHits, prov)
	writeLists(t, after, afterHits, prov)
	ks := metrics.Options{CMC: []int{1, 5}, Precision: []int{5}, MAP: []int{5}}

	out := filepath.Join(t.TempDir(), "metrics.json")
	plan, err := PrepareEvaluate(ctx, EvaluateOptions{Lists: before, Output: out, KS: ks})
	if err != nil {
		t.Fatal(err)
	}
	if err := runOnPrism(plan); err != nil {
		t.Fatal(err)
	}
	doc := readDoc(t, out)
	var qs []metrics.Query
	for _, r := range recs {
		qs = append(qs, evaluate.Query(r))
	}
	_, want, err := metrics.Compute(qs, ks)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(doc.Report.Overall, want.Overall) || !reflect.DeepEqual(doc.Report.Categories, want.Categories) {
		t.Fatalf("pipeline report %+v\nwant %+v", doc.Report.Overall, want.Overall)
	}

	plan, err = PrepareEvaluate(ctx, EvaluateOptions{Lists: before, Compare: after, Output: out, KS: ks})
	if err != nil {
		t.Fatal(err)
	}
	if err := runOnPrism(plan); err != nil {
		t.Fatal(err)
	}
	doc = readDoc(t, out)
	if doc.Before == nil || doc.After == nil || doc.Delta == nil {
		t.Fatal("comparison lacks before, after or delta")
	}
	for k, d := range doc.Delta.Overall.Metrics {
		if math.Abs(d-(doc.After.Overall.Metrics[k]-doc.Before.Overall.Metrics[k])) > 1e-12 {
			t.Errorf("delta %s = %v", k, d)
		}
	}
	if doc.Delta.Overall.Metrics["cmc@1"] <= 0 {
		t.Errorf("cmc@1 delta = %v, want > 0", doc.Delta.Overall.Metrics["cmc@1"])
	}
}

func TestPrepareEvaluateStopsBadInput(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	writeLists(t, dir, [][]bool{{true, false}}, lists.Provenance{Stage: lists.StageNeighbors, ModelName: "m", K: 2, Distance: "euclidean", Engine: "x", Exclusions: "self"})
	_, sum := generate(t)
	for _, c := range []struct {
		name string
		o    EvaluateOptions
		want string
	}{
		{"k too small", EvaluateOptions{Lists: dir, Output: "m.json", KS: metrics.Options{CMC: []int{1, 5}}}, "k = 2"},
		{"not lists", EvaluateOptions{Lists: t.TempDir(), Output: "m.json", KS: metrics.Options{CMC: []int{1}}}, "_manifest.json"},
		{"other catalog", EvaluateOptions{Lists: dir, Catalog: sum.CatalogPath, Output: "m.json", KS: metrics.Options{CMC: []int{1}}}, "were computed from catalog"},
		{"bad ks", EvaluateOptions{Lists: dir, Output: "m.json", KS: metrics.Options{CMC: []int{0}}}, "k"},
	} {
		if _, err := PrepareEvaluate(ctx, c.o); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: PrepareEvaluate = %v, want %q", c.name, err, c.want)
		}
	}
}

func readDoc(t *testing.T, uri string) metrics.Document {
	t.Helper()
	r, err := blob.Open(context.Background(), uri)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	doc, err := metrics.ReadDocument(r)
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// TestWholeJob runs embed → neighbors → evaluate on a generated catalog, as `stir run`
// does, and checks that every query gets a list and is scored.
func TestWholeJob(t *testing.T) {
	ctx := context.Background()
	_, sum := generate(t)
	out := t.TempDir()
	run(t, options(sum.CatalogPath, out))

	np, err := PrepareNeighbors(ctx, NeighborsOptions{Shared: Shared{Output: out}, K: 5, ShardSize: 7, TileSize: 5, Format: "parquet", Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := runOnPrism(np); err != nil {
		t.Fatal(err)
	}
	dir := blob.Join(out, NeighborsDir)
	m, err := lists.ReadManifest(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if m.Rows != np.Config.Plan.Queries || m.Provenance.CatalogSnapshot == "" || m.Provenance.EmbeddingsSnapshot == "" {
		t.Fatalf("neighbours manifest %+v for %d queries", m, np.Config.Plan.Queries)
	}

	mf := blob.Join(out, MetricsFile)
	ep, err := PrepareEvaluate(ctx, EvaluateOptions{Lists: dir, Catalog: sum.CatalogPath, Output: mf, KS: metrics.Options{CMC: []int{1, 5}, Precision: []int{5}, MAP: []int{5}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := runOnPrism(ep); err != nil {
		t.Fatal(err)
	}
	doc := readDoc(t, mf)
	if doc.Report.Overall.Counts.Queries != m.Rows {
		t.Fatalf("scored %d queries, lists hold %d", doc.Report.Overall.Counts.Queries, m.Rows)
	}
	if doc.Provenance["catalog_snapshot"] != m.Provenance.CatalogSnapshot {
		t.Errorf("metrics provenance %v", doc.Provenance)
	}
}
