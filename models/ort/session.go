package ort

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"

	ortgo "github.com/yalue/onnxruntime_go"
)

// ErrClosed is returned by Run on a closed session.
var ErrClosed = errors.New("ort: session is closed")

// TensorInfo describes one graph input or output as ONNX Runtime reports it.
type TensorInfo struct {
	// Name is the graph input or output name.
	Name string
	// IsTensor is false for sequences, maps and other non-tensor values.
	IsTensor bool
	// ElemType is the element type: "float32", "float64", "int64", … (ONNX Runtime's
	// name for types without a short one).
	ElemType string
	// Shape holds the dimensions; -1 marks a dynamic (symbolic) dimension.
	Shape []int64
}

// String formats the info as `name float32[-1,3,224,224]`.
func (t TensorInfo) String() string {
	if !t.IsTensor {
		return t.Name + " (not a tensor)"
	}
	dims := make([]string, len(t.Shape))
	for i, d := range t.Shape {
		dims[i] = fmt.Sprint(d)
	}
	return fmt.Sprintf("%s %s[%s]", t.Name, t.ElemType, strings.Join(dims, ","))
}

var elemTypeNames = map[ortgo.TensorElementDataType]string{
	ortgo.TensorElementDataTypeFloat:    "float32",
	ortgo.TensorElementDataTypeDouble:   "float64",
	ortgo.TensorElementDataTypeFloat16:  "float16",
	ortgo.TensorElementDataTypeBFloat16: "bfloat16",
	ortgo.TensorElementDataTypeInt8:     "int8",
	ortgo.TensorElementDataTypeUint8:    "uint8",
	ortgo.TensorElementDataTypeInt16:    "int16",
	ortgo.TensorElementDataTypeUint16:   "uint16",
	ortgo.TensorElementDataTypeInt32:    "int32",
	ortgo.TensorElementDataTypeUint32:   "uint32",
	ortgo.TensorElementDataTypeInt64:    "int64",
	ortgo.TensorElementDataTypeUint64:   "uint64",
	ortgo.TensorElementDataTypeBool:     "bool",
	ortgo.TensorElementDataTypeString:   "string",
}

func tensorInfo(i ortgo.InputOutputInfo) TensorInfo {
	t := TensorInfo{
		Name:     i.Name,
		IsTensor: i.OrtValueType == ortgo.ONNXTypeTensor,
		Shape:    slices.Clone([]int64(i.Dimensions)),
	}
	if name, ok := elemTypeNames[i.DataType]; ok {
		t.ElemType = name
	} else {
		t.ElemType = i.DataType.String()
	}
	return t
}

// Inspect loads modelPath into a throw-away session (no graph optimisation, one thread) and
// returns the graph's inputs and outputs. Init must have succeeded.
func Inspect(modelPath string) (inputs, outputs []TensorInfo, err error) {
	if !Initialized() {
		return nil, nil, errNotInitialized
	}
	so, _, err := NewSessionOptions(Options{IntraOpThreads: 1, InterOpThreads: 1, GraphOptLevel: OptDisabled})
	if err != nil {
		return nil, nil, err
	}
	defer so.Destroy()
	ins, outs, err := ortgo.GetInputOutputInfoWithOptions(modelPath, so)
	if err != nil {
		return nil, nil, fmt.Errorf("load ONNX model %s: %w", modelPath, err)
	}
	for _, i := range ins {
		inputs = append(inputs, tensorInfo(i))
	}
	for _, o := range outs {
		outputs = append(outputs, tensorInfo(o))
	}
	return inputs, outputs, nil
}

// GraphError reports requested input or output names that the graph lacks or that are not
// float32 tensors. It carries the graph's real inputs and outputs so callers can explain the
// mismatch in their own terms (e.g. models/imagemodel names manifest fields).
type GraphError struct {
	// Model is the ONNX file.
	Model string
	// Problems lists every mismatch found.
	Problems []string
	// Inputs and Outputs are the graph's real inputs and outputs.
	Inputs, Outputs []TensorInfo
}

// Error lists the problems and the graph's real inputs and outputs.
func (e *GraphError) Error() string {
	return fmt.Sprintf("ONNX model %s: %s (graph inputs: %s; graph outputs: %s)",
		e.Model, strings.Join(e.Problems, "; "), infoList(e.Inputs), infoList(e.Outputs))
}

func infoList(infos []TensorInfo) string {
	parts := make([]string, len(infos))
	for i, t := range infos {
		parts[i] = t.String()
	}
	return strings.Join(parts, ", ")
}

