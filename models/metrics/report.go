package metrics

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Scope holds the counts and means of OVERALL or of one category.
type Scope struct {
	// Counts counts the scope's queries by edge case.
	Counts Counts `json:"counts"`
	// Metrics maps Key(metric, k) to the mean over the scope's queries. A precision mean
	// is absent when no query of the scope has a defined precision.
	Metrics map[string]float64 `json:"metrics"`
}

// Mean returns the mean of metric m at cutoff k, and whether it is defined.
func (s Scope) Mean(m Metric, k int) (float64, bool) {
	v, ok := s.Metrics[Key(m, k)]
	return v, ok
}

// Report holds the result of one evaluation.
type Report struct {
	// KS holds the cutoffs (written once per Document, not per report).
	KS Options `json:"-"`
	// Overall covers every query.
	Overall Scope `json:"overall"`
	// Categories covers the queries of each category (absent without categories).
	Categories map[string]Scope `json:"categories,omitempty"`
}

// CategoryNames returns the category names in sorted order.
func (r Report) CategoryNames() []string {
	names := make([]string, 0, len(r.Categories))
	for name := range r.Categories {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// Format identifies version 1 of the metrics.json document.
const Format = "stir.metrics/v1"

// Document is the metrics.json file:
//
//	{"format": "stir.metrics/v1",
//	 "ks": {"cmc": [1, 5], "precision": [5], "map": [5]},
//	 "provenance": {"model": "...", ...},
//	 "overall": {"counts": {...}, "metrics": {"cmc@1": 0.86, ...}},
//	 "categories": {"bicycle": {"counts": {...}, "metrics": {...}}, ...}}
//
// A single evaluation is the embedded Report, at the top level. A comparison (embeddings
// alone against STIR reranking) leaves it nil and fills Before, After and Delta, each
// with the same shape, under the same "ks".
type Document struct {
	// Format is always Format.
	Format string `json:"format"`
	// KS holds the cutoffs of every report in the document.
	KS Options `json:"ks"`
	// Provenance records what was evaluated: models, catalog, run parameters.
	Provenance map[string]string `json:"provenance,omitempty"`
	// Report is the single evaluation ("overall" and "categories" at the top level).
	*Report
	// Before is the evaluation of the embeddings alone in a comparison.
	Before *Report `json:"before,omitempty"`
	// After is the evaluation after reranking in a comparison.
	After *Report `json:"after,omitempty"`
	// Delta holds After − Before per metric in a comparison (its counts are the
	// writer's choice; a reader should take counts from Before and After).
	Delta *Report `json:"delta,omitempty"`
	// Work counts, per stage, what a run that reused earlier work (a refresh or a resumed
	// run) reused, recomputed and removed; absent from a run that started from nothing.
	Work map[string]map[string]int64 `json:"work,omitempty"`
}

// WithoutWork returns a metrics document's JSON without its work counts, which differ
// between runs that reach the same results with more or less reuse: for comparing runs.
func WithoutWork(data []byte) ([]byte, error) {
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("metrics document: %w", err)
	}
	delete(doc, "work")
	return json.Marshal(doc)
}

// NewDocument returns the document of a single evaluation.
func NewDocument(r Report, provenance map[string]string) Document {
	return Document{Format: Format, KS: r.KS, Provenance: provenance, Report: &r}
}

// reports returns the document's non-nil reports by JSON name.
func (d Document) reports() map[string]*Report {
	out := map[string]*Report{}
	for name, r := range map[string]*Report{"": d.Report, "before": d.Before, "after": d.After, "delta": d.Delta} {
		if r != nil {
			out[name] = r
		}
	}
	return out
}

// Validate reports every problem with the document at once.
func (d Document) Validate() error {
	var errs []error
	if d.Format != Format {
		errs = append(errs, fmt.Errorf("metrics document: format %q, want %q", d.Format, Format))
	}
	if err := d.KS.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("metrics document: ks: %w", err))
	}
	reports := d.reports()
	if len(reports) == 0 {
		errs = append(errs, errors.New(`metrics document: no report: want "overall" at the top level or "before"/"after"`))
	}
	known := map[string]bool{}
	for _, m := range Metrics {
		for _, k := range d.KS.Ks(m) {
			known[Key(m, k)] = true
		}
	}
	for _, rname := range []string{"", "before", "after", "delta"} {
		r, ok := reports[rname]
		if !ok {
			continue
		}
		where := "top level"
		if rname != "" {
			where = rname
		}
		if r.KS.Validate() == nil && !r.KS.equal(d.KS) {
			errs = append(errs, fmt.Errorf("metrics document: %s: report cutoffs %+v differ from the document's %+v", where, r.KS, d.KS))
		}
		scopes := []Scope{r.Overall}
		snames := []string{"overall"}
		for _, name := range r.CategoryNames() {
			scopes = append(scopes, r.Categories[name])
			snames = append(snames, "categories."+strconv.Quote(name))
		}
		for i, s := range scopes {
			keys := make([]string, 0, len(s.Metrics))
			for key := range s.Metrics {
				keys = append(keys, key)
			}
			sort.Strings(keys)
			for _, key := range keys {
				v := s.Metrics[key]
				if !known[key] {
					errs = append(errs, fmt.Errorf("metrics document: %s: %s: metric %q is not one of the cutoffs in \"ks\"", where, snames[i], key))
				}
				if math.IsNaN(v) || math.IsInf(v, 0) {
					errs = append(errs, fmt.Errorf("metrics document: %s: %s: %s = %v, want a finite number", where, snames[i], key, v))
				}
			}
		}
	}
	return errors.Join(errs...)
}

