package pipelines

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/stirpipe/stirpipe/models/metrics"
	"github.com/stirpipe/stirpipe/schemas/blob"
	"github.com/stirpipe/stirpipe/schemas/catalog"
	"github.com/stirpipe/stirpipe/schemas/lists"
	"github.com/stirpipe/stirpipe/transforms/evaluate"
)

func init() {
	register.DoFn4x1[context.Context, []byte, func(**metrics.Accumulator) bool, func(**metrics.Accumulator) bool, error](&writeMetricsFn{})
	register.Iter1[*metrics.Accumulator]()
}

// EvaluateOptions configure the evaluate pipeline.
type EvaluateOptions struct {
	// Lists is the neighbour-list output to score (a neighbours or reranked directory).
	Lists string
	// Compare, when set, is a second list output (the reranked lists) scored against Lists:
	// metrics.json then holds before, after and delta.
	Compare string
	// Catalog, when set, must be the catalog the lists were computed from.
	Catalog string
	// Output is the metrics.json file to write.
	Output string
	// KS are the metrics' cutoffs.
	KS metrics.Options
	// Work is what the job's earlier stages reused and recomputed, by stage (Summary.Work),
	// written into the document.
	Work map[string]map[string]int64
}

// EvaluatePlan is a checked evaluate job.
type EvaluatePlan struct {
	Options         EvaluateOptions
	Before, After   lists.Manifest
	BeforeFiles     []string
	AfterFiles      []string
	Provenance      map[string]string
	CatalogSnapshot string
}

