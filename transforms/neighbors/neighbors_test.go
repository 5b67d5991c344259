package neighbors

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"

	"github.com/stirpipe/stirpipe/models/knn"
	"github.com/stirpipe/stirpipe/models/ort"
	"github.com/stirpipe/stirpipe/schemas/catalog"
	"github.com/stirpipe/stirpipe/schemas/embeddings"
	"github.com/stirpipe/stirpipe/schemas/lists"
	"github.com/stirpipe/stirpipe/schemas/rejects"
	"github.com/stirpipe/stirpipe/transforms/sink"
)

func TestMain(m *testing.M) { ptest.Main(m) }

const dim = 16

// writeEmbeddings writes a small embeddings output: validation rows in SOP style (query and
// gallery) or in-shop style (disjoint), some sequences, some train rows that take no part,
// and one zero vector that must be rejected.
func writeEmbeddings(t *testing.T, dir string, inshop bool) []embeddings.Record {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, 9))
	var recs []embeddings.Record
	for i := range 420 {
		row := catalog.Row{ID: fmt.Sprintf("item-%04d", (i*7919)%420), Line: int64(i + 2), Label: int64(i / 4),
			Path: fmt.Sprintf("img/%d.jpg", i), Split: catalog.SplitValidation, IsQuery: true, IsGallery: true, Category: fmt.Sprint("c", i%3)}
		if inshop {
			row.IsQuery, row.IsGallery = i%4 == 0, i%4 != 0
		}
		if i%17 == 0 {
			row.Split, row.IsQuery, row.IsGallery = catalog.SplitTrain, false, false
		}
		if i%10 < 3 {
			row.Sequence = fmt.Sprint("seq", i/10)
		}
		v := make([]float32, dim)
		var n float64
		for j := range v {
			v[j] = float32(rng.NormFloat64())
			n += float64(v[j]) * float64(v[j])
		}
		for j := range v {
			v[j] = float32(float64(v[j]) / math.Sqrt(n))
		}
		if i == 5 {
			v = make([]float32, dim) // cannot be searched
		}
		recs = append(recs, embeddings.Record{Row: row, Embedding: v})
	}
	prov := embeddings.Provenance{ModelName: "test", ModelSHA256: "00", Dim: dim, Normalized: true, Distance: "euclidean"}
	var shards []embeddings.ShardInfo
	for s := range 3 {
		var part []embeddings.Record
		for i, r := range recs {
			if i%3 == s {
				part = append(part, r)
			}
		}
		info, err := embeddings.WriteShard(context.Background(), filepath.Join(dir, embeddings.ShardName(s, 3)), part, prov)
		if err != nil {
			t.Fatal(err)
		}
		shards = append(shards, info)
	}
	if err := embeddings.WriteManifest(context.Background(), dir, embeddings.NewManifest(prov, shards)); err != nil {
		t.Fatal(err)
	}
	return recs
}

