package container

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// stage is what a Dockerfile target puts in its image.
type stage struct {
	copies     []string          // paths COPY creates (a file copied into a folder: the file)
	env        map[string]string // ENV
	entrypoint string
}

// parseDockerfile reads the stages of a Dockerfile by target name: line continuations,
// FROM … AS name, COPY … dst, ENV K=V and ENTRYPOINT ["…"]. A stage FROM another stage
// starts with that stage's contents.
func parseDockerfile(path string) (map[string]*stage, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	text := strings.ReplaceAll(string(b), "\\\n", " ")
	stages := map[string]*stage{}
	var cur *stage
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "FROM":
			cur = &stage{env: map[string]string{}}
			var base string
			for _, w := range f[1:] {
				if !strings.HasPrefix(w, "--") && base == "" {
					base = w
				}
			}
			if parent, ok := stages[base]; ok {
				cur.copies = append(cur.copies, parent.copies...)
				for k, v := range parent.env {
					cur.env[k] = v
				}
				cur.entrypoint = parent.entrypoint
			}
			if n := len(f); n >= 3 && strings.EqualFold(f[n-2], "AS") {
				stages[f[n-1]] = cur
			}
		case "COPY":
			var srcs []string
			for _, w := range f[1 : len(f)-1] {
				if !strings.HasPrefix(w, "--") {
					srcs = append(srcs, w)
				}
			}
			dst := f[len(f)-1]
			for _, src := range srcs {
				if strings.HasSuffix(dst, "/") && !strings.HasSuffix(src, "/") {
					cur.copies = append(cur.copies, dst+filepath.Base(src))
				} else {
					cur.copies = append(cur.copies, dst)
				}
			}
		case "ENV":
			for _, kv := range f[1:] {
				k, v, _ := strings.Cut(kv, "=")
				cur.env[k] = v
			}
		case "ENTRYPOINT":
			cur.entrypoint = strings.Trim(strings.Join(f[1:], " "), `[]" `)
		}
	}
	return stages, nil
}

// rebase maps an image path onto the layout folder.
func rebase(root, imagePath string) string { return filepath.Join(root, imagePath) }

// workerEnv is the cpu image's environment with its paths moved into the layout.
func workerEnv(root string, s *stage) []string {
	var env []string
	for k, v := range s.env {
		if strings.HasPrefix(v, "/") {
			v = rebase(root, v)
		}
		env = append(env, k+"="+v)
	}
	return env
}

func TestLayoutIsTheDockerfiles(t *testing.T) {
	env := setup(t)
	stages, err := parseDockerfile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"cpu", "gpu", "flex"} {
		if stages[target] == nil {
			t.Fatalf("Dockerfile has no %s target", target)
		}
	}
	cpu := stages["cpu"]
	if len(cpu.copies) < 5 {
		t.Fatalf("cpu target copies %v", cpu.copies)
	}
	for _, dst := range cpu.copies {
		if _, err := os.Stat(rebase(env.root, dst)); err != nil {
			t.Errorf("the Dockerfile's cpu target copies to %s, but the layout has no such path: %v", dst, err)
		}
	}
	for k, v := range cpu.env {
		if strings.HasPrefix(v, "/") {
			if _, err := os.Stat(rebase(env.root, v)); err != nil {
				t.Errorf("ENV %s=%s: not in the layout: %v", k, v, err)
			}
		}
	}
	for _, k := range []string{"STIR_ONNXRUNTIME_LIB", "STIR_IMAGE_MODELS"} {
		if cpu.env[k] == "" {
			t.Errorf("cpu target sets no %s", k)
		}
	}
	if st, err := os.Stat(rebase(env.root, cpu.entrypoint)); err != nil || st.Mode()&0o111 == 0 {
		t.Errorf("ENTRYPOINT %s is not an executable of the layout: %v", cpu.entrypoint, err)
	}
	// The GPU image keeps every path but ONNX Runtime's file name, and the flex image
	// launches stir from the same layout.
	gpu := stages["gpu"]
	for _, dst := range gpu.copies {
		if _, err := os.Stat(rebase(env.root, dst)); err != nil {
			t.Errorf("the gpu target copies to %s, which the cpu layout lacks", dst)
		}
	}
	if !strings.HasPrefix(gpu.env["STIR_ONNXRUNTIME_LIB"], "/opt/onnxruntime/lib/libonnxruntime.so.1.31.") {
		t.Errorf("gpu STIR_ONNXRUNTIME_LIB = %q", gpu.env["STIR_ONNXRUNTIME_LIB"])
	}
	if flex := stages["flex"]; flex.env["FLEX_TEMPLATE_GO_BINARY"] == "" || flex.env["STIR_ONNXRUNTIME_LIB"] != cpu.env["STIR_ONNXRUNTIME_LIB"] {
		t.Errorf("flex target env = %v", flex.env)
	}
}
