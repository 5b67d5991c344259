package ort

import (
	"errors"
	"fmt"
	"strconv"

	ortgo "github.com/yalue/onnxruntime_go"
)

// Execution providers.
const (
	// ProviderCPU runs on the CPU (the default).
	ProviderCPU = "cpu"
	// ProviderCUDA runs on an NVIDIA GPU and fails when the library has no CUDA provider.
	ProviderCUDA = "cuda"
	// ProviderAuto uses CUDA when the library and machine provide it, else the CPU;
	// Session.Provider says which was used.
	ProviderAuto = "auto"
)

// Graph optimisation levels (ONNX Runtime's GraphOptimizationLevel).
const (
	// OptAll enables every graph optimisation, including layout changes (the default).
	OptAll = "all"
	// OptExtended enables basic plus extended (fusion) optimisations.
	OptExtended = "extended"
	// OptBasic enables only semantics-preserving basic optimisations (constant folding, …).
	OptBasic = "basic"
	// OptDisabled runs the graph as stored.
	OptDisabled = "disabled"
)

// ErrNoCUDA is wrapped by errors when CUDA was requested but the loaded library or machine
// cannot provide it.
var ErrNoCUDA = errors.New("CUDA execution provider unavailable")

// cudaHint tells a person how to get a CUDA-capable library.
const cudaHint = "the library `make ort` installs has no CUDA provider libraries beside it; run on the GPU worker image " +
	"(launch/container/Dockerfile, target gpu), or put ONNX Runtime " + MinVersion + "'s GPU build (libonnxruntime.so with " +
	"libonnxruntime_providers_shared.so and libonnxruntime_providers_cuda.so beside it; CUDA 12 and cuDNN 9 on the " +
	"loader's path) in place and point --onnxruntime_lib at it; or use --provider=cpu"

// Options are the documented session settings. The zero value means: ONNX Runtime's default
// thread counts, all graph optimisations, CPU.
type Options struct {
	// IntraOpThreads is the thread count used inside one operator; 0 = ONNX Runtime's
	// default (one per physical core).
	IntraOpThreads int `json:"intra_op_threads,omitempty"`
	// InterOpThreads is the thread count across independent operators; 0 = default. It
	// only matters for graphs with parallel branches.
	InterOpThreads int `json:"inter_op_threads,omitempty"`
	// GraphOptLevel is "all" (default when empty), "extended", "basic" or "disabled".
	GraphOptLevel string `json:"graph_opt_level,omitempty"`
	// Provider is "cpu" (default when empty), "cuda" or "auto".
	Provider string `json:"provider,omitempty"`
	// CUDADevice is the GPU ordinal for the CUDA provider.
	CUDADevice int `json:"cuda_device,omitempty"`
	// Spin lets ONNX Runtime's thread pools spin-wait for work between operators. Off by
	// default: spinning threads take CPU time the rest of the worker (image decoding, other
	// bundles) needs, and even a plain loop of ViT-S/16 passes on 2 cores was faster
	// without it (19.2 vs 17.0 images/s).
	Spin bool `json:"spin,omitempty"`
}

// Normalized returns o with empty fields replaced by their defaults, so that equal settings
// compare equal.
func (o Options) Normalized() Options {
	if o.GraphOptLevel == "" {
		o.GraphOptLevel = OptAll
	}
	if o.Provider == "" {
		o.Provider = ProviderCPU
	}
	if o.Provider == ProviderCPU {
		o.CUDADevice = 0
	}
	return o
}

// Validate reports every invalid field at once.
func (o Options) Validate() error {
	o = o.Normalized()
	var errs []error
	if o.IntraOpThreads < 0 {
		errs = append(errs, fmt.Errorf("intra-op threads must be ≥ 0 (0 = ONNX Runtime default), got %d", o.IntraOpThreads))
	}
	if o.InterOpThreads < 0 {
		errs = append(errs, fmt.Errorf("inter-op threads must be ≥ 0 (0 = ONNX Runtime default), got %d", o.InterOpThreads))
	}
	if _, ok := optLevels[o.GraphOptLevel]; !ok {
		errs = append(errs, fmt.Errorf("graph optimisation level must be %q, %q, %q or %q, got %q",
			OptAll, OptExtended, OptBasic, OptDisabled, o.GraphOptLevel))
	}
	switch o.Provider {
	case ProviderCPU, ProviderCUDA, ProviderAuto:
	default:
		errs = append(errs, fmt.Errorf("execution provider must be %q, %q or %q, got %q",
			ProviderCPU, ProviderCUDA, ProviderAuto, o.Provider))
	}
	if o.CUDADevice < 0 {
		errs = append(errs, fmt.Errorf("CUDA device must be ≥ 0, got %d", o.CUDADevice))
	}
	return errors.Join(errs...)
}

