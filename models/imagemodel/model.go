// Package imagemodel runs an ONNX model over batches of preprocessed images, described by
// a manifest (models/manifest): the embedder, whose output is one embedding per image, or
// the STIR pairwise model, whose graph takes two image batches (models/pairwise wraps it).
//
// OpenEmbedder and Open check the manifest against the graph's real input and output
// shapes before any image is read, and share one ONNX Runtime session per model and
// options across every Model of the process (models/ort Acquire/Release): a DoFn opens its
// Model in Setup and closes it in Teardown. Embed is safe for concurrent use.
package imagemodel

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/stirpipe/stirpipe/models/manifest"
	"github.com/stirpipe/stirpipe/models/ort"
)

// NormTolerance is how far from 1 an output's L2 norm may be when the manifest says the
// model normalises its outputs.
const NormTolerance = 1e-3

// Model runs one image model: an embedder, or a pairwise model.
type Model struct {
	m          manifest.Manifest
	s          *ort.Session
	dim        int
	crop       int
	itemLen    int // floats per image: 3·crop·crop
	fixedBatch int // 0 when the graph's batch axis is dynamic

	closeMu sync.Mutex
	closed  atomic.Bool
}

// OpenEmbedder validates m, an embedder's manifest, acquires the shared session for its
// model and checks the graph against m: the input is float32 [batch,3,crop_size,crop_size] and the output float32 [batch,dim]
// (-1 = dynamic accepted for every axis; a fixed batch is recorded and enforced by Embed).
// Every mismatch is reported at once, naming the manifest field and the graph's value. ort.Init
// must have succeeded. The caller closes the Model.
func OpenEmbedder(m *manifest.Manifest, opts ort.Options) (*Model, error) {
	if err := validate(m, manifest.KindEmbedder); err != nil {
		return nil, err
	}
	return openModel(m, opts)
}

// Open is OpenEmbedder for a model of any kind: an embedder, or a pairwise model whose two
// inputs are both image batches. Use RunInto to feed every input.
func Open(m *manifest.Manifest, opts ort.Options) (*Model, error) {
	if err := validate(m, ""); err != nil {
		return nil, err
	}
	return openModel(m, opts)
}

// VerifyEmbedder makes OpenEmbedder's checks (manifest, graph, session options) without creating the session,
// whose graph optimisation takes seconds for a large model, and returns the ONNX file's
// SHA-256: the preflight of a job whose workers open the model later.
func VerifyEmbedder(m *manifest.Manifest, opts ort.Options) (sha256 string, err error) {
	if err := validate(m, manifest.KindEmbedder); err != nil {
		return "", err
	}
	return verifyModel(m, opts)
}

// Verify is VerifyEmbedder for a model of any kind, as Open.
func Verify(m *manifest.Manifest, opts ort.Options) (sha256 string, err error) {
	if err := validate(m, ""); err != nil {
		return "", err
	}
	return verifyModel(m, opts)
}

// validate checks m and, unless kind is empty, its kind.
func validate(m *manifest.Manifest, kind string) error {
	if m == nil {
		return errors.New("image model: nil manifest")
	}
	if err := m.Validate(); err != nil {
		return fmt.Errorf("image model: manifest %q: %w", m.Name, err)
	}
	if kind != "" && m.Kind != kind {
		return fmt.Errorf("image model: manifest %q has kind %q, want %q", m.Name, m.Kind, kind)
	}
	return nil
}

func verifyModel(m *manifest.Manifest, opts ort.Options) (string, error) {
	if err := opts.Usable(); err != nil {
		return "", fmt.Errorf("embedder %q: %w", m.Name, err)
	}
	info, err := ort.Describe(m.Model)
	if err != nil {
		return "", fmt.Errorf("embedder %q: %w", m.Name, err)
	}
	if _, err := checkGraph(m, info.Inputs, info.Outputs); err != nil {
		return "", mismatch(m, err)
	}
	return info.SHA256, nil
}

func openModel(m *manifest.Manifest, opts ort.Options) (*Model, error) {
	s, err := ort.Acquire(m.Model, m.Inputs, []string{m.Output}, opts)
	if err != nil {
		var ge *ort.GraphError
		if errors.As(err, &ge) {
			if _, cerr := checkGraph(m, ge.Inputs, ge.Outputs); cerr != nil {
				return nil, mismatch(m, cerr)
			}
		}
		return nil, fmt.Errorf("embedder %q: %w", m.Name, err)
	}
	fixed, err := checkGraph(m, s.GraphInputs(), s.GraphOutputs())
	if err != nil {
		_ = ort.Release(s)
		return nil, mismatch(m, err)
	}
	e := &Model{
		m:          cloneManifest(m),
		s:          s,
		dim:        m.Dim,
		crop:       m.Preprocess.CropSize,
		itemLen:    3 * m.Preprocess.CropSize * m.Preprocess.CropSize,
		fixedBatch: fixed,
	}
	return e, nil
}