// reference searches the whole gallery at once with the engine, outside Beam.
func reference(t *testing.T, recs []embeddings.Record, k int) map[string]lists.Record {
	t.Helper()
	var g knn.Gallery
	var q knn.Query
	g.Dim, q.Dim = dim, dim
	var gallery, queries []embeddings.Record
	for _, r := range recs {
		if knn.Unusable(r.Embedding, true) != "" {
			continue
		}
		if r.Row.InGallery() {
			gallery = append(gallery, r)
		}
		if r.Row.Queries() {
			queries = append(queries, r)
		}
	}
	sortRecords(gallery)
	for _, r := range gallery {
		g.IDs, g.Labels, g.Sequences = append(g.IDs, r.Row.ID), append(g.Labels, r.Row.Label), append(g.Sequences, r.Row.Sequence)
		g.Vectors = append(g.Vectors, r.Embedding...)
	}
	for _, r := range queries {
		q.IDs, q.Sequences = append(q.IDs, r.Row.ID), append(q.Sequences, r.Row.Sequence)
		q.Vectors = append(q.Vectors, r.Embedding...)
	}
	e, err := knn.NewEngine(knn.Options{K: k, Normalized: true, ExcludeSelf: true, ExcludeSameSequence: true, Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	found, err := e.Search(q, g)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]lists.Record{}
	for i, r := range queries {
		o := lists.Record{QueryID: r.Row.ID, QueryLabel: r.Row.Label, QueryCategory: r.Row.Category, QuerySequence: r.Row.Sequence}
		for _, nb := range found[i] {
			o.NeighborIDs = append(o.NeighborIDs, g.IDs[nb.Index])
			o.NeighborLabels = append(o.NeighborLabels, g.Labels[nb.Index])
			o.Distances = append(o.Distances, nb.Dist)
		}
		// n: same label, not the query, not its sequence — counted by brute force.
		for _, c := range gallery {
			if c.Row.Label == r.Row.Label && c.Row.ID != r.Row.ID && (r.Row.Sequence == "" || c.Row.Sequence != r.Row.Sequence) {
				o.NRelevant++
			}
		}
		out[o.QueryID] = o
	}
	return out
}

func sortRecords(rs []embeddings.Record) {
	sort.Slice(rs, func(a, b int) bool { return rs[a].Row.ID < rs[b].Row.ID })
}

// TestShardedEqualsSingleSearch: on prism, the sharded transform gives exactly the lists of
// one search over the whole gallery, for several shard and tile sizes, SOP and in-shop.
func TestShardedEqualsSingleSearch(t *testing.T) {
	if err := ort.Init(""); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const k = 10
	for _, inshop := range []bool{false, true} {
		emb := t.TempDir()
		recs := writeEmbeddings(t, emb, inshop)
		want := reference(t, recs, k)
		r, err := embeddings.Open(ctx, emb)
		if err != nil {
			t.Fatal(err)
		}
		plan, err := PlanFor(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct{ shard, tile int }{{1000, 1000}, {150, 64}, {97, 500}, {13, 37}} {
			t.Run(fmt.Sprintf("inshop=%v/shard=%d/tile=%d", inshop, c.shard, c.tile), func(t *testing.T) {
				out, rej := t.TempDir(), filepath.Join(t.TempDir(), "rejects.parquet")
				cfg := Config{Embeddings: emb, Output: out, Ext: lists.ExtParquet, ShardSize: c.shard, TileSize: c.tile, Plan: plan,
					Engine:     knn.Options{K: k, Normalized: true, ExcludeSelf: true, ExcludeSameSequence: true, Threads: 2},
					Provenance: lists.Provenance{Stage: lists.StageNeighbors, ModelName: "test", K: k, Distance: "euclidean", Engine: "test", Exclusions: "self,sequence"}}
				p, s := beam.NewPipelineWithRoot()
				sink.Rejects(s, Search(s, cfg), rej)
				if err := ptest.Run(p); err != nil {
					t.Fatal(err)
				}
				rd, err := lists.Open(ctx, out)
				if err != nil {
					t.Fatal(err)
				}
				got, err := rd.ReadAll(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != len(want) {
					t.Fatalf("%d lists, want %d", len(got), len(want))
				}
				for _, g := range got {
					w := want[g.QueryID]
					if !reflect.DeepEqual(g.NeighborIDs, w.NeighborIDs) || !reflect.DeepEqual(g.Distances, w.Distances) ||
						!reflect.DeepEqual(g.NeighborLabels, w.NeighborLabels) || g.NRelevant != w.NRelevant || g.QueryCategory != w.QueryCategory {
						t.Fatalf("query %s:\n got %v %v n=%d\nwant %v %v n=%d", g.QueryID, g.NeighborIDs, g.Distances, g.NRelevant, w.NeighborIDs, w.Distances, w.NRelevant)
					}
				}
				rs, err := rejects.ReadAll(ctx, rej)
				if err != nil {
					t.Fatal(err)
				}
				if len(rs) != 1 || rs[0].Reason != "zero_vector" || rs[0].Stage != Stage {
					t.Fatalf("rejects = %+v, want the one zero vector", rs)
				}
			})
		}
	}
}

func TestConfigValidate(t *testing.T) {
	base := Config{Ext: lists.ExtParquet, ShardSize: 10, TileSize: 10, Engine: knn.Options{K: 5}, Plan: Plan{Queries: 3, Galleries: 4}}
	for _, c := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"k above gallery", func(c *Config) { c.Engine.K = 5 }, "larger than the gallery"},
		{"k zero", func(c *Config) { c.Engine.K = 0 }, "K must be ≥ 1"},
		{"no queries", func(c *Config) { c.Plan.Queries = 0 }, "no query"},
		{"format", func(c *Config) { c.Ext = ".csv" }, "format must be"},
	} {
		cfg := base
		c.edit(&cfg)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Validate = %v, want %q", c.name, err, c.want)
		}
	}
}

func TestMemoryLimit(t *testing.T) {
	cfg := Config{ShardSize: 20000, TileSize: 2048, Plan: Plan{Dim: 384}, Engine: knn.Options{K: 100, Threads: 2}}
	// 64 MiB + 20,000·(4·384 + 64) + 2,048·(4·384 + 64·100) + 2·512·2048·4 bytes.
	if got, want := cfg.MemoryLimit(), int64(64<<20+20000*1600+2048*7936+2*512*2048*4); got != want {
		t.Fatalf("MemoryLimit = %d, want %d", got, want)
	}
	big := cfg
	big.ShardSize *= 10
	if big.MemoryLimit()-cfg.MemoryLimit() != 9*20000*1600 {
		t.Fatal("the limit does not grow with the shard")
	}
}
