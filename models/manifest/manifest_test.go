package manifest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const good = `{
  "name": "vit", "kind": "embedder", "model": "embedder.onnx",
  "inputs": ["images"], "output": "embeddings", "dim": 384, "normalized": true,
  "distance": "euclidean",
  "preprocess": {"resize": "shorter_side", "resize_to": 224, "filter": "bicubic", "crop_size": 224,
                 "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
}`

func TestParse(t *testing.T) {
	m, err := Parse([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if m.Preprocess != ImageNet() || m.Dim != 384 || m.Inputs[0] != "images" {
		t.Fatalf("parsed %+v", m)
	}
	for _, c := range []struct{ name, edit, want string }{
		{"unknown field", `"dim": 384,`, `unknown field "dims"`},
		{"kind", `"kind": "embedder"`, `kind must be`},
		{"pairwise shape", `"kind": "embedder"`, `exactly two inputs`},
		{"distance", `"distance": "euclidean"`, `distance of an embedder`},
		{"dim", `"dim": 384`, `dim must be ≥ 1`},
		{"crop", `"crop_size": 224`, `crop_size must be`},
		{"resize below crop", `"resize_to": 224`, `resize_to (100) must be ≥ crop_size`},
		{"std", `"std": [0.229`, `std[0] must be > 0`},
		{"filter", `"filter": "bicubic"`, `filter must be "bicubic"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			repl := map[string]string{
				"unknown field":     `"dims": 384,`,
				"kind":              `"kind": "ranker"`,
				"pairwise shape":    `"kind": "pairwise"`,
				"distance":          `"distance": "cosine"`,
				"dim":               `"dim": 0`,
				"crop":              `"crop_size": 0`,
				"resize below crop": `"resize_to": 100`,
				"std":               `"std": [0`,
				"filter":            `"filter": "bilinear"`,
			}[c.name]
			_, err := Parse([]byte(strings.Replace(good, c.edit, repl, 1)))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Parse = %v, want an error containing %q", err, c.want)
			}
		})
	}
}

func TestValidateReportsEverything(t *testing.T) {
	err := (&Manifest{Kind: KindEmbedder}).Validate()
	if err == nil {
		t.Fatal("empty manifest accepted")
	}
	for _, want := range []string{"name is empty", "model (the ONNX file) is empty", "exactly one input", "output is empty", "resize must be"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
}

func TestLoadBesideONNX(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "embedder.json"), []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(dir, "embedder.json"), filepath.Join(dir, "embedder.onnx")} {
		m, err := Load(p)
		if err != nil {
			t.Fatal(err)
		}
		if m.Model != filepath.Join(dir, "embedder.onnx") {
			t.Errorf("Load(%s).Model = %s, want the ONNX file beside the manifest", p, m.Model)
		}
	}
	if _, err := Load(filepath.Join(dir, "missing.onnx")); err == nil || !strings.Contains(err.Error(), "needs a manifest beside it") {
		t.Errorf("Load of a model without manifest = %v", err)
	}
}
