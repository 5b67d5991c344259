package pipelines

import "github.com/stirpipe/stirpipe/models/ort"

// Workers says where a stage's DoFns run, which decides what its preflight can check here.
// The zero value means in this process (prism's LOOPBACK, the direct runner).
type Workers struct {
	// Separate is set when the runner starts worker processes of its own (a job server's
	// PROCESS, EXTERNAL or DOCKER environments, Dataflow). They load the ONNX Runtime of
	// their own machine or image ($STIR_ONNXRUNTIME_LIB), so --onnxruntime_lib is the
	// launcher's alone, and a GPU is looked for on the workers, not here.
	Separate bool
}

// preflight is the runtime the launcher checks a model with: the stage's own, or the CPU
// when the execution provider is the workers' business.
func (w Workers) preflight(o ort.Options) ort.Options {
	if w.Separate {
		o.Provider = ort.ProviderCPU
	}
	return o
}

// library is the ONNX Runtime library the workers are told to load.
func (w Workers) library(launcher string) string {
	if w.Separate {
		return ""
	}
	return launcher
}
