package worker

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// build compiles a tiny program with the given environment and returns its path.
func build(t *testing.T, src string, env ...string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module fixture\n\ngo 1.26\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "prog")
	cmd := exec.Command("go", "build", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %v: %v\n%s", env, err, b)
	}
	return out
}

const cgoProgram = "package main\n\n// int answer(void) { return 42; }\nimport \"C\"\n\nfunc main() { println(C.answer()) }\n"
const plainProgram = "package main\n\nfunc main() {}\n"

func TestCheckBinary(t *testing.T) {
	fits := build(t, cgoProgram, "CGO_ENABLED=1", "GOOS=linux", "GOARCH=amd64")
	if err := CheckBinary(fits); err != nil {
		t.Errorf("a linux/amd64 cgo build is refused: %v", err)
	}
	if path, err := Binary(fits); err != nil || path != fits {
		t.Errorf("Binary(%s) = %q, %v", fits, path, err)
	}
	for _, c := range []struct {
		name, path, want string
	}{
		{"no cgo", build(t, plainProgram, "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64"), "without cgo"},
		{"another OS", build(t, plainProgram, "CGO_ENABLED=0", "GOOS=darwin", "GOARCH=arm64"), "darwin/arm64"},
		{"not Go", "/bin/sh", "not a Go program"},
	} {
		err := CheckBinary(c.path)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "make worker") {
			t.Errorf("%s: CheckBinary = %v, want an error naming %q and `make worker`", c.name, err, c.want)
		}
	}
	if _, err := Binary("/no/such/stir"); err == nil || !strings.Contains(err.Error(), "--worker_binary") {
		t.Errorf("Binary(missing) = %v", err)
	}
}

func TestNewestGLIBC(t *testing.T) {
	syms := []elf.ImportedSymbol{
		{Name: "malloc", Version: "GLIBC_2.2.5"},
		{Name: "pthread_create", Version: "GLIBC_2.34"},
		{Name: "__isoc23_strtol", Version: "GLIBC_2.38"},
		{Name: "_ZSt4cout", Version: "GLIBCXX_3.4"},
		{Name: "dlopen", Version: ""},
	}
	need, sym := newestGLIBC(syms)
	if need != [2]int{2, 38} || sym != "__isoc23_strtol@GLIBC_2.38" {
		t.Errorf("newestGLIBC = %v %q", need, sym)
	}
	if !versionAfter(need, MaxGLIBC) || versionAfter([2]int{2, 36}, MaxGLIBC) || !versionAfter([2]int{3, 0}, MaxGLIBC) {
		t.Error("versionAfter compares wrongly")
	}
	if need, _ := newestGLIBC(syms[:2]); versionAfter(need, MaxGLIBC) {
		t.Errorf("GLIBC_2.34 is within bookworm's 2.36")
	}
}