// Session is one ONNX model loaded for fixed input and output names. Run is safe for
// concurrent use; Close waits for running calls to finish.
type Session struct {
	path          string
	sha256        string
	opts          Options
	provider      string
	inputNames    []string
	outputNames   []string
	graphInputs   []TensorInfo
	graphOutputs  []TensorInfo
	boundInputs   []TensorInfo
	boundOutputs  []TensorInfo
	mu            sync.RWMutex // Run holds it shared, Close exclusively
	pass          sync.Mutex   // one forward pass at a time
	s             *ortgo.DynamicAdvancedSession
	sharedKey     *SessionKey // non-nil for sessions from Acquire
	sharedRelease bool        // set by Release before it closes a shared session
}

// NewSession loads modelPath for the given input and output names (each must be a float32
// tensor of the graph; otherwise a *GraphError lists every problem). The caller closes it.
// Prefer Acquire when several users in one process run the same model.
func NewSession(modelPath string, inputs, outputs []string, opts Options) (*Session, error) {
	if !Initialized() {
		return nil, errNotInitialized
	}
	opts = opts.Normalized()
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("ONNX model %s: %w", modelPath, err)
	}
	if len(inputs) == 0 || len(outputs) == 0 {
		return nil, fmt.Errorf("ONNX model %s: need at least one input and one output name, got %q and %q", modelPath, inputs, outputs)
	}
	info, err := Describe(modelPath)
	if err != nil {
		return nil, err
	}
	gIn, gOut := info.Inputs, info.Outputs
	s := &Session{
		path: modelPath, sha256: info.SHA256, opts: opts,
		inputNames: slices.Clone(inputs), outputNames: slices.Clone(outputs),
		graphInputs: gIn, graphOutputs: gOut,
	}
	var problems []string
	bind := func(names []string, graph []TensorInfo, kind string) []TensorInfo {
		var bound []TensorInfo
		for _, n := range names {
			i := slices.IndexFunc(graph, func(t TensorInfo) bool { return t.Name == n })
			switch {
			case i < 0:
				problems = append(problems, fmt.Sprintf("graph has no %s %q", kind, n))
			case !graph[i].IsTensor || graph[i].ElemType != "float32":
				problems = append(problems, fmt.Sprintf("%s %q is %s, want a float32 tensor", kind, n, graph[i]))
			default:
				bound = append(bound, graph[i])
			}
		}
		return bound
	}
	s.boundInputs = bind(inputs, gIn, "input")
	s.boundOutputs = bind(outputs, gOut, "output")
	if len(problems) > 0 {
		return nil, &GraphError{Model: modelPath, Problems: problems, Inputs: gIn, Outputs: gOut}
	}
	so, provider, err := NewSessionOptions(opts)
	if err != nil {
		return nil, fmt.Errorf("ONNX model %s: %w", modelPath, err)
	}
	defer so.Destroy()
	s.provider = provider
	s.s, err = ortgo.NewDynamicAdvancedSession(modelPath, inputs, outputs, so)
	if err != nil {
		return nil, fmt.Errorf("create ONNX Runtime session for %s (provider %s): %w", modelPath, provider, err)
	}
	return s, nil
}

// Path returns the ONNX file the session was loaded from.
func (s *Session) Path() string { return s.path }

// ModelSHA256 returns the hex SHA-256 of the ONNX file, computed when the session was created.
func (s *Session) ModelSHA256() string { return s.sha256 }

// Options returns the normalised options the session was created with.
func (s *Session) Options() Options { return s.opts }

// Provider returns the execution provider in use: "cpu" or "cuda".
func (s *Session) Provider() string { return s.provider }

// InputNames returns the input names Run's inputs correspond to, in order.
func (s *Session) InputNames() []string { return slices.Clone(s.inputNames) }

// OutputNames returns the output names Run's outputs correspond to, in order.
func (s *Session) OutputNames() []string { return slices.Clone(s.outputNames) }

// Inputs describes the bound inputs, in InputNames order.
func (s *Session) Inputs() []TensorInfo { return cloneInfos(s.boundInputs) }

// Outputs describes the bound outputs, in OutputNames order.
func (s *Session) Outputs() []TensorInfo { return cloneInfos(s.boundOutputs) }

// GraphInputs describes every input of the graph.
func (s *Session) GraphInputs() []TensorInfo { return cloneInfos(s.graphInputs) }

// GraphOutputs describes every output of the graph.
func (s *Session) GraphOutputs() []TensorInfo { return cloneInfos(s.graphOutputs) }

func cloneInfos(in []TensorInfo) []TensorInfo {
	out := slices.Clone(in)
	for i := range out {
		out[i].Shape = slices.Clone(out[i].Shape)
	}
	return out
}