func mismatch(m *manifest.Manifest, err error) error {
	return fmt.Errorf("embedder %q: ONNX model %s does not match its manifest:\n%w", m.Name, m.Model, err)
}

func cloneManifest(m *manifest.Manifest) manifest.Manifest {
	c := *m
	c.Inputs = slices.Clone(m.Inputs)
	return c
}

// checkGraph compares an embedder manifest with the graph's inputs and outputs and returns
// the fixed batch size (0 when dynamic) or every mismatch joined.
func checkGraph(m *manifest.Manifest, inputs, outputs []ort.TensorInfo) (fixedBatch int, err error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	names := func(infos []ort.TensorInfo) string {
		parts := make([]string, len(infos))
		for i, t := range infos {
			parts[i] = t.String()
		}
		return strings.Join(parts, ", ")
	}
	find := func(infos []ort.TensorInfo, name string) (ort.TensorInfo, bool) {
		i := slices.IndexFunc(infos, func(t ort.TensorInfo) bool { return t.Name == name })
		if i < 0 {
			return ort.TensorInfo{}, false
		}
		return infos[i], true
	}
	dynamic := func(d int64) bool { return d < 1 }
	crop := int64(m.Preprocess.CropSize)
	inBatch := int64(-1)

	for idx, name := range m.Inputs {
		field := fmt.Sprintf("inputs[%d]", idx)
		in, ok := find(inputs, name)
		switch {
		case !ok:
			bad("manifest %s = %q: the graph has no such input (graph inputs: %s)", field, name, names(inputs))
		case !in.IsTensor || in.ElemType != "float32":
			bad("manifest %s = %q: the graph input is %s, want a float32 tensor", field, name, in)
		}
		if !ok || !in.IsTensor {
			continue
		}
		if len(in.Shape) != 4 {
			bad("manifest %s = %q: the graph input has rank %d (%s), want 4: [batch,3,crop_size,crop_size]", field, name, len(in.Shape), in)
			continue
		}
		if idx == 0 {
			inBatch = in.Shape[0]
		} else if in.Shape[0] != inBatch && !(dynamic(in.Shape[0]) && dynamic(inBatch)) {
			bad("manifest %s = %q: the graph input's batch dimension is %s but the first input's is %s", field, name, dimString(in.Shape[0]), dimString(inBatch))
		}
		if c := in.Shape[1]; !dynamic(c) && c != 3 {
			bad("manifest %s = %q: the graph input has %d channels (%s), want 3 (RGB, CHW)", field, name, c, in)
		}
		for i, axis := range []string{"height", "width"} {
			if d := in.Shape[2+i]; !dynamic(d) && d != crop {
				bad("manifest preprocess.crop_size = %d, but the graph input's %s is %d (%s)", crop, axis, d, in)
			}
		}
	}

	out, ok := find(outputs, m.Output)
	switch {
	case !ok:
		bad("manifest output = %q: the graph has no such output (graph outputs: %s)", m.Output, names(outputs))
	case !out.IsTensor || out.ElemType != "float32":
		bad("manifest output = %q: the graph output is %s, want a float32 tensor", m.Output, out)
	}
	if ok && out.IsTensor {
		if len(out.Shape) != 2 {
			bad("manifest output = %q: the graph output has rank %d (%s), want 2: [batch,dim]", m.Output, len(out.Shape), out)
		} else {
			if d := out.Shape[1]; !dynamic(d) && d != int64(m.Dim) {
				bad("manifest dim = %d, but the graph output's last dimension is %d (%s)", m.Dim, d, out)
			}
			if b := out.Shape[0]; !dynamic(b) && b != inBatch {
				bad("manifest output = %q: the graph output's batch dimension is fixed at %d (%s) but the input's is %s",
					m.Output, b, out, dimString(inBatch))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	if !dynamic(inBatch) {
		return int(inBatch), nil
	}
	return 0, nil
}

func dimString(d int64) string {
	if d < 1 {
		return "dynamic"
	}
	return fmt.Sprint(d)
}

// Dim returns the embedding dimension.
func (e *Model) Dim() int { return e.dim }

// InputLen returns the number of float32 values per preprocessed image: 3·crop_size².
func (e *Model) InputLen() int { return e.itemLen }

// FixedBatch returns the batch size the graph requires, or 0 when any batch size works.
func (e *Model) FixedBatch() int { return e.fixedBatch }

// Manifest returns a copy of the manifest the Model was opened with.
func (e *Model) Manifest() *manifest.Manifest {
	c := cloneManifest(&e.m)
	return &c
}

// ModelSHA256 returns the hex SHA-256 of the ONNX file's bytes (computed once per process
// when the shared session was created), for provenance.
func (e *Model) ModelSHA256() string { return e.s.ModelSHA256() }

// Provider returns the execution provider in use: "cpu" or "cuda".
func (e *Model) Provider() string { return e.s.Provider() }

// Session returns the shared ONNX Runtime session (owned by the Model; do not release it).
func (e *Model) Session() *ort.Session { return e.s }

// Embed runs one forward pass over n preprocessed images stored contiguously in batch (each
// CHW float32 of InputLen values, as models/preprocess produces) and returns n embeddings of
// Dim values. The rows share one freshly allocated backing array. Safe for concurrent use.
func (e *Model) Embed(batch []float32, n int) ([][]float32, error) {
	if n < 1 {
		return nil, fmt.Errorf("embedder %q: batch of %d images, want ≥ 1", e.m.Name, n)
	}
	flat := make([]float32, n*e.dim)
	if err := e.EmbedInto(flat, batch, n); err != nil {
		return nil, err
	}
	rows := make([][]float32, n)
	for i := range rows {
		rows[i] = flat[i*e.dim : (i+1)*e.dim : (i+1)*e.dim]
	}
	return rows, nil
}

// EmbedInto is Embed writing the n×Dim embeddings row-major into dst (len n·Dim), so a
// caller can reuse its output buffer. Neither batch nor dst is copied: ONNX Runtime reads
// and writes them in place, so they must not be touched by others during the call.
func (e *Model) EmbedInto(dst, batch []float32, n int) error {
	return e.RunInto(dst, n, batch)
}

// RunInto runs one forward pass over n items, with one batch of n preprocessed images per
// graph input (in manifest order), writing the n×Dim outputs into dst.
func (e *Model) RunInto(dst []float32, n int, batches ...[]float32) error {
	if len(batches) != len(e.m.Inputs) {
		return fmt.Errorf("embedder %q: %d input batches for a model with %d inputs", e.m.Name, len(batches), len(e.m.Inputs))
	}
	switch {
	case e.closed.Load():
		return fmt.Errorf("embedder %q: %w", e.m.Name, ort.ErrClosed)
	case n < 1:
		return fmt.Errorf("embedder %q: batch of %d images, want ≥ 1", e.m.Name, n)
	case e.fixedBatch > 0 && n != e.fixedBatch:
		return fmt.Errorf("embedder %q: model %s has a fixed batch size of %d, got %d images (batch in groups of %d, or re-export the model with a dynamic batch axis)",
			e.m.Name, e.m.Model, e.fixedBatch, n, e.fixedBatch)
	case len(dst) != n*e.dim:
		return fmt.Errorf("embedder %q: output buffer holds %d floats, want %d images × dim %d = %d",
			e.m.Name, len(dst), n, e.dim, n*e.dim)
	}
	ins := make([]*ort.Tensor, len(batches))
	for i, batch := range batches {
		if len(batch) != n*e.itemLen {
			return fmt.Errorf("embedder %q: batch holds %d floats, want %d images × 3×%d×%d = %d",
				e.m.Name, len(batch), n, e.crop, e.crop, n*e.itemLen)
		}
		in, err := ort.NewTensor([]int64{int64(n), 3, int64(e.crop), int64(e.crop)}, batch)
		if err != nil {
			return fmt.Errorf("embedder %q: %w", e.m.Name, err)
		}
		defer in.Destroy()
		ins[i] = in
	}
	out, err := ort.NewTensor([]int64{int64(n), int64(e.dim)}, dst)
	if err != nil {
		return fmt.Errorf("embedder %q: %w", e.m.Name, err)
	}
	defer out.Destroy()
	if err := e.s.Run(ins, []*ort.Tensor{out}); err != nil {
		return fmt.Errorf("embedder %q: %w", e.m.Name, err)
	}
	return nil
}

// Errors of Check: a non-finite embedding is a problem of one item (its image), a norm
// away from 1 is a problem of the model or its manifest.
var (
	ErrNonFinite = errors.New("non-finite embedding")
	ErrNorm      = errors.New("embedding norm disagrees with the manifest")
)

// Check tests one output row: every value finite and, for a model whose manifest says its
// outputs are normalized, an L2 norm within NormTolerance of 1.
func (e *Model) Check(row []float32) error {
	var sq float64
	for j, v := range row {
		f := float64(v)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("embedder %q: %w: value %v at index %d", e.m.Name, ErrNonFinite, v, j)
		}
		sq += f * f
	}
	if norm := math.Sqrt(sq); e.m.Normalized && math.Abs(norm-1) > NormTolerance {
		return fmt.Errorf("embedder %q: %w: L2 norm %.6g, but the manifest says the outputs are normalized (|norm−1| ≤ %g); fix the manifest's \"normalized\" or the model",
			e.m.Name, ErrNorm, norm, NormTolerance)
	}
	return nil
}

// Close releases the shared session (closed when its last user releases it). Calling it
// again does nothing; Embed then fails.
func (e *Model) Close() error {
	e.closeMu.Lock()
	defer e.closeMu.Unlock()
	if e.closed.Load() {
		return nil
	}
	e.closed.Store(true)
	if err := ort.Release(e.s); err != nil {
		return fmt.Errorf("embedder %q: %w", e.m.Name, err)
	}
	return nil
}
