package lists_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/stirpipe/stirpipe/schemas/lists"
)

func Example() {
	dir, _ := os.MkdirTemp("", "neighbors")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	prov := lists.Provenance{Stage: lists.StageNeighbors, ModelName: "vit-tiny-triplet", K: 2,
		Distance: "euclidean", Exclusions: "self,sequence"}

	// The neighbours stage writes each shard, then the manifest. A query whose gallery is
	// empty after exclusions has empty lists. NRelevant counts the query's relevant items in
	// the whole gallery, beyond its k neighbours.
	recs := []lists.Record{
		{QueryID: "b", QueryLabel: 1, NRelevant: 3, NeighborIDs: []string{"c", "a"}, NeighborLabels: []int64{1, 2}, Distances: []float32{0.25, 0.5}},
		{QueryID: "a", QueryLabel: 2, QuerySequence: "s1"},
	}
	info, err := lists.WriteShard(ctx, filepath.Join(dir, lists.ShardName(0, 1, lists.ExtParquet)), recs, prov)
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := lists.WriteManifest(ctx, dir, lists.NewManifest(prov, []lists.ShardInfo{info})); err != nil {
		fmt.Println(err)
		return
	}

	r, err := lists.Open(ctx, dir)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(r.Manifest().Rows, "queries, k =", r.Provenance().K)
	_ = r.Each(ctx, func(rec lists.Record) error {
		fmt.Println(rec.QueryID, rec.NeighborIDs, rec.Distances, rec.NRelevant)
		return nil
	})
	// Output:
	// 2 queries, k = 2
	// a [] [] 0
	// b [c a] [0.25 0.5] 3
}

func ExampleMerge() {
	// The top 3 of one query in two gallery shards; ties are broken by neighbour id, and the
	// shards' counts of relevant items add up.
	shard0 := lists.Record{QueryID: "q", NRelevant: 1, NeighborIDs: []string{"x", "z"}, NeighborLabels: []int64{1, 2}, Distances: []float32{0.1, 0.4}}
	shard1 := lists.Record{QueryID: "q", NRelevant: 4, NeighborIDs: []string{"y", "w"}, NeighborLabels: []int64{3, 4}, Distances: []float32{0.4, 0.9}}
	merged, err := lists.Merge(3, shard0, shard1)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(merged.NeighborIDs, merged.Distances, merged.NRelevant)
	// Output: [x y z] [0.1 0.4 0.4] 5
}
