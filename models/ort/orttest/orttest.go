// Package orttest starts the tests of a package that needs the real ONNX Runtime library.
package orttest

import (
	"fmt"
	"os"
	"testing"

	"github.com/stirpipe/stirpipe/models/ort"
)

// Main loads the ONNX Runtime library the way the program finds it ($STIR_ONNXRUNTIME_LIB,
// then .local/onnxruntime, then the system) and runs the tests; without the library it
// stops them all, saying which package needed it and how to install it. Call it from
// TestMain.
func Main(m *testing.M, pkg string) {
	p, err := ort.LibraryPath("")
	if err == nil {
		err = ort.Init(p)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s tests need the ONNX Runtime library (make ort): %v\n", pkg, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}