// WriteDocument validates d and writes it as indented JSON.
func WriteDocument(w io.Writer, d Document) error {
	if err := d.Validate(); err != nil {
		return err
	}
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return fmt.Errorf("metrics document: encode: %w", err)
	}
	if _, err := w.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("metrics document: write: %w", err)
	}
	return nil
}

// ReadDocument reads and validates a metrics.json document; unknown fields are errors.
// Every report in it gets the document's cutoffs.
func ReadDocument(r io.Reader) (Document, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return Document{}, fmt.Errorf("metrics document: read: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var d Document
	if err := dec.Decode(&d); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			line, col := position(data, se.Offset)
			return Document{}, fmt.Errorf("metrics document: line %d, column %d: %w", line, col, err)
		}
		return Document{}, fmt.Errorf("metrics document: decode: %w", err)
	}
	if err := d.Validate(); err != nil {
		return Document{}, err
	}
	for _, rep := range d.reports() {
		rep.KS = d.KS
	}
	return d, nil
}

// position converts a byte offset to a 1-based line and column.
func position(data []byte, off int64) (line, col int) {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	before := data[:off]
	line = bytes.Count(before, []byte("\n")) + 1
	col = int(off) - (bytes.LastIndexByte(before, '\n') + 1)
	return line, col
}

// WriteTable prints r as an aligned table: one row per metric and cutoff, then the
// counts; one column for OVERALL and one per category (sorted). Undefined means print
// as "n/a".
func WriteTable(w io.Writer, r Report) error {
	names := r.CategoryNames()
	scopes := []Scope{r.Overall}
	for _, n := range names {
		scopes = append(scopes, r.Categories[n])
	}
	var rows [][]string
	rows = append(rows, append([]string{"metric", "OVERALL"}, names...))
	for _, m := range Metrics {
		for _, k := range r.KS.Ks(m) {
			cells := []string{Key(m, k)}
			for _, s := range scopes {
				if v, ok := s.Mean(m, k); ok {
					cells = append(cells, strconv.FormatFloat(v, 'f', 4, 64))
				} else {
					cells = append(cells, "n/a")
				}
			}
			rows = append(rows, cells)
		}
	}
	counts := []struct {
		name string
		get  func(Counts) int64
	}{
		{"queries", func(c Counts) int64 { return c.Queries }},
		{"no relevant (n=0)", func(c Counts) int64 { return c.NoRelevant }},
		{"empty list", func(c Counts) int64 { return c.EmptyList }},
		{"empty, n=0 (all 1.0)", func(c Counts) int64 { return c.EmptyNoRelevant }},
		{"precision undefined", func(c Counts) int64 { return c.UndefinedPrecision }},
		{fmt.Sprintf("list < %d", r.KS.MaxK()), func(c Counts) int64 { return c.ShortList }},
	}
	for _, c := range counts {
		cells := []string{c.name}
		for _, s := range scopes {
			cells = append(cells, strconv.FormatInt(c.get(s.Counts), 10))
		}
		rows = append(rows, cells)
	}
	// The first column aligns left, the others right; columns are two spaces apart.
	widths := make([]int, len(rows[0]))
	for _, cells := range rows {
		for i, c := range cells {
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	var b strings.Builder
	for _, cells := range rows {
		for i, c := range cells {
			pad := strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c))
			if i == 0 {
				b.WriteString(c + pad)
			} else {
				b.WriteString("  " + pad + c)
			}
		}
		b.WriteByte('\n')
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("metrics table: %w", err)
	}
	return nil
}