// Check reports every problem of the flags at once, without reading anything.
func (o EvaluateOptions) Check() error {
	var errs []error
	if o.Lists == "" {
		errs = append(errs, errors.New("--lists is required: a neighbours (or reranked) output directory"))
	}
	if o.Output == "" {
		errs = append(errs, errors.New("--output is required"))
	}
	if err := o.KS.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// PrepareEvaluate checks the cutoffs against the lists' length, the lists' manifests and,
// when a catalog is given, that the lists were computed from it.
func PrepareEvaluate(ctx context.Context, o EvaluateOptions) (*EvaluatePlan, error) {
	if err := o.Check(); err != nil {
		return nil, err
	}
	p := &EvaluatePlan{Options: o, Provenance: map[string]string{}}
	var err error
	if p.Before, p.BeforeFiles, err = readLists(ctx, o.Lists, o.KS.MaxK()); err != nil {
		return nil, err
	}
	if o.Compare != "" {
		if p.After, p.AfterFiles, err = readLists(ctx, o.Compare, o.KS.MaxK()); err != nil {
			return nil, err
		}
		if p.After.Provenance.CatalogSnapshot != p.Before.Provenance.CatalogSnapshot || p.After.Provenance.ModelSHA256 != p.Before.Provenance.ModelSHA256 {
			return nil, fmt.Errorf("%s and %s come from different catalogs or embedding models: compare lists of the same run", o.Lists, o.Compare)
		}
	}
	if o.Catalog != "" {
		snapshot, err := catalog.SnapshotOf(ctx, o.Catalog)
		if err != nil {
			return nil, err
		}
		if snapshot != p.Before.Provenance.CatalogSnapshot {
			return nil, fmt.Errorf("the lists in %s were computed from catalog %s (%s), but --catalog %s is %s: evaluate them with that catalog, or rerun the pipeline on this one",
				o.Lists, p.Before.Provenance.CatalogURI, p.Before.Provenance.CatalogSnapshot, o.Catalog, snapshot)
		}
		p.CatalogSnapshot = snapshot
	}
	for k, v := range map[string]string{
		"lists": o.Lists, "compare": o.Compare, "model": p.Before.Provenance.ModelName, "model_sha256": p.Before.Provenance.ModelSHA256,
		"catalog": p.Before.Provenance.CatalogURI, "catalog_snapshot": p.Before.Provenance.CatalogSnapshot, "k": strconv.Itoa(p.Before.Provenance.K),
		"pair_model": p.After.Provenance.PairModelName, "pair_model_sha256": p.After.Provenance.PairModelSHA256,
	} {
		if v != "" && v != "0" {
			p.Provenance[k] = v
		}
	}
	if p.After.Provenance.TopN > 0 {
		p.Provenance["top_n"] = strconv.Itoa(p.After.Provenance.TopN)
	}
	return p, nil
}

// readLists reads a list output's manifest and checks that its lists are long enough.
func readLists(ctx context.Context, dir string, maxK int) (lists.Manifest, []string, error) {
	m, err := lists.ReadManifest(ctx, dir)
	if err != nil {
		return m, nil, err
	}
	if m.Provenance.K < maxK {
		return m, nil, fmt.Errorf("%s holds lists of k = %d, but the metrics ask for k up to %d: lower the cutoffs or recompute the neighbours with --k ≥ %d", dir, m.Provenance.K, maxK, maxK)
	}
	files := make([]string, len(m.Shards))
	for i, sh := range m.Shards {
		files[i] = sh.File
	}
	return m, files, nil
}

// Evaluate builds the evaluate pipeline: lists → metrics.json.
func Evaluate(s beam.Scope, p *EvaluatePlan) {
	o := p.Options
	before := evaluate.Score(s, evaluate.ReadLists(s, o.Lists, p.BeforeFiles), o.KS)
	after := beam.CreateList(s, []*metrics.Accumulator{})
	if o.Compare != "" {
		after = evaluate.Score(s.Scope("After"), evaluate.ReadLists(s.Scope("After"), o.Compare, p.AfterFiles), o.KS)
	}
	beam.ParDo0(s, &writeMetricsFn{Output: o.Output, KS: o.KS, Provenance: p.Provenance, Work: o.Work},
		beam.Impulse(s), beam.SideInput{Input: before}, beam.SideInput{Input: after})
}

// EvaluateStage is the evaluate stage's name.
const EvaluateStage = "evaluate"

// Name is the stage's name.
func (p *EvaluatePlan) Name() string { return EvaluateStage }

// Outputs are the metrics file, which is its own completion marker.
func (p *EvaluatePlan) Outputs() []string { return []string{p.Options.Output} }

// Describe says nothing: the stage is short, and its summary says what it did.
func (p *EvaluatePlan) Describe() string { return "" }

// Build adds the evaluate pipeline to s.
func (p *EvaluatePlan) Build(s beam.Scope) { Evaluate(s, p) }

// Summarize reads the metrics file the stage wrote.
func (p *EvaluatePlan) Summarize(ctx context.Context, _ beam.PipelineResult) (*Summary, error) {
	r, err := blob.Open(ctx, p.Options.Output)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	doc, err := metrics.ReadDocument(r)
	if err != nil {
		return nil, fmt.Errorf("metrics %s: %w", p.Options.Output, err)
	}
	return &Summary{Stage: p.Name(), Metrics: &doc, MetricsFile: p.Options.Output}, nil
}

type writeMetricsFn struct {
	Output     string
	KS         metrics.Options
	Provenance map[string]string
	Work       map[string]map[string]int64
}

func (fn *writeMetricsFn) ProcessElement(ctx context.Context, _ []byte, before, after func(**metrics.Accumulator) bool) error {
	var b, a *metrics.Accumulator
	before(&b)
	after(&a)
	if b == nil {
		return errors.New("evaluate: no accumulator for the lists")
	}
	var doc metrics.Document
	if a == nil {
		doc = metrics.NewDocument(b.Report(), fn.Provenance)
	} else {
		br, ar := b.Report(), a.Report()
		doc = metrics.Document{Format: metrics.Format, KS: fn.KS, Provenance: fn.Provenance, Before: &br, After: &ar, Delta: Delta(br, ar)}
	}
	doc.Work = fn.Work
	var buf bytes.Buffer
	if err := metrics.WriteDocument(&buf, doc); err != nil {
		return err
	}
	return blob.WriteFile(ctx, fn.Output, buf.Bytes())
}

// Delta returns after − before for every metric defined in both, per scope; its counts
// are the after report's.
func Delta(before, after metrics.Report) *metrics.Report {
	sub := func(b, a metrics.Scope) metrics.Scope {
		d := metrics.Scope{Counts: a.Counts, Metrics: map[string]float64{}}
		for k, av := range a.Metrics {
			if bv, ok := b.Metrics[k]; ok {
				d.Metrics[k] = av - bv
			}
		}
		return d
	}
	d := &metrics.Report{KS: after.KS, Overall: sub(before.Overall, after.Overall)}
	for name, as := range after.Categories {
		if bs, ok := before.Categories[name]; ok {
			if d.Categories == nil {
				d.Categories = map[string]metrics.Scope{}
			}
			d.Categories[name] = sub(bs, as)
		}
	}
	return d
}