var optLevels = map[string]ortgo.GraphOptimizationLevel{
	OptAll:      ortgo.GraphOptimizationLevelEnableAll,
	OptExtended: ortgo.GraphOptimizationLevelEnableExtended,
	OptBasic:    ortgo.GraphOptimizationLevelEnableBasic,
	OptDisabled: ortgo.GraphOptimizationLevelDisableAll,
}

// NewSessionOptions builds onnxruntime_go session options from o; the caller destroys them.
// provider is the execution provider actually configured ("cpu" or "cuda"): with "auto" it
// is "cpu" when CUDA is unavailable. A "cuda" request the library cannot serve returns an
// error wrapping ErrNoCUDA.
func NewSessionOptions(o Options) (_ *ortgo.SessionOptions, provider string, err error) {
	o = o.Normalized()
	if err := o.Validate(); err != nil {
		return nil, "", fmt.Errorf("session options: %w", err)
	}
	if !ortgo.IsInitialized() {
		return nil, "", errNotInitialized
	}
	so, err := ortgo.NewSessionOptions()
	if err != nil {
		return nil, "", fmt.Errorf("create session options: %w", err)
	}
	defer func() {
		if err != nil {
			so.Destroy()
		}
	}()
	if o.IntraOpThreads > 0 {
		if err := so.SetIntraOpNumThreads(o.IntraOpThreads); err != nil {
			return nil, "", fmt.Errorf("set intra-op threads %d: %w", o.IntraOpThreads, err)
		}
	}
	if o.InterOpThreads > 0 {
		if err := so.SetInterOpNumThreads(o.InterOpThreads); err != nil {
			return nil, "", fmt.Errorf("set inter-op threads %d: %w", o.InterOpThreads, err)
		}
	}
	if !o.Spin {
		for _, k := range []string{"session.intra_op.allow_spinning", "session.inter_op.allow_spinning"} {
			if err := so.AddSessionConfigEntry(k, "0"); err != nil {
				return nil, "", fmt.Errorf("session config %s=0: %w", k, err)
			}
		}
	}
	if err := so.SetGraphOptimizationLevel(optLevels[o.GraphOptLevel]); err != nil {
		return nil, "", fmt.Errorf("set graph optimisation level %q: %w", o.GraphOptLevel, err)
	}
	provider = ProviderCPU
	if o.Provider == ProviderCUDA || o.Provider == ProviderAuto {
		cudaErr := appendCUDA(so, o.CUDADevice)
		switch {
		case cudaErr == nil:
			provider = ProviderCUDA
		case o.Provider == ProviderCUDA:
			return nil, "", cudaErr
		}
	}
	return so, provider, nil
}

// Usable reports whether sessions with o can be created with the loaded library: o is valid
// and its execution provider is available. Init must have succeeded.
func (o Options) Usable() error {
	so, _, err := NewSessionOptions(o)
	if err != nil {
		return err
	}
	return so.Destroy()
}

// appendCUDA adds the CUDA execution provider for device to so.
func appendCUDA(so *ortgo.SessionOptions, device int) error {
	wrap := func(step string, err error) error {
		return fmt.Errorf("%w: CUDA was requested (device %d) but the ONNX Runtime library %s cannot provide it (%s: %v); %s",
			ErrNoCUDA, device, LoadedLibrary(), step, err, cudaHint)
	}
	co, err := ortgo.NewCUDAProviderOptions()
	if err != nil {
		return wrap("create CUDA provider options", err)
	}
	defer co.Destroy()
	if err := co.Update(map[string]string{"device_id": strconv.Itoa(device)}); err != nil {
		return wrap("set device_id", err)
	}
	if err := so.AppendExecutionProviderCUDA(co); err != nil {
		return wrap("append CUDA provider", err)
	}
	return nil
}
