// Package zoo locates the models committed under models/zoo and reads their golden files.
//
// Each model directory holds an ONNX graph with its manifest (embedder.onnx + embedder.json,
// see models/manifest) and, under golden/, reference outputs produced by the Python recipe
// (models/recipe/golden.py): source images, the uint8 224×224 crops PIL/torchvision made of
// them, and the torch model's embeddings. A STIR pair (stir-tiny: embedder + pairwise
// model) has golden/pairwise.json instead (models/recipe/golden_pairwise.py, LoadPairwiseGolden):
// the same per-image fields plus torch's pair logits and the expected reranking. The tests of
// this package check the Go preprocessing and ONNX Runtime against those references; other
// packages' tests use Dir, LoadGolden and LoadPairwiseGolden to get a real model and real
// expected outputs.
//
// The paths come from the location of this source file at build time, so they serve tests
// and development tools run from a source checkout, not deployed binaries.
package zoo

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
)

// TinyEmbedderName is the directory of the committed tiny ViT embedder (models/recipe, config "tiny").
const TinyEmbedderName = "vit-tiny"

// Dir returns the absolute path of the models/zoo directory of the source tree this package
// was compiled from, or "" when the build did not record an absolute source path (-trimpath).
func Dir() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok || !filepath.IsAbs(file) {
		return ""
	}
	return filepath.Dir(file)
}

// ModelPath returns the path of a committed model's ONNX file, e.g.
// ModelPath(TinyEmbedderName, "embedder.onnx"), checking that it exists.
func ModelPath(model, file string) (string, error) {
	dir := Dir()
	if dir == "" {
		return "", errors.New("zoo: source location unknown (built with -trimpath?); zoo paths only work from a source checkout")
	}
	p := filepath.Join(dir, model, file)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("zoo: %w", err)
	}
	return p, nil
}

// Golden is models/zoo/<model>/golden/golden.json (written by models/recipe/golden.py).
type Golden struct {
	// Dir is the golden directory; the relative paths of Images resolve against it.
	Dir string `json:"-"`
	// Description says how the file was produced.
	Description string `json:"description"`
	// Model identifies the ONNX graph the embeddings belong to.
	Model GoldenModel `json:"model"`
	// Preprocess repeats the transform's sizes and normalisation.
	Preprocess GoldenPreprocess `json:"preprocess"`
	// ProducedBy records the command and library versions.
	ProducedBy map[string]string `json:"produced_by"`
	// Images are the reference cases.
	Images []GoldenImage `json:"images"`
}

// GoldenModel identifies the model of a golden file.
type GoldenModel struct {
	// ONNX is the graph, relative to the golden directory.
	ONNX string `json:"onnx"`
	// SHA256 is the hex SHA-256 of the ONNX file's bytes.
	SHA256 string `json:"sha256"`
	// Manifest is the manifest, relative to the golden directory.
	Manifest string `json:"manifest"`
	// Name is the manifest's model name.
	Name string `json:"name"`
	// Config is the recipe configuration ("tiny", "tiny-d4", "vits16", …: vit.CONFIGS).
	Config string `json:"config"`
	// Seed is the random-init seed, nil for a checkpoint.
	Seed *int `json:"seed"`
	// CheckpointSHA256 is the hex SHA-256 of the loaded checkpoint, nil for random weights.
	CheckpointSHA256 *string `json:"checkpoint_sha256"`
}

// GoldenPreprocess is the transform the references were made with.
type GoldenPreprocess struct {
	// ResizeTo is the shorter side after resizing.
	ResizeTo int `json:"resize_to"`
	// CropSize is the side of the centre crop.
	CropSize int `json:"crop_size"`
	// Mean and Std normalise each RGB channel after scaling to [0,1].
	Mean [3]float32 `json:"mean"`
	Std  [3]float32 `json:"std"`
}

// GoldenImage is one reference case.
type GoldenImage struct {
	// Source is the input file (original bytes), relative to the golden directory.
	Source string `json:"source"`
	// CatalogPath is the file's path in the synthetic catalog it was taken from; empty for a
	// derived input.
	CatalogPath *string `json:"catalog_path"`
	// DerivedFrom names the catalog file a derived input (another colour mode or encoding)
	// was made from with PIL; nil for catalog files.
	DerivedFrom *string `json:"derived_from"`
	// Format is PIL's name of the file format, lower case ("jpeg", "png").
	Format string `json:"format"`
	// Mode is PIL's colour mode of the decoded file ("RGB", "L", "P", "RGBA").
	Mode string `json:"mode"`
	// Width and Height are the decoded image's size.
	Width  int `json:"width"`
	Height int `json:"height"`
	// BBox is (x_1, y_1, x_2, y_2) = (left, top, right, bottom), or nil for the whole image.
	BBox *[4]int `json:"bbox"`
	// Resized is the size after the shorter-side resize, before the centre crop.
	Resized [2]int `json:"resized"`
	// Preprocessed is PIL's uint8 crop as a PNG, relative to the golden directory.
	Preprocessed string `json:"preprocessed"`
	// TensorSHA256 is the hex SHA-256 of torch's normalised float32 CHW tensor (little endian).
	TensorSHA256 string `json:"tensor_sha256"`
	// Embedding is the torch model's output for that tensor.
	Embedding []float32 `json:"embedding"`
}

// LoadGolden reads and checks models/zoo/<model>/golden/golden.json.
func LoadGolden(model string) (*Golden, error) {
	var g Golden
	if err := loadGoldenFile(model, "golden.json", &g, &g.Dir, g.validate); err != nil {
		return nil, err
	}
	return &g, nil
}

// loadGoldenFile decodes models/zoo/<model>/golden/<file> into v, rejecting unknown
// fields, sets *dir to the golden directory and runs validate.
func loadGoldenFile(model, file string, v any, dir *string, validate func() error) error {
	p, err := ModelPath(model, filepath.Join("golden", file))
	if err != nil {
		return err
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return fmt.Errorf("zoo: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("zoo: %s: %w", p, err)
	}
	*dir = filepath.Dir(p)
	if err := validate(); err != nil {
		return fmt.Errorf("zoo: %s: %w", p, err)
	}
	return nil
}

// Path resolves a path of the golden file (Source, Preprocessed, Model.ONNX) to a file path.
func (g *Golden) Path(rel string) string { return filepath.Join(g.Dir, filepath.FromSlash(rel)) }

func (g *Golden) validate() error {
	var errs []error
	if len(g.Images) == 0 {
		errs = append(errs, errors.New("no images"))
	}
	if g.Model.ONNX == "" || len(g.Model.SHA256) != 64 {
		errs = append(errs, fmt.Errorf("model needs onnx and a 64-digit sha256, got %q, %q", g.Model.ONNX, g.Model.SHA256))
	}
	dim := -1
	for i, im := range g.Images {
		if im.Source == "" || im.Preprocessed == "" {
			errs = append(errs, fmt.Errorf("images[%d]: source and preprocessed are required", i))
		}
		if dim < 0 {
			dim = len(im.Embedding)
		}
		if len(im.Embedding) == 0 || len(im.Embedding) != dim {
			errs = append(errs, fmt.Errorf("images[%d] (%s): embedding has %d values, want %d", i, im.Source, len(im.Embedding), dim))
		}
		if b := im.BBox; b != nil && (b[0] < 0 || b[1] < 0 || b[0] >= b[2] || b[1] >= b[3]) {
			errs = append(errs, fmt.Errorf("images[%d] (%s): bbox %v is not (left, top, right, bottom) with left<right, top<bottom", i, im.Source, *b))
		}
	}
	return errors.Join(errs...)
}
