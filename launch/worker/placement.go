package worker

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
)

// Environment types of Beam's portable runners (--environment_type).
const (
	Loopback = "LOOPBACK" // the launcher serves the work itself
	Process  = "PROCESS"  // the job server starts a command (Beam's boot) per worker
	External = "EXTERNAL" // a worker pool (`boot --worker_pool`) starts workers on request
	Docker   = "DOCKER"   // the job server runs a container image per worker
)

// EnvImageModels names the folder of models baked into the worker image; a model path
// below it is readable on the workers even though it is not on gs://.
const EnvImageModels = "STIR_IMAGE_MODELS"

// beamImage is the prefix of Beam's own Go SDK images, which hold no ONNX Runtime.
const beamImage = "apache/beam_go_sdk"

// Placement is where a job's work runs, as the runner flags say.
type Placement struct {
	// Runner is the runner's name, lower case without a "runner" suffix: prism, direct,
	// universal, portable, flink, spark, dataflow.
	Runner string
	// Endpoint is the job server (--endpoint); empty for an in-process prism.
	Endpoint string
	// Environment is the worker environment type (upper case), resolved as Beam resolves it.
	Environment string
	// Config is --environment_config.
	Config string
	// Image is Dataflow's --sdk_container_image.
	Image string
	// ServiceOptions is Dataflow's --dataflow_service_options.
	ServiceOptions string
}

// FromFlags reads the placement from Beam's flags in fs (after parsing).
func FromFlags(fs *flag.FlagSet) Placement {
	get := func(name string) string {
		if f := fs.Lookup(name); f != nil {
			return f.Value.String()
		}
		return ""
	}
	image := get("sdk_container_image")
	if image == "" {
		image = get("worker_harness_container_image")
	}
	return New(get("runner"), get("endpoint"), get("environment_type"), get("environment_config"), image, get("dataflow_service_options"))
}

// New resolves a placement from raw flag values.
func New(runner, endpoint, envType, config, image, serviceOptions string) Placement {
	r := strings.TrimSuffix(strings.ToLower(runner), "runner")
	if r == "" {
		r = "prism"
	}
	env := strings.ToUpper(envType)
	switch {
	case r == "direct":
		env = Loopback
	case r == "dataflow":
		env = Docker
	case env == "" && r == "prism" && endpoint == "":
		env = Loopback // the in-process prism serves the work from this process
	case env == "":
		env = Docker // Beam's default for job servers
	}
	return Placement{Runner: r, Endpoint: endpoint, Environment: env, Config: config, Image: image, ServiceOptions: serviceOptions}
}

// Separate reports whether the runner starts worker processes of its own, which run the
// staged worker binary and find their own ONNX Runtime.
func (p Placement) Separate() bool { return p.Environment != Loopback }

// Remote reports whether the workers may run on other machines or in containers, where
// this machine's files are out of reach.
func (p Placement) Remote() bool {
	switch p.Environment {
	case Loopback:
		return false
	case Process:
		return p.Endpoint != "" && !loopbackAddress(p.Endpoint)
	case External: // a pool at localhost of a remote job server is a TaskManager's sidecar
		return !loopbackAddress(p.Config) || (p.Endpoint != "" && !loopbackAddress(p.Endpoint))
	default: // DOCKER, Dataflow
		return true
	}
}

// Check returns every reason this placement cannot run the job: an unknown environment,
// an environment without its configuration, workers without ONNX Runtime (Beam's stock
// image), GPU work on Dataflow without GPU workers, and local paths that remote workers
// cannot read. paths maps each path flag (e.g. "--catalog") to its value; provider is the
// execution provider the stages ask for.
func (p Placement) Check(paths map[string]string, provider string) error {
	var errs []error
	switch p.Environment {
	case Loopback, Docker:
	case Process:
		var cfg struct {
			Command string `json:"command"`
		}
		if err := json.Unmarshal([]byte(p.Config), &cfg); err != nil || cfg.Command == "" {
			errs = append(errs, fmt.Errorf(`--environment_type=PROCESS needs --environment_config='{"command":"/opt/stir/bin/process-boot"}' `+
				`(the worker image's boot wrapper, or Beam's boot), got %q`, p.Config))
		}
	case External:
		if _, _, err := net.SplitHostPort(p.Config); err != nil {
			errs = append(errs, fmt.Errorf("--environment_type=EXTERNAL needs --environment_config=HOST:PORT of a worker pool "+
				"(`/opt/apache/beam/boot --worker_pool` in the worker image listens on port 50000), got %q", p.Config))
		}
	default:
		errs = append(errs, fmt.Errorf("--environment_type=%s is not one of LOOPBACK, PROCESS, EXTERNAL, DOCKER", p.Environment))
	}
	if p.Runner == "dataflow" {
		if p.Image == "" || strings.HasPrefix(p.Image, beamImage) {
			errs = append(errs, fmt.Errorf("Dataflow workers need the stir worker image, which holds ONNX Runtime: build it from "+
				"launch/container/Dockerfile, push it and pass --sdk_container_image=IMAGE (got %q)", p.Image))
		}
		if provider == "cuda" && !strings.Contains(p.ServiceOptions, "worker_accelerator") {
			errs = append(errs, errors.New("--provider=cuda on Dataflow needs GPU workers: pass "+
				"--dataflow_service_options=worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver and the GPU image "+
				"(launch/container/Dockerfile, target gpu) as --sdk_container_image"))
		}
	} else if p.Environment == Docker && (p.Config == "" || strings.HasPrefix(p.Config, beamImage)) {
		errs = append(errs, fmt.Errorf("DOCKER workers need the stir worker image, which holds ONNX Runtime: build it from "+
			"launch/container/Dockerfile and pass --environment_config=IMAGE (Beam's default image %q has none)", beamImage))
	}
	if p.Remote() {
		errs = append(errs, p.checkPaths(paths)...)
	}
	return errors.Join(errs...)
}

// checkPaths refuses local paths, which workers elsewhere cannot read.
func (p Placement) checkPaths(paths map[string]string) []error {
	baked := os.Getenv(EnvImageModels)
	var names []string
	for name := range paths {
		names = append(names, name)
	}
	sort.Strings(names)
	var errs []error
	for _, name := range names {
		v := paths[name]
		if v == "" || strings.HasPrefix(v, "gs://") || (baked != "" && strings.HasPrefix(v, strings.TrimSuffix(baked, "/")+"/")) {
			continue
		}
		errs = append(errs, fmt.Errorf("%s=%s is a local path, but the %s workers run elsewhere and cannot read it: "+
			"copy it to a bucket (gcloud storage cp -r …) and pass its gs:// URI", name, v, p.describe()))
	}
	return errs
}

// describe names the workers in messages.
func (p Placement) describe() string {
	if p.Runner == "dataflow" {
		return "Dataflow"
	}
	return p.Environment
}

// Warning returns advice for a placement that runs but likely not as meant, or "".
func (p Placement) Warning() string {
	if p.Environment == Loopback && p.Endpoint != "" && !loopbackAddress(p.Endpoint) {
		return "--environment_type=LOOPBACK runs every worker inside this process: the job server at " + p.Endpoint +
			" must reach this machine, and no cluster machine does any of the work; on a cluster use EXTERNAL or DOCKER"
	}
	return ""
}

// loopbackAddress reports whether addr (host:port, or a URL-ish host) names this machine.
func loopbackAddress(addr string) bool {
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
