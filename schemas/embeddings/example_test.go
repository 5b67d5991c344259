package embeddings_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/stirpipe/stirpipe/schemas/catalog"
	"github.com/stirpipe/stirpipe/schemas/embeddings"
)

func Example() {
	dir, _ := os.MkdirTemp("", "embeddings")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	prov := embeddings.Provenance{ModelName: "vit-tiny-triplet", Dim: 2, Normalized: true, Distance: "euclidean"}

	// The pipeline writes each shard, then the manifest.
	shards := [][]embeddings.Record{
		{{Row: catalog.Row{ID: "b", Path: "b.jpg", Split: "validation", IsQuery: true}, Embedding: []float32{0.6, 0.8}}},
		{{Row: catalog.Row{ID: "a", Path: "a.jpg", Split: "validation", IsGallery: true}, Embedding: []float32{1, 0}}},
	}
	var infos []embeddings.ShardInfo
	for i, recs := range shards {
		info, err := embeddings.WriteShard(ctx, filepath.Join(dir, embeddings.ShardName(i, len(shards))), recs, prov)
		if err != nil {
			fmt.Println(err)
			return
		}
		infos = append(infos, info)
	}
	if err := embeddings.WriteManifest(ctx, dir, embeddings.NewManifest(prov, infos)); err != nil {
		fmt.Println(err)
		return
	}

	r, err := embeddings.Open(ctx, dir)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(r.Manifest().Rows, "rows from", r.Provenance().ModelName)
	_ = r.Each(ctx, func(rec embeddings.Record) error {
		fmt.Println(rec.Row.ID, rec.Row.Path, rec.Embedding)
		return nil
	})
	// Output:
	// 2 rows from vit-tiny-triplet
	// b b.jpg [0.6 0.8]
	// a a.jpg [1 0]
}
