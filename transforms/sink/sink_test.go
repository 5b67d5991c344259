package sink

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"

	"github.com/stirpipe/stirpipe/schemas/catalog"
	"github.com/stirpipe/stirpipe/schemas/embeddings"
	"github.com/stirpipe/stirpipe/schemas/lists"
)

func TestMain(m *testing.M) { ptest.Main(m) }

// TestShardsAndManifest writes embeddings and neighbour lists through the one generic
// writer on prism, over the files of an earlier run, and reads them back: every record
// once, in its id's shard, the manifest listing every shard and the stale file gone.
func TestShardsAndManifest(t *testing.T) {
	ctx := context.Background()
	embDir, listDir := t.TempDir(), t.TempDir()
	for _, stale := range []string{filepath.Join(embDir, "part-00009-of-00010.parquet"), filepath.Join(listDir, "part-00009-of-00010.arrow")} {
		if err := os.WriteFile(stale, []byte("an earlier run's"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var embs []embeddings.Record
	var recs []lists.Record
	for i := range 40 {
		id := fmt.Sprintf("item-%03d", i)
		row := catalog.Row{ID: id, Line: int64(i + 2), Label: int64(i / 4), Path: id + ".jpg", Split: catalog.SplitValidation, IsQuery: true, IsGallery: true}
		embs = append(embs, embeddings.Record{Row: row, Embedding: []float32{float32(i), 1, -1}})
		recs = append(recs, lists.Record{QueryID: id, QueryLabel: row.Label, NRelevant: 1,
			NeighborIDs: []string{"g"}, NeighborLabels: []int64{row.Label}, Distances: []float32{0.5}})
	}
	embProv := embeddings.Provenance{ModelName: "m", ModelSHA256: strings.Repeat("ab", 32), Dim: 3, Distance: "euclidean",
		Preprocess: "{}", CatalogURI: "c.csv", CatalogSnapshot: "sha256:" + strings.Repeat("0f", 32), Producer: "sink_test"}
	listProv := lists.Provenance{Stage: lists.StageNeighbors, EmbeddingsURI: embDir, EmbeddingsSnapshot: strings.Repeat("5e", 32),
		CatalogURI: "c.csv", CatalogSnapshot: "sha256:" + strings.Repeat("0f", 32), ModelName: "m", ModelSHA256: strings.Repeat("ab", 32),
		K: 1, Distance: "euclidean", Engine: "exact", ShardSize: 10, Producer: "sink_test"}

	p, s := beam.NewPipelineWithRoot()
	Embeddings(s, beam.CreateList(s, embs), embDir, 3, embProv)
	Lists(s, beam.CreateList(s, recs), listDir, 2, lists.ExtArrow, listProv)
	if err := ptest.Run(p); err != nil {
		t.Fatal(err)
	}

	er, err := embeddings.Open(ctx, embDir)
	if err != nil {
		t.Fatal(err)
	}
	for i, sh := range er.Manifest().Shards {
		if sh.File != embeddings.ShardName(i, 3) {
			t.Errorf("embeddings shard %d is %s", i, sh.File)
		}
		if err := er.EachIn(ctx, i, func(r embeddings.Record) error {
			if shardOf(r.Row.ID, 3) != i {
				t.Errorf("%s in shard %d, want %d", r.Row.ID, i, shardOf(r.Row.ID, 3))
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	gotEmb, err := er.ReadAll(ctx)
	if err != nil || len(gotEmb) != len(embs) || er.Manifest().Provenance != embProv {
		t.Fatalf("embeddings read back: %d records, %v, provenance %+v", len(gotEmb), err, er.Manifest().Provenance)
	}
	lr, err := lists.Open(ctx, listDir)
	if err != nil {
		t.Fatal(err)
	}
	gotLists, err := lr.ReadAll(ctx)
	if err != nil || len(gotLists) != len(recs) || len(lr.Manifest().Shards) != 2 {
		t.Fatalf("recs read back: %d records in %d files, %v", len(gotLists), len(lr.Manifest().Shards), err)
	}
	var ids []string
	for _, r := range gotLists {
		ids = append(ids, r.QueryID)
	}
	slices.Sort(ids)
	if len(slices.Compact(ids)) != len(recs) {
		t.Errorf("a list was written twice: %v", ids)
	}
	for _, stale := range []string{filepath.Join(embDir, "part-00009-of-00010.parquet"), filepath.Join(listDir, "part-00009-of-00010.arrow")} {
		if _, err := os.Stat(stale); !os.IsNotExist(err) {
			t.Errorf("stale file %s is still there: %v", stale, err)
		}
	}
}
