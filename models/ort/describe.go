package ort

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// ModelInfo is what is learnt about an ONNX file before a session loads it.
type ModelInfo struct {
	// SHA256 is the file's hex SHA-256.
	SHA256 string
	// Inputs and Outputs are the graph's, as Inspect reports them.
	Inputs, Outputs []TensorInfo
}

type describeKey struct {
	path  string
	size  int64
	mtime time.Time
}

var described = struct {
	sync.Mutex
	m map[describeKey]ModelInfo
}{m: map[describeKey]ModelInfo{}}

// Describe hashes and inspects an ONNX file once per process and version of the file (path,
// size, modification time): a job's preflight and the workers that share its process (local
// runners) then read and parse a large model once. Init must have succeeded.
func Describe(path string) (ModelInfo, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return ModelInfo{}, fmt.Errorf("ONNX model path %s: %w", path, err)
	}
	st, err := os.Stat(abs)
	if err != nil {
		return ModelInfo{}, fmt.Errorf("ONNX model: %w", err)
	}
	key := describeKey{abs, st.Size(), st.ModTime()}
	described.Lock()
	info, ok := described.m[key]
	described.Unlock()
	if !ok {
		if info.SHA256, err = FileSHA256(abs); err != nil {
			return ModelInfo{}, err
		}
		if info.Inputs, info.Outputs, err = Inspect(abs); err != nil {
			return ModelInfo{}, err
		}
		described.Lock()
		described.m[key] = info
		described.Unlock()
	}
	return ModelInfo{SHA256: info.SHA256, Inputs: cloneInfos(info.Inputs), Outputs: cloneInfos(info.Outputs)}, nil
}
