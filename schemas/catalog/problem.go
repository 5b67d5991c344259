package catalog

import (
	"errors"
	"fmt"
	"strings"
)

// Kinds of catalog problems. Every Problem wraps exactly one of them, so callers and tests
// can tell problems apart with errors.Is.
var (
	// ErrMissingColumn: a required column is absent from the header.
	ErrMissingColumn = errors.New("missing column")
	// ErrColumn: a column is present but unusable (named twice, unsupported Parquet type).
	ErrColumn = errors.New("bad column")
	// ErrSyntax: the file is not well-formed CSV or Parquet (quotes, field counts).
	ErrSyntax = errors.New("malformed file")
	// ErrNoRows: the catalog has a header but no rows.
	ErrNoRows = errors.New("no rows")
	// ErrValue: a cell is empty where a value is required, or has the wrong type.
	ErrValue = errors.New("bad value")
	// ErrBox: the bounding box columns of a row are inconsistent.
	ErrBox = errors.New("bad bounding box")
	// ErrRole: a validation row is neither query nor gallery.
	ErrRole = errors.New("bad query/gallery role")
	// ErrQueryLabel: a validation query label never occurs among validation gallery rows.
	ErrQueryLabel = errors.New("query label not in gallery")
	// ErrDuplicateID: two rows have the same item id.
	ErrDuplicateID = errors.New("duplicate item id")
	// ErrUnsafePath: an image path is empty, absolute, malformed or escapes the dataset root.
	ErrUnsafePath = errors.New("unsafe image path")
)

// Problem is one thing wrong with a catalog, located by file, line (CSV: physical line,
// 1-based, header = line 1) or row (Parquet: 1-based, header not counted), and column.
type Problem struct {
	// File is the catalog name or URI.
	File string
	// Unit is "line" (CSV) or "row" (Parquet).
	Unit string
	// Line is the CSV line or Parquet row; 0 when the problem concerns the whole file.
	Line int64
	// Column is the column the problem is about; "" when it is about the whole row or file.
	Column string
	// Err says what is wrong; it wraps one of the Err* kinds above.
	Err error
}

// Error formats the problem as `FILE line N, column "C": what is wrong`.
func (p *Problem) Error() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, " %s %d", p.Unit, p.Line)
	}
	if p.Column != "" {
		if p.Line > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, " column %q", p.Column)
	}
	b.WriteString(": ")
	b.WriteString(p.Err.Error())
	return b.String()
}

// Unwrap returns the problem's cause, which wraps its kind.
func (p *Problem) Unwrap() error { return p.Err }

const (
	// maxKept bounds the problems held in memory for a hopeless catalog.
	maxKept = 1000
	// MaxReported is how many problems ValidationError.Error prints before "and N more".
	MaxReported = 50
)

// ValidationError lists the problems of a catalog that failed validation. It is a
// multi-error (Unwrap() []error), so errors.Is(err, ErrBox) and the like work on it.
type ValidationError struct {
	// File is the catalog name or URI.
	File string
	// Problems holds the first problems found (at most 1000), in file order, with the
	// cross-row problems (query labels, missing role columns) last.
	Problems []*Problem
	// Total counts every problem found, including those not kept in Problems.
	Total int
}

// Error prints the first MaxReported problems, one per line, then "and N more".
func (e *ValidationError) Error() string {
	var b strings.Builder
	noun := "problems"
	if e.Total == 1 {
		noun = "problem"
	}
	fmt.Fprintf(&b, "catalog %s: %d %s", e.File, e.Total, noun)
	for i, p := range e.Problems {
		if i == MaxReported {
			break
		}
		b.WriteString("\n")
		b.WriteString(p.Error())
	}
	if n := e.Total - min(len(e.Problems), MaxReported); n > 0 {
		fmt.Fprintf(&b, "\n... and %d more", n)
	}
	return b.String()
}

// Unwrap returns the kept problems.
func (e *ValidationError) Unwrap() []error {
	errs := make([]error, len(e.Problems))
	for i, p := range e.Problems {
		errs[i] = p
	}
	return errs
}

// problems collects the problems of one catalog file.
type problems struct {
	file, unit string
	err        ValidationError
}

func (ps *problems) add(line int64, column string, err error) {
	ps.err.Total++
	if len(ps.err.Problems) < maxKept {
		ps.err.Problems = append(ps.err.Problems, &Problem{File: ps.file, Unit: ps.unit, Line: line, Column: column, Err: err})
	}
}

// headerLine is where header problems are reported: line 1 of a CSV file, nowhere in
// particular (0) for Parquet.
func (ps *problems) headerLine() int64 {
	if ps.unit == "line" {
		return 1
	}
	return 0
}

func (ps *problems) any() bool { return ps.err.Total > 0 }

// result returns the ValidationError, or nil when there is no problem.
func (ps *problems) result() error {
	if !ps.any() {
		return nil
	}
	e := ps.err
	e.File = ps.file
	return &e
}
