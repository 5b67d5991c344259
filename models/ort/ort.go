// Package ort runs ONNX models with ONNX Runtime through github.com/yalue/onnxruntime_go.
//
// It owns the process-wide pieces: finding the shared library (LibraryPath), loading it once
// and checking its version (Init), turning documented Options into session options, and
// sessions that several goroutines (and several Beam DoFn instances in one worker process)
// share. Tensors are float32 and wrap Go memory without copying.
//
// Typical use in a DoFn:
//
//	func (f *embedFn) Setup() error {
//		if err := ort.Init(f.LibPath); err != nil {
//			return err
//		}
//		s, err := ort.Acquire(f.Model, []string{"images"}, []string{"embeddings"}, f.Options)
//		...
//	}
//	func (f *embedFn) Teardown() error { return ort.Release(f.session) }
package ort

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	ortgo "github.com/yalue/onnxruntime_go"
)

const (
	// RequiredVersion is the ONNX Runtime release that `make ort` installs and the CPU
	// worker image ships.
	RequiredVersion = "1.31.1"
	// MinVersion is the oldest ONNX Runtime release accepted (major.minor): the first to
	// serve APIVersion.
	MinVersion = "1.31"
	// APIVersion is the ORT C API version onnxruntime_go v1.38.0 requests (ORT_API_VERSION).
	APIVersion = 31
	// bindingVersion names the Go binding in messages.
	bindingVersion = "onnxruntime_go v1.38.0"
	// LibraryName is the file name of the shared library, also tried as a plain soname.
	LibraryName = "libonnxruntime.so." + RequiredVersion
	// EnvLibrary is the environment variable naming the shared library.
	EnvLibrary = "STIR_ONNXRUNTIME_LIB"
	// localLibrary is where `make ort` installs the library, relative to the repository root.
	localLibrary = ".local/onnxruntime/" + LibraryName
)

// installHint tells a person how to get a usable library.
const installHint = "run `make ort` to install ONNX Runtime " + RequiredVersion +
	" into .local/onnxruntime/, or point --onnxruntime_lib or " + EnvLibrary +
	" at a libonnxruntime.so of ONNX Runtime ≥ " + MinVersion

// LibraryPath resolves the ONNX Runtime shared library: flagValue if set, else $STIR_ONNXRUNTIME_LIB,
// else .local/onnxruntime/libonnxruntime.so.1.31.1 in the current directory or one of its
// parents, else beside the executable (<exe dir>/../.local/onnxruntime/…, <exe dir>/…,
// <exe dir>/lib/…), else the plain soname for the system loader. A flag or environment
// value containing a slash must name an existing file.
func LibraryPath(flagValue string) (string, error) {
	cwd, _ := os.Getwd()
	exe, _ := os.Executable()
	return libraryPath(flagValue, os.Getenv(EnvLibrary), cwd, exe)
}

// libraryPath is LibraryPath with its inputs explicit, for tests.
func libraryPath(flagValue, envValue, cwd, exe string) (string, error) {
	explicit := func(v, source string) (string, error) {
		if strings.Contains(v, "/") {
			if _, err := os.Stat(v); err != nil {
				return "", fmt.Errorf("ONNX Runtime library from %s: %w (%s)", source, err, installHint)
			}
		}
		return v, nil
	}
	if flagValue != "" {
		return explicit(flagValue, "--onnxruntime_lib")
	}
	if envValue != "" {
		return explicit(envValue, EnvLibrary)
	}
	var candidates []string
	if cwd != "" {
		for dir := cwd; ; dir = filepath.Dir(dir) {
			candidates = append(candidates, filepath.Join(dir, localLibrary))
			if filepath.Dir(dir) == dir {
				break
			}
		}
	}
	if exe != "" {
		dir := filepath.Dir(exe)
		candidates = append(candidates,
			filepath.Join(dir, "..", localLibrary),
			filepath.Join(dir, LibraryName),
			filepath.Join(dir, "lib", LibraryName))
	}
	for _, c := range candidates {
		if st, err := os.Stat(c); err == nil && st.Mode().IsRegular() {
			return filepath.Clean(c), nil
		}
	}
	return LibraryName, nil
}

// environment records the library that initialised ONNX Runtime in this process.
var environment struct {
	mu      sync.Mutex
	path    string // library path given to onnxruntime_go
	version string // its version string
}

