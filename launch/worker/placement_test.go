package worker

import (
	"strings"
	"testing"
)

func TestPlacement(t *testing.T) {
	for _, c := range []struct {
		name             string
		p                Placement
		env              string
		separate, remote bool
	}{
		{"default prism", New("", "", "", "", "", ""), Loopback, false, false},
		{"direct", New("direct", "", "", "", "", ""), Loopback, false, false},
		{"prism job server", New("prism", "localhost:8073", "", "", "", ""), Docker, true, true},
		{"loopback", New("universal", "localhost:8099", "loopback", "", "", ""), Loopback, false, false},
		{"process here", New("universal", "localhost:8073", "PROCESS", `{"command":"b"}`, "", ""), Process, true, false},
		{"process on a cluster", New("flink", "flink-jm:8099", "PROCESS", `{"command":"b"}`, "", ""), Process, true, true},
		{"external here", New("PortableRunner", "127.0.0.1:8073", "EXTERNAL", "localhost:50000", "", ""), External, true, false},
		{"external pool elsewhere", New("FlinkRunner", "jm:8099", "EXTERNAL", "10.0.0.7:50000", "", ""), External, true, true},
		{"external sidecar", New("FlinkRunner", "jm:8099", "EXTERNAL", "localhost:50000", "", ""), External, true, true},
		{"dataflow", New("DataflowRunner", "", "", "", "img", ""), Docker, true, true},
	} {
		if c.p.Environment != c.env || c.p.Separate() != c.separate || c.p.Remote() != c.remote {
			t.Errorf("%s: env %s separate %v remote %v, want %s %v %v", c.name, c.p.Environment, c.p.Separate(), c.p.Remote(), c.env, c.separate, c.remote)
		}
	}
}

func TestPlacementCheck(t *testing.T) {
	local := map[string]string{"--catalog": "/data/catalog.csv", "--output": "gs://b/run", "--model": "models/zoo/stir-tiny/embedder.json"}
	remote := map[string]string{"--catalog": "gs://b/catalog.csv", "--output": "gs://b/run", "--model": "gs://b/m/embedder.json"}
	for _, c := range []struct {
		name     string
		p        Placement
		paths    map[string]string
		provider string
		want     []string // substrings of the error; none: no error
	}{
		{"local run, local paths", New("", "", "", "", "", ""), local, "cpu", nil},
		{"dataflow with the image", New("dataflow", "", "", "", "eu.gcr.io/p/stir:1", ""), remote, "cpu", nil},
		{"dataflow without an image", New("dataflow", "", "", "", "", ""), remote, "cpu", []string{"--sdk_container_image", "ONNX Runtime"}},
		{"dataflow with Beam's image", New("dataflow", "", "", "", "apache/beam_go_sdk:2.77.0", ""), remote, "cpu", []string{"stir worker image"}},
		{"dataflow, local paths", New("dataflow", "", "", "", "img", ""), local, "cpu", []string{"--catalog=/data/catalog.csv is a local path", "--model=models/zoo", "gs://"}},
		{"dataflow GPU without GPUs", New("dataflow", "", "", "", "img", ""), remote, "cuda", []string{"worker_accelerator"}},
		{"dataflow GPU", New("dataflow", "", "", "", "img", "worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver"), remote, "cuda", nil},
		{"docker default image", New("flink", "jm:8099", "", "", "", ""), remote, "cpu", []string{"DOCKER workers need the stir worker image", "--environment_config"}},
		{"docker stir image", New("flink", "jm:8099", "DOCKER", "reg/stir:1", "", ""), remote, "cpu", nil},
		{"process without config", New("universal", "localhost:1", "PROCESS", "", "", ""), local, "cpu", []string{`{"command":`}},
		{"process here, local paths", New("universal", "localhost:1", "PROCESS", `{"command":"/opt/stir/bin/process-boot"}`, "", ""), local, "cpu", nil},
		{"external without address", New("universal", "localhost:1", "EXTERNAL", "", "", ""), local, "cpu", []string{"HOST:PORT"}},
		{"external sidecar, local paths", New("flink", "jm:8099", "EXTERNAL", "pool:50000", "", ""), local, "cpu", []string{"EXTERNAL workers run elsewhere"}},
		{"unknown environment", New("universal", "localhost:1", "SSH", "", "", ""), local, "cpu", []string{"SSH"}},
	} {
		err := c.p.Check(c.paths, c.provider)
		if len(c.want) == 0 {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		for _, w := range c.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %v does not name %q", c.name, err, w)
			}
		}
	}
}

func TestImageModelsAreReadable(t *testing.T) {
	t.Setenv(EnvImageModels, "/opt/stir/models")
	p := New("dataflow", "", "", "", "img", "")
	err := p.Check(map[string]string{"--model": "/opt/stir/models/stir-tiny/embedder.json", "--pair_model": "/opt/stir/modelsX/p.json"}, "cpu")
	if err == nil || strings.Contains(err.Error(), "--model=") || !strings.Contains(err.Error(), "--pair_model=") {
		t.Errorf("only the model inside the image's folder is allowed: %v", err)
	}
}

func TestWarning(t *testing.T) {
	if w := New("flink", "jm:8099", "LOOPBACK", "", "", "").Warning(); !strings.Contains(w, "EXTERNAL or DOCKER") {
		t.Errorf("LOOPBACK to a cluster: warning %q", w)
	}
	if w := New("universal", "localhost:8099", "LOOPBACK", "", "", "").Warning(); w != "" {
		t.Errorf("LOOPBACK to a local job server: warning %q", w)
	}
}
