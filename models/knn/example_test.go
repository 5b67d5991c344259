package knn_test

import (
	"fmt"

	"github.com/stirpipe/stirpipe/models/knn"
	"github.com/stirpipe/stirpipe/models/ort"
)

func Example() {
	if err := ort.Init(""); err != nil {
		fmt.Println(err)
		return
	}
	// Four items, every one both query and gallery (SOP style); b and c are one product
	// photographed twice (same sequence), d is an exact duplicate of a.
	g := knn.Gallery{
		IDs:       []string{"a", "b", "c", "d"},
		Labels:    []int64{1, 2, 2, 1},
		Sequences: []string{"", "s1", "s1", ""},
		Vectors:   []float32{1, 0, 0.6, 0.8, 0.8, 0.6, 1, 0},
		Dim:       2,
	}
	e, err := knn.NewEngine(knn.Options{K: 2, Normalized: true, ExcludeSelf: true, ExcludeSameSequence: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer e.Close()
	ix, err := knn.NewIndex(g)
	if err != nil {
		fmt.Println(err)
		return
	}
	lists, err := e.SearchSelf(ix)
	if err != nil {
		fmt.Println(err)
		return
	}
	for i, l := range lists {
		fmt.Printf("%s:", g.IDs[i])
		for _, r := range ix.Results(l) {
			fmt.Printf(" %s (label %d) %.4f", r.ID, r.Label, r.Dist)
		}
		fmt.Println()
	}
	// Output:
	// a: d (label 1) 0.0000 c (label 2) 0.6325
	// b: a (label 1) 0.8944 d (label 1) 0.8944
	// c: a (label 1) 0.6325 d (label 1) 0.6325
	// d: a (label 1) 0.0000 c (label 2) 0.6325
}
