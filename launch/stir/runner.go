package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/x/beamx"

	"github.com/stirpipe/stirpipe/launch/worker"
	"github.com/stirpipe/stirpipe/pipelines"
	"github.com/stirpipe/stirpipe/schemas/blob"
)

// placeWorkers checks the runner flags against the job before any work: the environment,
// the worker image, and that remote workers can read every path (paths maps a flag to its
// value). When the runner starts worker processes it stages this program as their binary
// (--worker_binary, which must fit the workers) instead of letting Beam rebuild it without
// cgo, and makes relative local paths absolute, since those workers start elsewhere.
func placeWorkers(paths map[string]*string, provider string) (pipelines.Workers, error) {
	p := worker.FromFlags(flag.CommandLine)
	values := map[string]string{}
	for name, v := range paths {
		values[name] = *v
	}
	if err := p.Check(values, provider); err != nil {
		return pipelines.Workers{}, err
	}
	if dryRun() && p.Runner != "dataflow" {
		return pipelines.Workers{}, errors.New("--dry_run builds a Dataflow job without submitting it: it needs --runner=dataflow")
	}
	if w := p.Warning(); w != "" {
		fmt.Fprintln(os.Stderr, "stir: warning:", w)
	}
	if !p.Separate() {
		return pipelines.Workers{}, nil
	}
	bin, err := worker.Binary(flag.Lookup("worker_binary").Value.String())
	if err != nil {
		return pipelines.Workers{}, err
	}
	if err := flag.Set("worker_binary", bin); err != nil {
		return pipelines.Workers{}, err
	}
	for name, v := range paths {
		if *v != "" && !blob.IsGCS(*v) {
			abs, err := filepath.Abs(*v)
			if err != nil {
				return pipelines.Workers{}, fmt.Errorf("%s=%s: %w", name, *v, err)
			}
			*v = abs
		}
	}
	return pipelines.Workers{Separate: true}, nil
}

// errDryRun stops a job after its first pipeline was built but, as --dry_run asks, not run.
var errDryRun = errors.New("dry run: the job was built and printed, not submitted; later stages read this stage's outputs, so they were not built")

// execute runs one stage's pipeline on the chosen runner.
func execute(ctx context.Context, p *beam.Pipeline) (beam.PipelineResult, error) {
	res, err := beamx.RunWithMetrics(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("pipeline failed: %w", err)
	}
	if dryRun() {
		return nil, errDryRun
	}
	return res, nil
}

// dryRun reports whether --dry_run (Beam's Dataflow runner flag) is set.
func dryRun() bool {
	f := flag.Lookup("dry_run")
	return f != nil && f.Value.String() == "true"
}

// placeholder matches one {name} in --output.
var placeholder = regexp.MustCompile(`\{[^{}]*\}`)

// expandOutput replaces the placeholders of an output path with the launch time in UTC, so
// that a scheduled run (cron, a Flex Template, Airflow) writes a new folder each time
// without a shell: {date} is 2006-01-02, {datetime} 20060102T150405Z. It reports whether
// any placeholder was present.
func expandOutput(out string, now time.Time) (string, bool, error) {
	now = now.UTC()
	var bad []string
	expanded := placeholder.ReplaceAllStringFunc(out, func(m string) string {
		switch m {
		case "{date}":
			return now.Format("2006-01-02")
		case "{datetime}":
			return now.Format("20060102T150405Z")
		}
		bad = append(bad, m)
		return m
	})
	if len(bad) > 0 {
		return "", false, fmt.Errorf("--output %s: unknown placeholder %s (use {date} or {datetime})", out, strings.Join(bad, ", "))
	}
	return expanded, expanded != out, nil
}

// LatestFile is the pointer that `stir run` moves to a run once it has succeeded.
const LatestFile = "LATEST"

// latestTarget resolves --latest: "auto" is LATEST beside the run folder when --output had
// a placeholder (a dated series of runs) and nothing otherwise; "none" is nothing.
func latestTarget(flagValue, output string, templated bool) string {
	switch flagValue {
	case "none", "":
		return ""
	case "auto":
		if !templated {
			return ""
		}
		return blob.Join(blob.Dir(output), LatestFile)
	}
	return flagValue
}

// readLatest returns the run a LATEST pointer names, or "" when there is no pointer yet.
func readLatest(ctx context.Context, pointer string) (string, error) {
	data, err := blob.ReadFile(ctx, pointer)
	if errors.Is(err, fs.ErrNotExist) {
		fmt.Printf("previous: no %s yet, so this is a full run\n", pointer)
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("--previous latest: %w", err)
	}
	run := strings.TrimSpace(string(data))
	if run == "" || strings.ContainsAny(run, "\n\r") {
		return "", fmt.Errorf("--previous latest: %s does not hold one run's URI: fix or remove it", pointer)
	}
	return run, nil
}

// pointLatest writes the pointer file: the run's URI and a newline, atomically.
func pointLatest(ctx context.Context, pointer, run string) error {
	if err := blob.WriteFile(ctx, pointer, []byte(run+"\n")); err != nil {
		return fmt.Errorf("the run succeeded, but moving %s to it failed: %w", pointer, err)
	}
	fmt.Printf("latest: %s → %s\n", pointer, run)
	return nil
}
