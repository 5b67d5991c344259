package pipelines

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"

	"github.com/stirpipe/stirpipe/models/imageio"
	"github.com/stirpipe/stirpipe/models/metrics"
	"github.com/stirpipe/stirpipe/models/ort"
	"github.com/stirpipe/stirpipe/schemas/rejects"
	"github.com/stirpipe/stirpipe/transforms/imagework"
)

// Shared are the options that the stages of one job take from the same flags.
type Shared struct {
	// Output is the run directory, local or gs://.
	Output string
	// Runtime configures ONNX Runtime sessions; the neighbours stage uses its provider
	// and device.
	Runtime ort.Options
	// Library is the ONNX Runtime shared library ("" = default search).
	Library string
	// Limits bound image bytes and pixels.
	Limits imageio.Limits
	// Progress prints progress lines (local runs).
	Progress bool
	// Workers says where the work runs.
	Workers Workers
}

// imageWork is the part of a stage's worker configuration that runs the image model
// (sha256 is the ONNX file's hash at launch) over the catalog's images under root, for
// total items.
func (o Shared) imageWork(model, sha256, root string, total int64) imagework.Config {
	return imagework.Config{Model: model, ModelSHA256: sha256, Root: root, Runtime: o.Runtime,
		Library: o.Workers.library(o.Library), Limits: o.Limits, Total: total, Progress: o.Progress}
}

// A Stage is one checked stage of a job, ready to run: its Prepare function has read and
// checked everything the stage needs, so running it starts work at once.
type Stage interface {
	// Name is the stage's name in messages: embed, neighbors, rerank or evaluate.
	Name() string
	// Outputs are the completion markers the stage rewrites, withdrawn before it runs.
	Outputs() []string
	// Describe says in one line what is about to run.
	Describe() string
	// Build adds the stage's transforms to a pipeline.
	Build(s beam.Scope)
	// Summarize reads what the stage wrote and checks that every input is accounted for;
	// res holds the run's counters (nil when the runner reports none).
	Summarize(ctx context.Context, res beam.PipelineResult) (*Summary, error)
}

// Runner runs one pipeline on the chosen runner.
type Runner func(ctx context.Context, p *beam.Pipeline) (beam.PipelineResult, error)

// RunStage starts a stage (when it has a Start method, for what must happen to earlier
// outputs before its own are withdrawn), withdraws its outputs, tells started what is
// about to run, runs the stage's pipeline and returns its summary. A stage whose Finished
// method says that its complete output is already there is only tidied (what a run killed
// after writing the output's manifest left beside it) and summarised.
func RunStage(ctx context.Context, st Stage, run Runner, started func(Stage)) (*Summary, error) {
	start := time.Now()
	if f, ok := st.(interface{ Finished() bool }); ok && f.Finished() {
		if t, ok := st.(interface{ Tidy(context.Context) error }); ok {
			if err := t.Tidy(ctx); err != nil {
				return nil, err
			}
		}
		sum, err := st.Summarize(ctx, nil)
		if sum != nil {
			sum.Took = time.Since(start)
		}
		return sum, err
	}
	if s, ok := st.(interface{ Start(context.Context) error }); ok {
		if err := s.Start(ctx); err != nil {
			return nil, err
		}
	}
	if err := Withdraw(ctx, st.Outputs()...); err != nil {
		return nil, err
	}
	started(st)
	p, s := beam.NewPipelineWithRoot()
	st.Build(s)
	res, err := run(ctx, p)
	if err != nil {
		return nil, err
	}
	sum, err := st.Summarize(ctx, res)
	if sum != nil {
		sum.Took = time.Since(start)
	}
	return sum, err
}

// Summary is what a finished stage reports.
type Summary struct {
	// Stage is the stage's name.
	Stage string
	// Took is the stage's wall time, checks and summary included.
	Took time.Duration
	// Lines count what went in and came out, and where it is.
	Lines []Line
	// RejectReasons are the rejects' "stage/reason count" pairs, sorted.
	RejectReasons []string
	// Batches describes the forward passes, when the stage ran a model.
	Batches *Batches
	// Metrics is the evaluate stage's document, written to MetricsFile.
	Metrics     *metrics.Document
	MetricsFile string
	// Work counts what the stage reused and recomputed, when it reused earlier work.
	Work map[string]int64
}

// Line is one count of a summary.
type Line struct {
	// Label names what is counted.
	Label string
	// Count is how many.
	Count int64
	// Where says where they are, and what else there is to know.
	Where string
	// Rate asks for the count per second of the stage's wall time after Where.
	Rate bool
}

// readRejects reads a stage's rejects file and counts its rows by stage and reason.
func readRejects(ctx context.Context, file string) (int64, []string, error) {
	rejs, err := rejects.ReadAll(ctx, file)
	if err != nil {
		return 0, nil, err
	}
	byReason := map[string]int{}
	for _, r := range rejs {
		byReason[r.Stage+"/"+r.Reason]++
	}
	reasons := make([]string, 0, len(byReason))
	for k, n := range byReason {
		reasons = append(reasons, fmt.Sprintf("%s %d", k, n))
	}
	sort.Strings(reasons)
	return int64(len(rejs)), reasons, nil
}

// counter returns the committed value of a stage's counter, summed over the steps that
// count it, and whether the run has it.
func counter(res beam.PipelineResult, namespace, name string) (int64, bool) {
	if res == nil {
		return 0, false
	}
	var sum int64
	found := false
	for _, c := range res.Metrics().AllMetrics().Counters() {
		if c.Key.Namespace == namespace && c.Key.Name == name {
			sum, found = sum+c.Result(), true
		}
	}
	return sum, found
}

// Batches is the distribution of a stage's batch latencies, in milliseconds.
type Batches struct{ Count, Sum, Min, Max int64 }

// Mean is the mean latency.
func (b Batches) Mean() float64 { return float64(b.Sum) / float64(b.Count) }

// latency returns a stage's distribution of batch latencies, or nil when it has none.
func latency(res beam.PipelineResult, namespace, name string) *Batches {
	if res == nil {
		return nil
	}
	for _, d := range res.Metrics().AllMetrics().Distributions() {
		if r := d.Result(); d.Key.Namespace == namespace && d.Key.Name == name && r.Count > 0 {
			return &Batches{Count: r.Count, Sum: r.Sum, Min: r.Min, Max: r.Max}
		}
	}
	return nil
}