// Init loads the ONNX Runtime library at libPath (resolved with LibraryPath when empty) and
// creates the process-wide environment. It may be called any number of times, from any
// goroutine: later calls with the same library (or another copy of the same version) return
// nil; a library of another version is refused, since one process holds one environment. A
// failed call can be retried. The library must be ONNX Runtime ≥ MinVersion.
func Init(libPath string) error {
	if libPath == "" {
		p, err := LibraryPath("")
		if err != nil {
			return err
		}
		libPath = p
	}
	environment.mu.Lock()
	defer environment.mu.Unlock()
	if environment.path != "" && samePath(environment.path, libPath) {
		return nil
	}
	if strings.Contains(libPath, "/") {
		if _, err := os.Stat(libPath); err != nil {
			return fmt.Errorf("ONNX Runtime library %s: %w; expected ONNX Runtime %s; %s",
				libPath, err, RequiredVersion, installHint)
		}
	}
	probe, err := probeLibrary(libPath)
	if err != nil {
		return fmt.Errorf("ONNX Runtime library %s: %w; expected ONNX Runtime %s; %s",
			libPath, err, RequiredVersion, installHint)
	}
	if err := CheckVersion(probe.version); err != nil {
		return fmt.Errorf("ONNX Runtime library %s: %w; %s", libPath, err, installHint)
	}
	if !probe.apiOK {
		return fmt.Errorf("ONNX Runtime library %s (version %s) does not serve C API version %d, which %s needs; %s",
			libPath, probe.version, APIVersion, bindingVersion, installHint)
	}
	if environment.path != "" {
		if probe.version == environment.version {
			return nil
		}
		return fmt.Errorf("ONNX Runtime is already initialised in this process with %s (version %s); cannot switch to %s (version %s)",
			environment.path, environment.version, libPath, probe.version)
	}
	if ortgo.IsInitialized() {
		// Someone called onnxruntime_go directly; adopt its environment.
		environment.path, environment.version = libPath, ortgo.GetVersion()
		return nil
	}
	ortgo.SetSharedLibraryPath(libPath)
	if err := ortgo.InitializeEnvironment(); err != nil {
		return fmt.Errorf("initialise ONNX Runtime from %s: %w; expected ONNX Runtime %s; %s",
			libPath, err, RequiredVersion, installHint)
	}
	loaded := ortgo.GetVersion()
	if err := CheckVersion(loaded); err != nil {
		_ = ortgo.DestroyEnvironment()
		return fmt.Errorf("ONNX Runtime library %s: %w; %s", libPath, err, installHint)
	}
	environment.path, environment.version = libPath, loaded
	return nil
}

// samePath reports whether a and b name the same file.
func samePath(a, b string) bool {
	if a == b {
		return true
	}
	sa, errA := os.Stat(a)
	sb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(sa, sb)
}

// Initialized reports whether Init has succeeded in this process.
func Initialized() bool {
	environment.mu.Lock()
	defer environment.mu.Unlock()
	return environment.path != ""
}

// Version returns the version string of the loaded ONNX Runtime library, or "" before Init.
func Version() string {
	environment.mu.Lock()
	defer environment.mu.Unlock()
	return environment.version
}

// LoadedLibrary returns the library path Init loaded, or "" before Init.
func LoadedLibrary() string {
	environment.mu.Lock()
	defer environment.mu.Unlock()
	return environment.path
}

// errNotInitialized is returned by functions that need Init first.
var errNotInitialized = errors.New("ONNX Runtime is not initialised: call ort.Init first")

// CheckVersion returns an error unless version (e.g. "1.31.1") is at least MinVersion. It
// names both versions.
func CheckVersion(version string) error {
	got, err := majorMinor(version)
	if err != nil {
		return fmt.Errorf("ONNX Runtime version %q: %w; need ≥ %s", version, err, MinVersion)
	}
	want, err := majorMinor(MinVersion)
	if err != nil {
		panic(err) // MinVersion is a constant.
	}
	if got[0] < want[0] || (got[0] == want[0] && got[1] < want[1]) {
		return fmt.Errorf("ONNX Runtime version %s is too old: need ≥ %s (%s needs C API %d)",
			version, MinVersion, bindingVersion, APIVersion)
	}
	return nil
}

// majorMinor parses the first two numeric components of a version like "1.31.1" or
// "1.32.0-dev".
func majorMinor(v string) ([2]int, error) {
	parts := strings.SplitN(strings.TrimSpace(v), ".", 3)
	if len(parts) < 2 {
		return [2]int{}, errors.New("not of the form major.minor[.patch]")
	}
	var out [2]int
	for i := range 2 {
		p := parts[i]
		if i == 1 {
			// Allow "24-dev" style suffixes on the minor component of "1.24-dev".
			if j := strings.IndexFunc(p, func(r rune) bool { return r < '0' || r > '9' }); j >= 0 {
				p = p[:j]
			}
		}
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return [2]int{}, fmt.Errorf("component %d (%q) is not a number", i+1, parts[i])
		}
		out[i] = n
	}
	return out, nil
}
