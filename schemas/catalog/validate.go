package catalog

import (
	"cmp"
	"fmt"
	"hash/maphash"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Split values.
const (
	SplitTrain      = "train"
	SplitValidation = "validation"
)

// Column names of OML's dataframe format (plus the optional `id`).
const (
	ColLabel     = "label"
	ColPath      = "path"
	ColSplit     = "split"
	ColIsQuery   = "is_query"
	ColIsGallery = "is_gallery"
	ColCategory  = "category"
	ColSequence  = "sequence"
	ColX1        = "x_1"
	ColX2        = "x_2"
	ColY1        = "y_1"
	ColY2        = "y_2"
	ColID        = "id"
)

// Column slots: the known columns in a fixed order.
const (
	cLabel = iota
	cPath
	cSplit
	cIsQuery
	cIsGallery
	cCategory
	cSequence
	cX1
	cX2
	cY1
	cY2
	cID
	numCols
)

var colNames = [numCols]string{ColLabel, ColPath, ColSplit, ColIsQuery, ColIsGallery,
	ColCategory, ColSequence, ColX1, ColX2, ColY1, ColY2, ColID}

// layout maps each known column slot to its position in the file, -1 when absent.
type layout [numCols]int

func (l *layout) has(c int) bool { return l[c] >= 0 }

// resolveHeader finds the known columns among names; unknown columns are ignored. It
// reports missing required columns, known columns named twice and incomplete box column
// sets, and returns false if any (the file is then not read further).
func resolveHeader(names []string, ps *problems) (layout, bool) {
	var l layout
	for i := range l {
		l[i] = -1
	}
	ok := true
	for pos, name := range names {
		c := slices.Index(colNames[:], name)
		if c < 0 {
			continue
		}
		if l[c] >= 0 {
			ps.add(ps.headerLine(), name, fmt.Errorf("%w: column named twice (positions %d and %d)", ErrColumn, l[c]+1, pos+1))
			ok = false
			continue
		}
		l[c] = pos
	}
	header := strings.Join(names, ",")
	for _, c := range []int{cLabel, cPath, cSplit} {
		if !l.has(c) {
			ps.add(ps.headerLine(), colNames[c], fmt.Errorf("%w: required column absent (header: %q)", ErrMissingColumn, header))
			ok = false
		}
	}
	boxCols := []int{cX1, cX2, cY1, cY2}
	var have []string
	for _, c := range boxCols {
		if l.has(c) {
			have = append(have, colNames[c])
		}
	}
	if len(have) > 0 && len(have) < len(boxCols) {
		for _, c := range boxCols {
			if !l.has(c) {
				ps.add(ps.headerLine(), colNames[c], fmt.Errorf("%w: box columns x_1, x_2, y_1, y_2 come together, header has only %s", ErrMissingColumn, strings.Join(have, ", ")))
			}
		}
		ok = false
	}
	return l, ok
}

// builder validates rows one by one and accumulates the catalog, or hands each row on.
type builder struct {
	ps   *problems
	l    layout
	rows []Row
	// emit, when set, receives every valid row (while the file has no problem so far)
	// instead of rows keeping it.
	emit func(Row)

	ids        map[uint64]int64 // item id's hash -> line of first use
	seed       maphash.Seed
	validation int64 // first validation line, 0 if none
	queries    map[int64]*labelUse
	galleries  map[int64]bool
}

type labelUse struct {
	first int64
	n     int
}

func newBuilder(ps *problems, l layout) *builder {
	return &builder{ps: ps, l: l, ids: map[uint64]int64{}, seed: maphash.MakeSeed(), queries: map[int64]*labelUse{}, galleries: map[int64]bool{}}
}

// nullMarkers are the cell spellings that mean "no value" in numeric and boolean columns:
// what pandas writes or reads as NaN / NA.
var nullMarkers = []string{"", "nan", "NaN", "NA", "<NA>", "None", "null", "NULL"}

func isNull(s string) bool { return slices.Contains(nullMarkers, s) }

// parseInt accepts a decimal integer, or an integral float such as "12.0" (pandas writes
// integer columns with missing values as floats).
func parseInt(s string) (int64, bool) {
	if v, err := strconv.ParseInt(s, 10, 64); err == nil {
		return v, true
	}
	if strings.Trim(s, "0123456789.eE+-") != "" { // no hex, inf, nan, separators
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f != math.Trunc(f) || f < math.MinInt64 || f >= math.MaxInt64 {
		return 0, false
	}
	return int64(f), true
}

// parseBool accepts what pandas writes for booleans (True/False) and the usual variants.
func parseBool(s string) (bool, bool) {
	switch strings.ToLower(s) {
	case "true", "1", "1.0":
		return true, true
	case "false", "0", "0.0":
		return false, true
	}
	return false, false
}

// add validates one data row. cell returns the raw text of a known column slot ("" when the
// column is absent or the value null) and the line to report for it.
func (b *builder) add(line int64, cell func(c int) (string, int64)) {
	r := Row{Line: line}
	bad := false
	report := func(c int, err error) {
		_, at := cell(c)
		b.ps.add(at, colNames[c], err)
		bad = true
	}
	// trimmed returns the trimmed cell and whether it holds a value.
	trimmed := func(c int) (string, bool) {
		s, _ := cell(c)
		s = strings.TrimSpace(s)
		return s, !isNull(s)
	}

	labelOK := false
	if s, ok := trimmed(cLabel); !ok {
		report(cLabel, fmt.Errorf("%w: label is required, got %q", ErrValue, s))
	} else if v, ok := parseInt(s); !ok {
		report(cLabel, fmt.Errorf("%w: want an integer label, got %q", ErrValue, s))
	} else {
		r.Label, labelOK = v, true
	}

	cleanPath := ""
	r.Path, _ = cell(cPath)
	if c, err := CleanPath(r.Path); err != nil {
		report(cPath, err)
	} else {
		cleanPath = c
	}

	split, _ := trimmed(cSplit)
	switch split {
	case SplitTrain, SplitValidation:
		r.Split = split
	default:
		report(cSplit, fmt.Errorf("%w: want split %q or %q, got %q", ErrValue, SplitTrain, SplitValidation, split))
	}
	isVal := r.Split == SplitValidation
	if isVal && b.validation == 0 {
		b.validation = line
	}

	rolesOK := true
	role := func(c int, dst *bool) {
		if !b.l.has(c) {
			rolesOK = false // reported once, in finish
			return
		}
		s, ok := trimmed(c)
		switch {
		case !ok && isVal:
			report(c, fmt.Errorf("%w: %s is required for validation rows (True or False), got %q", ErrValue, colNames[c], s))
			rolesOK = false
		case !ok:
			// Train rows may leave roles empty.
		default:
			v, ok := parseBool(s)
			if !ok {
				report(c, fmt.Errorf("%w: want a boolean (True/False/1/0), got %q", ErrValue, s))
				rolesOK = false
			}
			*dst = v
		}
	}
	role(cIsQuery, &r.IsQuery)
	role(cIsGallery, &r.IsGallery)
	if isVal && rolesOK && !r.IsQuery && !r.IsGallery {
		b.ps.add(line, "", fmt.Errorf("%w: validation row is neither query nor gallery (is_query and is_gallery both false)", ErrRole))
		bad = true
	}
	if isVal && labelOK {
		if r.IsQuery {
			if u := b.queries[r.Label]; u != nil {
				u.n++
			} else {
				b.queries[r.Label] = &labelUse{first: line, n: 1}
			}
		}
		if r.IsGallery {
			b.galleries[r.Label] = true
		}
	}

	r.Category, _ = cell(cCategory)
	r.Sequence, _ = cell(cSequence)

	boxOK := b.box(&r, trimmed, report)
	bad = bad || !boxOK

	if b.l.has(cID) {
		r.ID, _ = cell(cID)
		if strings.TrimSpace(r.ID) == "" {
			report(cID, fmt.Errorf("%w: the id column is present, so every row needs a non-empty id, got %q", ErrValue, r.ID))
		} else if first, dup := b.firstUse(r.ID, line); dup {
			report(cID, fmt.Errorf("%w: id %q is also used at %s %d", ErrDuplicateID, r.ID, b.ps.unit, first))
		}
	} else if cleanPath != "" && boxOK {
		box, _ := r.Box()
		r.ID = DerivedID(cleanPath, box)
		if first, dup := b.firstUse(r.ID, line); dup {
			b.ps.add(line, ColPath, fmt.Errorf("%w: same image and box as %s %d (derived id %s); add an id column if both rows are meant", ErrDuplicateID, b.ps.unit, first, r.ID))
			bad = true
		}
	}

	switch {
	case bad || b.ps.any():
	case b.emit != nil:
		b.emit(r)
	default:
		b.rows = append(b.rows, r)
	}
}

// firstUse records the first use of an item id and reports an earlier one. Ids are kept
// as 64-bit hashes (the width of a derived id), so that checking a catalog of any size
// holds 16 bytes a row rather than its ids.
func (b *builder) firstUse(id string, line int64) (first int64, dup bool) {
	h := maphash.String(b.seed, id)
	if first, dup := b.ids[h]; dup {
		return first, true
	}
	b.ids[h] = line
	return 0, false
}

// box parses the four box columns into r; all empty means no box.
func (b *builder) box(r *Row, trimmed func(int) (string, bool), report func(int, error)) bool {
	if !b.l.has(cX1) {
		return true
	}
	cols := [4]int{cX1, cY1, cX2, cY2}
	var vals [4]int64
	var set, empty []string
	ok := true
	for i, c := range cols {
		s, has := trimmed(c)
		if !has {
			empty = append(empty, colNames[c])
			continue
		}
		set = append(set, colNames[c])
		v, good := parseInt(s)
		if !good || v < 0 {
			report(c, fmt.Errorf("%w: want an integer ≥ 0, got %q", ErrBox, s))
			ok = false
		}
		vals[i] = v
	}
	switch {
	case len(set) == 0:
		return true
	case len(empty) > 0:
		report(cX1, fmt.Errorf("%w: box partly given (%s set, %s empty); give all four of x_1, x_2, y_1, y_2 or none", ErrBox, strings.Join(set, ", "), strings.Join(empty, ", ")))
		return false
	case !ok:
		return false
	}
	if vals[0] >= vals[2] {
		report(cX1, fmt.Errorf("%w: want x_1 < x_2, got x_1=%d x_2=%d", ErrBox, vals[0], vals[2]))
		ok = false
	}
	if vals[1] >= vals[3] {
		report(cY1, fmt.Errorf("%w: want y_1 < y_2, got y_1=%d y_2=%d", ErrBox, vals[1], vals[3]))
		ok = false
	}
	if vals[2] > math.MaxInt32 || vals[3] > math.MaxInt32 {
		report(cX2, fmt.Errorf("%w: box corner (%d, %d) is beyond any image size", ErrBox, vals[2], vals[3]))
		ok = false
	}
	if ok {
		r.HasBox = true
		r.X1, r.Y1, r.X2, r.Y2 = vals[0], vals[1], vals[2], vals[3]
	}
	return ok
}

// parsed is the outcome of reading a file without problems.
type parsed struct {
	rows   []Row
	hasIDs bool
}

// finish runs the checks that need every row and returns the validated rows.
func (b *builder) finish(nrows int64) parsed {
	if nrows == 0 {
		b.ps.add(0, "", fmt.Errorf("%w: the catalog has a header but no data rows", ErrNoRows))
	}
	if b.validation > 0 {
		for _, c := range []int{cIsQuery, cIsGallery} {
			if !b.l.has(c) {
				b.ps.add(0, colNames[c], fmt.Errorf("%w: required because the catalog has validation rows (first at %s %d)", ErrMissingColumn, b.ps.unit, b.validation))
			}
		}
	}
	type missing struct {
		label int64
		use   *labelUse
	}
	var ms []missing
	for label, u := range b.queries {
		if !b.galleries[label] {
			ms = append(ms, missing{label, u})
		}
	}
	slices.SortFunc(ms, func(a, b missing) int { return cmp.Compare(a.use.first, b.use.first) })
	for _, m := range ms {
		b.ps.add(m.use.first, ColLabel, fmt.Errorf("%w: query label %d (validation query rows: %d, the first here) never occurs among validation gallery rows", ErrQueryLabel, m.label, m.use.n))
	}
	if b.ps.any() {
		return parsed{}
	}
	return parsed{rows: b.rows, hasIDs: b.l.has(cID)}
}
