package zoo

import (
	"errors"
	"fmt"
)

// STIRTinyName is the directory of the committed tiny STIR pair: embedder.onnx/.json and
// pairwise.onnx/.json (models/recipe/train_stir.py, see its TRAINING.md).
const STIRTinyName = "stir-tiny"

// PairwiseGolden is models/zoo/<model>/golden/pairwise.json (written by
// models/recipe/golden_pairwise.py). Its Golden part describes the pairwise graph (Model) and
// the images; their Embedding is the embedder's output.
type PairwiseGolden struct {
	Golden
	// Embedder identifies the embedder graph of the Images' embeddings and the distances.
	Embedder GoldenModel `json:"embedder"`
	// Catalog says which synthetic catalog the images were taken from.
	Catalog GoldenCatalog `json:"catalog"`
	// TopN is the reranked head length (OML's top_n).
	TopN int `json:"top_n"`
	// Pairs are torch's outputs for every (query, candidate) of the Queries.
	Pairs []GoldenPair `json:"pairs"`
	// Queries are the reranking cases.
	Queries []GoldenQuery `json:"queries"`
}

// GoldenCatalog is the provenance of a pairwise golden file's images.
type GoldenCatalog struct {
	// CSVRows and ValidationRows count the catalog's rows and its validation split.
	CSVRows        int `json:"csv_rows"`
	ValidationRows int `json:"validation_rows"`
	// Note says how to regenerate the catalog.
	Note string `json:"note"`
}

// GoldenPair is torch's output for one pair of images (indices into Images).
type GoldenPair struct {
	Query     int  `json:"query"`
	Candidate int  `json:"candidate"`
	SameLabel bool `json:"same_label"`
	// Logit is the pairwise model's output ("different"), batch of one.
	Logit float32 `json:"logit"`
	// Score is sigmoid(Logit) in float32.
	Score float32 `json:"score"`
}

// GoldenQuery is one query's embedder neighbours and their expected reranking.
type GoldenQuery struct {
	// Query is the query image (index into Images); Label and Category its product and category.
	Query    int    `json:"query"`
	Label    int64  `json:"label"`
	Category string `json:"category"`
	// Retrieved are the embedder's first neighbours (indices into Images), ascending by
	// Distances (float64 Euclidean distances of the Images' embeddings); Labels their products.
	Retrieved []int     `json:"retrieved"`
	Labels    []int64   `json:"labels"`
	Distances []float64 `json:"distances"`
	// TailDistance is the distance of the next neighbour (not stored), nil when there is none.
	TailDistance *float64 `json:"tail_distance"`
	// Reranked and RerankedDistances are OML's PairwiseReranker result for Retrieved.
	Reranked          []int     `json:"reranked"`
	RerankedDistances []float64 `json:"reranked_distances"`
}

// LoadPairwiseGolden reads and checks models/zoo/<model>/golden/pairwise.json.
func LoadPairwiseGolden(model string) (*PairwiseGolden, error) {
	var g PairwiseGolden
	if err := loadGoldenFile(model, "pairwise.json", &g, &g.Dir, g.validate); err != nil {
		return nil, err
	}
	return &g, nil
}

// Pair returns torch's output for (query, candidate), or false when the file has none.
func (g *PairwiseGolden) Pair(query, candidate int) (GoldenPair, bool) {
	for _, p := range g.Pairs {
		if p.Query == query && p.Candidate == candidate {
			return p, true
		}
	}
	return GoldenPair{}, false
}

func (g *PairwiseGolden) validate() error {
	errs := []error{g.Golden.validate()}
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if g.TopN < 1 {
		bad("top_n is %d, want ≥ 1", g.TopN)
	}
	if len(g.Pairs) == 0 || len(g.Queries) == 0 {
		bad("%d pairs and %d queries, want some of each", len(g.Pairs), len(g.Queries))
	}
	image := func(what string, i int) {
		if i < 0 || i >= len(g.Images) {
			bad("%s = %d is not an image index (0..%d)", what, i, len(g.Images)-1)
		}
	}
	for i, p := range g.Pairs {
		image(fmt.Sprintf("pairs[%d].query", i), p.Query)
		image(fmt.Sprintf("pairs[%d].candidate", i), p.Candidate)
	}
	for i, q := range g.Queries {
		image(fmt.Sprintf("queries[%d].query", i), q.Query)
		n := len(q.Retrieved)
		if n == 0 || len(q.Labels) != n || len(q.Distances) != n || len(q.Reranked) != n || len(q.RerankedDistances) != n {
			bad("queries[%d]: retrieved, labels, distances, reranked, reranked_distances have %d, %d, %d, %d, %d values, want the same non-zero count",
				i, n, len(q.Labels), len(q.Distances), len(q.Reranked), len(q.RerankedDistances))
		}
		for j, r := range q.Retrieved {
			image(fmt.Sprintf("queries[%d].retrieved[%d]", i, j), r)
			if _, ok := g.Pair(q.Query, r); j < g.TopN && !ok {
				bad("queries[%d]: no pair (%d, %d) for retrieved[%d] in the head of %d", i, q.Query, r, j, g.TopN)
			}
		}
	}
	return errors.Join(errs...)
}
