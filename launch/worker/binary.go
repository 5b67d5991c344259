// Package worker decides what a runner's separate worker processes run and what they can
// reach: the worker binary the launcher stages (a linux/amd64 cgo build of stir, since ONNX
// Runtime is reached through cgo), and which local paths and settings make sense for the
// chosen runner and environment. Every check runs before any work.
package worker

import (
	"debug/buildinfo"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// MaxGLIBC is the newest glibc symbol version a worker binary may need: Debian bookworm's
// glibc 2.36, the C library of the CPU worker image (the GPU image's Ubuntu 24.04 has 2.39).
var MaxGLIBC = [2]int{2, 36}

// BuildHint says how to get a binary that fits the workers.
const BuildHint = "run `make worker` (a linux/amd64 cgo build on Debian bookworm's glibc, in a container on " +
	"other systems) and pass --worker_binary=bin/linux_amd64/stir"

// CheckBinary reports why the executable at path cannot serve as the workers' binary, or nil
// when it fits: an ELF x86-64 executable of a Go program built for linux/amd64 with cgo
// (ONNX Runtime is loaded through cgo), needing no glibc newer than MaxGLIBC.
func CheckBinary(path string) error {
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		return fmt.Errorf("worker binary %s is not a Go program (%v); %s", path, err, BuildHint)
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	if goos, goarch := settings["GOOS"], settings["GOARCH"]; goos != "linux" || goarch != "amd64" {
		return fmt.Errorf("worker binary %s is built for %s/%s, but workers run linux/amd64; %s", path, goos, goarch, BuildHint)
	}
	if settings["CGO_ENABLED"] != "1" {
		return fmt.Errorf("worker binary %s is built without cgo, so it cannot load ONNX Runtime; %s", path, BuildHint)
	}
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("worker binary %s: %v; %s", path, err, BuildHint)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		return fmt.Errorf("worker binary %s is for %s, not x86-64; %s", path, f.Machine, BuildHint)
	}
	syms, err := f.ImportedSymbols()
	if err != nil {
		return fmt.Errorf("worker binary %s: reading its imported symbols: %v; %s", path, err, BuildHint)
	}
	if need, sym := newestGLIBC(syms); versionAfter(need, MaxGLIBC) {
		return fmt.Errorf("worker binary %s needs glibc %d.%d (symbol %s), newer than the worker image's %d.%d; "+
			"build it on Debian bookworm: %s", path, need[0], need[1], sym, MaxGLIBC[0], MaxGLIBC[1], BuildHint)
	}
	return nil
}

// newestGLIBC returns the newest GLIBC_x.y version among syms, and a symbol that needs it.
func newestGLIBC(syms []elf.ImportedSymbol) (need [2]int, symbol string) {
	for _, s := range syms {
		v, ok := parseGLIBC(s.Version)
		if ok && versionAfter(v, need) {
			need, symbol = v, s.Name+"@"+s.Version
		}
	}
	return need, symbol
}

// parseGLIBC parses "GLIBC_2.34" (or "GLIBC_2.3.4", compared on its first two numbers).
func parseGLIBC(v string) ([2]int, bool) {
	rest, ok := strings.CutPrefix(v, "GLIBC_")
	if !ok {
		return [2]int{}, false
	}
	parts := strings.Split(rest, ".")
	if len(parts) < 2 {
		return [2]int{}, false
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return [2]int{}, false
	}
	return [2]int{major, minor}, true
}

func versionAfter(a, b [2]int) bool { return a[0] > b[0] || (a[0] == b[0] && a[1] > b[1]) }

// Binary returns the executable the workers should run: flagValue (--worker_binary) when
// set, else this program itself; either must pass CheckBinary.
func Binary(flagValue string) (string, error) {
	if flagValue != "" {
		if _, err := os.Stat(flagValue); err != nil {
			return "", fmt.Errorf("--worker_binary: %w; %s", err, BuildHint)
		}
		return flagValue, CheckBinary(flagValue)
	}
	self, err := os.Executable()
	if err != nil {
		return "", errors.Join(fmt.Errorf("cannot find this program's executable: %w", err), errors.New(BuildHint))
	}
	if err := CheckBinary(self); err != nil {
		return "", fmt.Errorf("this runner starts separate worker processes, and this stir cannot be one: %w", err)
	}
	return self, nil
}
