// Package manifest describes an ONNX model to the rest of the pipeline: which graph inputs
// and output to use, how images are preprocessed for it, and what its output means.
//
// A manifest is a JSON file stored beside its ONNX file (model.onnx → model.json). It is
// checked on its own by Validate and against the real graph when a session is created
// (models/ort), so a wrong manifest stops a job before any image is read.
package manifest

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Kinds of model.
const (
	// KindEmbedder maps one image batch [B,3,H,W] to embeddings [B,Dim].
	KindEmbedder = "embedder"
	// KindPairwise maps a query and a candidate batch, each [B,3,H,W], to logits [B,1]
	// meaning "the pair is different" (STIR).
	KindPairwise = "pairwise"
)

// Resize policies.
const (
	// ResizeShorterSide scales the image so its shorter side is Preprocess.ResizeTo, then
	// centre-crops CropSize×CropSize (method.md §2).
	ResizeShorterSide = "shorter_side"
)

// Manifest is the JSON document stored beside an ONNX file.
type Manifest struct {
	// Name identifies the model in provenance and logs, e.g. "vit-tiny-triplet".
	Name string `json:"name"`
	// Kind is KindEmbedder or KindPairwise.
	Kind string `json:"kind"`
	// Model is the ONNX file, relative to the manifest's directory.
	Model string `json:"model"`
	// Inputs are the graph's image input names: one for an embedder, (query, candidate)
	// for a pairwise model. Each takes float32 [B,3,CropSize,CropSize], B dynamic.
	Inputs []string `json:"inputs"`
	// Output is the graph output to read: [B,Dim].
	Output string `json:"output"`
	// Dim is the width of the output: the embedding dimension, or 1 for a pairwise logit.
	Dim int `json:"dim"`
	// Normalized says the embedder's outputs are L2-normalised by the graph.
	Normalized bool `json:"normalized"`
	// Distance is how outputs are compared: "euclidean" for embedders; "sigmoid_logit" for
	// pairwise models (score = sigmoid(logit), lower = more similar).
	Distance string `json:"distance"`
	// Preprocess is the evaluation transform applied to every image.
	Preprocess Preprocess `json:"preprocess"`
}

// Preprocess is the evaluation transform of method.md §2.
type Preprocess struct {
	// Resize is the resize policy; only ResizeShorterSide is defined.
	Resize string `json:"resize"`
	// ResizeTo is the target length of the shorter side, in pixels.
	ResizeTo int `json:"resize_to"`
	// Filter is the resampling filter: "bicubic" (Keys a = -0.5, antialiased, as PIL).
	Filter string `json:"filter"`
	// CropSize is the side of the centre crop; the model input is CropSize×CropSize.
	CropSize int `json:"crop_size"`
	// Mean and Std normalise each RGB channel after scaling to [0,1].
	Mean [3]float32 `json:"mean"`
	Std  [3]float32 `json:"std"`
}

// PathFor returns the manifest path stored beside an ONNX file: dir/name.onnx → dir/name.json.
func PathFor(onnxPath string) string {
	return strings.TrimSuffix(onnxPath, filepath.Ext(onnxPath)) + ".json"
}

// Load reads and validates a manifest. The path may name the manifest (.json) or the ONNX
// file beside it. The returned manifest's Model is resolved to an absolute-or-relative path
// usable from the current directory.
func Load(path string) (*Manifest, error) {
	if strings.EqualFold(filepath.Ext(path), ".onnx") {
		path = PathFor(path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("model manifest: %w (every ONNX file needs a manifest beside it, e.g. model.onnx → model.json)", err)
	}
	m, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("model manifest %s: %w", path, err)
	}
	if !filepath.IsAbs(m.Model) {
		m.Model = filepath.Join(filepath.Dir(path), m.Model)
	}
	return m, nil
}

// Parse decodes a manifest strictly (unknown fields are errors) and validates it.
func Parse(data []byte) (*Manifest, error) {
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// Validate reports every problem of the manifest at once.
func (m *Manifest) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if m.Name == "" {
		bad("name is empty")
	}
	if m.Model == "" {
		bad("model (the ONNX file) is empty")
	}
	switch m.Kind {
	case KindEmbedder:
		if len(m.Inputs) != 1 {
			bad("an embedder has exactly one input, got %d", len(m.Inputs))
		}
		if m.Dim < 1 {
			bad("dim must be ≥ 1, got %d", m.Dim)
		}
		if m.Distance != "euclidean" {
			bad(`distance of an embedder must be "euclidean", got %q`, m.Distance)
		}
	case KindPairwise:
		if len(m.Inputs) != 2 {
			bad("a pairwise model has exactly two inputs (query, candidate), got %d", len(m.Inputs))
		}
		if m.Dim != 1 {
			bad("dim of a pairwise model must be 1 (one logit per pair), got %d", m.Dim)
		}
		if m.Distance != "sigmoid_logit" {
			bad(`distance of a pairwise model must be "sigmoid_logit", got %q`, m.Distance)
		}
	default:
		bad("kind must be %q or %q, got %q", KindEmbedder, KindPairwise, m.Kind)
	}
	for i, in := range m.Inputs {
		if in == "" {
			bad("input %d has an empty name", i)
		}
	}
	if m.Output == "" {
		bad("output is empty")
	}
	if err := m.Preprocess.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Validate checks the preprocessing block.
func (p Preprocess) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("preprocess: "+format, args...))
	}
	if p.Resize != ResizeShorterSide {
		bad("resize must be %q, got %q", ResizeShorterSide, p.Resize)
	}
	if p.Filter != "bicubic" {
		bad(`filter must be "bicubic", got %q`, p.Filter)
	}
	if p.CropSize < 1 || p.CropSize > 4096 {
		bad("crop_size must be in [1, 4096], got %d", p.CropSize)
	}
	if p.ResizeTo < p.CropSize {
		bad("resize_to (%d) must be ≥ crop_size (%d)", p.ResizeTo, p.CropSize)
	}
	for c, s := range p.Std {
		if !(s > 0) {
			bad("std[%d] must be > 0, got %v", c, s)
		}
	}
	return errors.Join(errs...)
}

// Equal reports whether two preprocessing blocks produce the same tensors.
func (p Preprocess) Equal(q Preprocess) bool { return p == q }

// ImageNet returns the preprocessing of method.md §2: shorter side 224, centre crop 224,
// ImageNet mean and std.
func ImageNet() Preprocess {
	return Preprocess{
		Resize:   ResizeShorterSide,
		ResizeTo: 224,
		Filter:   "bicubic",
		CropSize: 224,
		Mean:     [3]float32{0.485, 0.456, 0.406},
		Std:      [3]float32{0.229, 0.224, 0.225},
	}
}
