package pipelines

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/stirpipe/stirpipe/models/imageio"
	"github.com/stirpipe/stirpipe/models/imageload"
	"github.com/stirpipe/stirpipe/models/manifest"
	"github.com/stirpipe/stirpipe/models/ort"
	"github.com/stirpipe/stirpipe/models/pairwise"
	"github.com/stirpipe/stirpipe/models/stir"
	"github.com/stirpipe/stirpipe/models/zoo"
	"github.com/stirpipe/stirpipe/schemas/blob"
	"github.com/stirpipe/stirpipe/schemas/catalog"
	"github.com/stirpipe/stirpipe/schemas/lists"
	"github.com/stirpipe/stirpipe/schemas/rejects"
)

const stirDir = zoo.STIRTinyName

func rerankOptions(out string) RerankOptions {
	return RerankOptions{Shared: Shared{Output: out, Runtime: ort.Options{IntraOpThreads: 2, GraphOptLevel: "all"}, Limits: imageio.DefaultLimits()},
		Model: filepath.Join(zoo.Dir(), stirDir, "pairwise.json"), TopN: 3, BatchPairs: 7, CacheImages: 16}
}

func runRerank(t *testing.T, o RerankOptions) *RerankPlan {
	t.Helper()
	plan, err := PrepareRerank(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if err := runOnPrism(plan); err != nil {
		t.Fatal(err)
	}
	return plan
}

// neighborsRun embeds a generated catalog and computes its neighbour lists.
func neighborsRun(t *testing.T) (string, string) {
	t.Helper()
	dir, sum := generate(t)
	out := t.TempDir()
	run(t, options(sum.CatalogPath, out))
	np, err := PrepareNeighbors(context.Background(), NeighborsOptions{Shared: Shared{Output: out}, K: 6, ShardSize: 50, TileSize: 50, Format: "parquet", Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := runOnPrism(np); err != nil {
		t.Fatal(err)
	}
	return dir, out
}

// TestRerankWorkersRefuseAnotherModel: as TestWorkersRefuseAnotherModel, for the pairwise
// model of the rerank stage.
func TestRerankWorkersRefuseAnotherModel(t *testing.T) {
	_, out := neighborsRun(t)
	plan, err := PrepareRerank(context.Background(), rerankOptions(out))
	if err != nil {
		t.Fatal(err)
	}
	plan.Config.ModelSHA256 = strings.Repeat("0", 64)
	if err := runOnPrism(plan); err == nil || !strings.Contains(err.Error(), "changed since the job was launched") {
		t.Fatalf("run with another model's hash: %v, want a refusal", err)
	}
}

// TestRerankPipeline: on prism, every reranked list equals OML's formula applied to the
// pairwise model's scores of the same pairs computed one by one outside Beam; the output
// is byte-identical across runs; a query whose head image vanished keeps its list and is
// recorded in the rejects.
func TestRerankPipeline(t *testing.T) {
	ctx := context.Background()
	dir, out := neighborsRun(t)
	in, err := lists.Open(ctx, blob.Join(out, NeighborsDir))
	if err != nil {
		t.Fatal(err)
	}
	before, err := in.ReadAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// An image vanishes after embedding: the first head candidate of the first query.
	cat, err := catalog.Load(ctx, filepath.Join(dir, "catalog.csv"), catalog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]catalog.Row{}
	for _, r := range cat.Rows {
		rows[r.ID] = r
	}
	gone := before[0].NeighborIDs[0]
	if err := os.Remove(filepath.Join(dir, rows[gone].Path)); err != nil {
		t.Fatal(err)
	}

	o := rerankOptions(out)
	plan := runRerank(t, o)
	first := files(t, blob.Join(out, RerankedDir))
	snap := map[string][]byte{}
	for _, f := range first {
		snap[f], _ = os.ReadFile(filepath.Join(out, RerankedDir, f))
	}
	runRerank(t, o)
	for _, f := range files(t, blob.Join(out, RerankedDir)) {
		if b, _ := os.ReadFile(filepath.Join(out, RerankedDir, f)); string(b) != string(snap[f]) {
			t.Errorf("%s differs between two runs", f)
		}
	}

	rd, err := lists.Open(ctx, blob.Join(out, RerankedDir))
	if err != nil {
		t.Fatal(err)
	}
	after, err := rd.ReadAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) || rd.Manifest().Provenance.TopN != 3 || rd.Manifest().Provenance.InputSnapshot == "" {
		t.Fatalf("%d reranked lists of %d, manifest %+v", len(after), len(before), rd.Manifest().Provenance)
	}

	// Expected: score each pair alone, apply the formula.
	m, err := manifest.Load(o.Model)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := pairwise.Open(m, o.Runtime)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	loader, err := imageload.New(dir, imageio.DefaultLimits(), m.Preprocess)
	if err != nil {
		t.Fatal(err)
	}
	tensor := func(id string) []float32 {
		x := make([]float32, loader.TensorLen())
		if err := loader.Load(ctx, rows[id], x); err != nil {
			return nil
		}
		return x
	}
	byID := map[string]lists.Record{}
	for _, r := range after {
		byID[r.QueryID] = r
	}
	kept := 0
	for _, b := range before {
		got := byID[b.QueryID]
		h := stir.Head(len(b.NeighborIDs), plan.Config.TopN)
		q := tensor(b.QueryID)
		var scores []float32
		missing := q == nil
		for _, id := range b.NeighborIDs[:h] {
			if missing {
				break
			}
			c := tensor(id)
			if c == nil {
				missing = true
				break
			}
			s, err := sc.Score(q, c, 1)
			if err != nil {
				t.Fatal(err)
			}
			scores = append(scores, s[0])
		}
		if missing {
			kept++
			if !reflect.DeepEqual(got.NeighborIDs, b.NeighborIDs) || !reflect.DeepEqual(got.Distances, b.Distances) || len(got.PairScores) != 0 {
				t.Errorf("query %s with a vanished image: list changed", b.QueryID)
			}
			continue
		}
		want, err := stir.Apply(stir.List{IDs: b.NeighborIDs, Labels: b.NeighborLabels, Distances: b.Distances}, scores, plan.Config.TopN)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got.NeighborIDs, want.IDs) || !reflect.DeepEqual(got.NeighborLabels, want.Labels) || got.NRelevant != b.NRelevant {
			t.Errorf("query %s: ids %v, want %v (scores %v)", b.QueryID, got.NeighborIDs, want.IDs, scores)
			continue
		}
		for i := range want.Distances {
			if math.Abs(float64(got.Distances[i]-want.Distances[i])) > 1e-5 {
				t.Errorf("query %s: distances %v, want %v", b.QueryID, got.Distances, want.Distances)
				break
			}
		}
	}
	rejs, err := rejects.ReadAll(ctx, RejectsFile(out, "rerank"))
	if err != nil {
		t.Fatal(err)
	}
	if kept == 0 || len(rejs) != kept {
		t.Fatalf("%d queries kept their list, %d rejects", kept, len(rejs))
	}
	for _, r := range rejs {
		if r.Reason != imageload.StageRead+"_"+imageio.ReasonMissing || !strings.Contains(r.Detail, gone) {
			t.Errorf("reject %+v, want the vanished image %s", r, gone)
		}
	}
}

// TestCheckRerank: a whole job checks the rerank stage's flags and pairwise model against
// the embedder before its first stage, with no lists yet.
func TestCheckRerank(t *testing.T) {
	ctx := context.Background()
	em, err := manifest.Load(filepath.Join(zoo.Dir(), stirDir, "embedder.json"))
	if err != nil {
		t.Fatal(err)
	}
	o := rerankOptions(t.TempDir()) // an empty run directory
	if err := o.checkAhead(ctx, em, 6); err != nil {
		t.Fatalf("good options: %v", err)
	}
	other := *em
	other.Preprocess.ResizeTo++
	for _, c := range []struct {
		name string
		edit func(*RerankOptions)
		em   *manifest.Manifest
		want string
	}{
		{"top_n above k", func(o *RerankOptions) { o.TopN = 7 }, em, "larger than the lists (k = 6)"},
		{"not pairwise", func(o *RerankOptions) { o.Model = filepath.Join(zoo.Dir(), stirDir, "embedder.json") }, em, "kind"},
		{"other preprocessing", func(*RerankOptions) {}, &other, "preprocess"},
		{"no batch", func(o *RerankOptions) { o.BatchPairs = 0 }, em, "--pair_batch"},
	} {
		o := rerankOptions(t.TempDir())
		c.edit(&o)
		if err := o.checkAhead(ctx, c.em, 6); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: checkAhead = %v, want %q", c.name, err, c.want)
		}
	}
}

func TestPrepareRerankStopsBadInput(t *testing.T) {
	_, out := neighborsRun(t)
	embedderManifest := filepath.Join(zoo.Dir(), zoo.TinyEmbedderName, "embedder.json")
	for _, c := range []struct {
		name string
		edit func(*RerankOptions)
		want string
	}{
		{"top_n 1", func(o *RerankOptions) { o.TopN = 1 }, "--top_n must be ≥ 2"},
		{"top_n above k", func(o *RerankOptions) { o.TopN = 7 }, "larger than the lists (k = 6)"},
		{"not pairwise", func(o *RerankOptions) { o.Model = embedderManifest }, "kind"},
		{"no lists", func(o *RerankOptions) { o.Lists = t.TempDir() }, "_manifest.json"},
	} {
		o := rerankOptions(out)
		c.edit(&o)
		if _, err := PrepareRerank(context.Background(), o); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: PrepareRerank = %v, want %q", c.name, err, c.want)
		}
	}
}