// Run runs the model once. inputs and outputs follow InputNames and OutputNames. An output
// may be nil: ONNX Runtime then allocates it and Run stores it in outputs (the caller
// destroys it). Preallocated outputs must have the exact output shape. Safe for concurrent
// use, but forward passes are serialised: each already uses the session's IntraOpThreads
// cores, and the DoFn instances of one worker process (for instance a bundle the runner
// split off) would otherwise run passes side by side on the same cores, each slower and
// each with its own activation memory. A panic inside ONNX Runtime's Go wrapper becomes an
// error.
func (s *Session) Run(inputs, outputs []*Tensor) (err error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.s == nil {
		return ErrClosed
	}
	if len(inputs) != len(s.inputNames) || len(outputs) != len(s.outputNames) {
		return fmt.Errorf("run %s: got %d inputs and %d outputs, want %d (%q) and %d (%q)",
			s.path, len(inputs), len(outputs), len(s.inputNames), s.inputNames, len(s.outputNames), s.outputNames)
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("run %s: panic in ONNX Runtime wrapper: %v", s.path, r)
		}
	}()
	in := make([]ortgo.Value, len(inputs))
	for i, t := range inputs {
		if t == nil || t.t == nil {
			return fmt.Errorf("run %s: input %q is nil or destroyed", s.path, s.inputNames[i])
		}
		in[i] = t.t
	}
	out := make([]ortgo.Value, len(outputs))
	for i, t := range outputs {
		if t != nil {
			if t.t == nil {
				return fmt.Errorf("run %s: output %q is destroyed", s.path, s.outputNames[i])
			}
			out[i] = t.t
		}
	}
	if err := s.runPass(in, out); err != nil {
		destroyAllocated(outputs, out)
		return fmt.Errorf("run %s: %w", s.path, err)
	}
	for i, t := range outputs {
		if t != nil {
			continue
		}
		ft, ok := out[i].(*ortgo.Tensor[float32])
		if !ok {
			destroyAllocated(outputs, out)
			return fmt.Errorf("run %s: output %q is not a float32 tensor", s.path, s.outputNames[i])
		}
		outputs[i] = &Tensor{t: ft}
	}
	return nil
}

// runPass runs one forward pass, after any other in progress.
func (s *Session) runPass(in, out []ortgo.Value) error {
	s.pass.Lock()
	defer s.pass.Unlock()
	return s.s.Run(in, out)
}

// destroyAllocated frees the values ONNX Runtime allocated for nil outputs.
func destroyAllocated(outputs []*Tensor, out []ortgo.Value) {
	for i, t := range outputs {
		if t == nil && out[i] != nil {
			out[i].Destroy()
			out[i] = nil
		}
	}
}

// Close frees the session after running calls finish; later Runs return ErrClosed. Sessions
// from Acquire are closed by Release, not Close.
func (s *Session) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sharedKey != nil && !s.sharedRelease {
		return fmt.Errorf("close %s: session is shared; call ort.Release instead", s.path)
	}
	if s.s == nil {
		return nil
	}
	err := s.s.Destroy()
	s.s = nil
	if err != nil {
		return fmt.Errorf("close %s: %w", s.path, err)
	}
	return nil
}

// Closed reports whether the session has been closed.
func (s *Session) Closed() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.s == nil
}

// Tensor is a float32 tensor backed by a Go slice that ONNX Runtime reads or writes in place.
type Tensor struct {
	t *ortgo.Tensor[float32]
}

// NewTensor wraps data (not copied) as a tensor of the given shape; data must hold at least
// the shape's element count, and must not be modified while a Run reads it. With nil data a
// zeroed slice is allocated. Init must have succeeded. The caller destroys the tensor.
func NewTensor(shape []int64, data []float32) (*Tensor, error) {
	if !ortgo.IsInitialized() {
		return nil, errNotInitialized
	}
	s := ortgo.NewShape(shape...)
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("tensor shape %v: %w", shape, err)
	}
	if data == nil {
		data = make([]float32, s.FlattenedSize())
	}
	t, err := ortgo.NewTensor(s, data)
	if err != nil {
		return nil, fmt.Errorf("tensor shape %v: %w", shape, err)
	}
	return &Tensor{t: t}, nil
}

// Data returns the tensor's backing slice.
func (t *Tensor) Data() []float32 { return t.t.GetData() }

// Shape returns a copy of the tensor's shape.
func (t *Tensor) Shape() []int64 { return []int64(t.t.GetShape()) }

// Destroy frees the ONNX Runtime value; the Go slice stays with its owner.
func (t *Tensor) Destroy() {
	if t != nil && t.t != nil {
		t.t.Destroy()
		t.t = nil
	}
}

// FileSHA256 returns the hex SHA-256 of a file's bytes, for provenance.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("hash model file: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash model file %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
