// Package pairwise runs the STIR pairwise model (method.md §1): a query image and a
// candidate image go through one ViT together, and the model's logit says how likely the
// pair is to show DIFFERENT products. Score returns sigmoid(logit) in [0, 1], used as a
// distance by the reranker (models/stir): lower means more similar.
package pairwise

import (
	"errors"
	"fmt"
	"math"

	"github.com/stirpipe/stirpipe/models/imagemodel"
	"github.com/stirpipe/stirpipe/models/manifest"
	"github.com/stirpipe/stirpipe/models/ort"
)

// Scorer scores (query, candidate) pairs. It shares one ONNX Runtime session per model
// and options in the process; Score is safe for concurrent use.
type Scorer struct {
	m *imagemodel.Model
}

// Open checks that m describes a pairwise model and that its graph matches it (two image
// inputs [batch,3,crop,crop], one logit per pair), then opens the shared session.
func Open(m *manifest.Manifest, opts ort.Options) (*Scorer, error) {
	if err := checkKind(m); err != nil {
		return nil, err
	}
	e, err := imagemodel.Open(m, opts)
	if err != nil {
		return nil, err
	}
	return &Scorer{m: e}, nil
}

// Verify makes Open's checks without creating the session and returns the ONNX file's
// SHA-256 (imagemodel.Verify): the preflight of a job whose workers score pairs later.
func Verify(m *manifest.Manifest, opts ort.Options) (sha256 string, err error) {
	if err := checkKind(m); err != nil {
		return "", err
	}
	return imagemodel.Verify(m, opts)
}

func checkKind(m *manifest.Manifest) error {
	if m == nil {
		return errors.New("pairwise: nil manifest")
	}
	if m.Kind != manifest.KindPairwise {
		return fmt.Errorf("pairwise: manifest %q has kind %q, want %q (the STIR model, two inputs: query and candidate)", m.Name, m.Kind, manifest.KindPairwise)
	}
	return nil
}

// Compatible reports whether a pairwise model sees the same images as the embedder whose
// neighbours it reranks: identical preprocessing, so each image is decoded and
// preprocessed once for both.
func Compatible(pair, emb *manifest.Manifest) error {
	if !pair.Preprocess.Equal(emb.Preprocess) {
		return fmt.Errorf("pairwise model %q preprocesses images as %+v but embedder %q as %+v: export both with the same preprocessing",
			pair.Name, pair.Preprocess, emb.Name, emb.Preprocess)
	}
	return nil
}

// InputLen is the number of float32 values of one preprocessed image.
func (s *Scorer) InputLen() int { return s.m.InputLen() }

// Manifest returns a copy of the model's manifest.
func (s *Scorer) Manifest() *manifest.Manifest { return s.m.Manifest() }

// ModelSHA256 returns the hex sha256 of the ONNX file.
func (s *Scorer) ModelSHA256() string { return s.m.ModelSHA256() }

// Provider returns the execution provider in use: "cpu" or "cuda".
func (s *Scorer) Provider() string { return s.m.Provider() }

// Score runs one forward pass over n pairs: query and candidate each hold n preprocessed
// images (CHW float32, InputLen values each), pair i being (query i, candidate i). It
// returns sigmoid(logit) per pair.
func (s *Scorer) Score(query, candidate []float32, n int) ([]float32, error) {
	if n < 1 {
		return nil, fmt.Errorf("pairwise: batch of %d pairs, want ≥ 1", n)
	}
	out := make([]float32, n)
	if err := s.m.RunInto(out, n, query, candidate); err != nil {
		return nil, fmt.Errorf("pairwise: %w", err)
	}
	for i, x := range out {
		if math.IsNaN(float64(x)) {
			return nil, fmt.Errorf("pairwise %q: pair %d of the batch has a NaN logit", s.m.Manifest().Name, i)
		}
		out[i] = Sigmoid(x)
	}
	return out, nil
}

// Sigmoid is 1/(1+e^−x) in float32, as torch.sigmoid.
func Sigmoid(x float32) float32 {
	return float32(1 / (1 + math.Exp(-float64(x))))
}

// Close releases the shared session.
func (s *Scorer) Close() error { return s.m.Close() }
