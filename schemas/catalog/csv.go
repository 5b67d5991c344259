package catalog

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// Parse reads and validates a catalog in CSV form (comma-separated, RFC 4180 quoting, an
// optional UTF-8 byte order mark, header on line 1). name is used in messages and as
// Catalog.URI. It returns a *ValidationError listing every problem, or another error when r
// fails. Dataset-root checks are Load's job: Parse checks paths only lexically (CleanPath).
func Parse(name string, r io.Reader) (*Catalog, error) {
	h := sha256.New()
	br := bufio.NewReader(io.TeeReader(r, h))
	if b, err := br.Peek(len(utf8BOM)); err == nil && bytes.Equal(b, utf8BOM) {
		br.Discard(len(utf8BOM))
	}
	cr := csv.NewReader(br)
	cr.FieldsPerRecord = -1 // counted below, so that a bad row does not stop the scan
	cr.ReuseRecord = true

	ps := &problems{file: name, unit: "line"}
	res, err := parseCSV(cr, ps, csvPass{})
	if err != nil {
		return nil, fmt.Errorf("catalog %s: %w", name, err)
	}
	if _, err := io.Copy(io.Discard, br); err != nil { // hash every byte, even after a bad header
		return nil, fmt.Errorf("catalog %s: %w", name, err)
	}
	if err := ps.result(); err != nil {
		return nil, err
	}
	return newCatalog(name, FormatCSV, res.rows, res.hasIDs, "sha256:"+hex.EncodeToString(h.Sum(nil))), nil
}

// csvPass tunes one pass of parseCSV over a whole file or over one piece of it.
type csvPass struct {
	// header, when set, is the file's header: the reader starts at a piece's first record.
	header []string
	// firstLine is the file line of a piece's first record (with header set).
	firstLine int64
	// emit, when set, receives the valid rows instead of parsed keeping them.
	emit func(Row)
	// after, when set, is called after each well-formed record with the header's names
	// (once, before the first record), the record's line and the reader's offset after it.
	after func(names []string, line, end int64)
}

// parseCSV validates every record; it returns an error only when reading fails.
func parseCSV(cr *csv.Reader, ps *problems, pass csvPass) (parsed, error) {
	names := pass.header
	var pe *csv.ParseError
	if names == nil {
		header, err := cr.Read()
		switch {
		case err == io.EOF:
			ps.add(0, "", fmt.Errorf("%w: empty file, want a header line with label,path,split,...", ErrNoRows))
			return parsed{}, nil
		case errors.As(err, &pe):
			ps.add(int64(pe.StartLine), "", fmt.Errorf("%w: header: %w", ErrSyntax, pe.Err))
			return parsed{}, nil
		case err != nil:
			return parsed{}, err
		}
		names = make([]string, len(header))
		for i, s := range header {
			names[i] = strings.TrimSpace(s)
		}
	}
	l, ok := resolveHeader(names, ps)
	if !ok {
		return parsed{}, nil
	}
	if pass.after != nil {
		pass.after(names, 0, cr.InputOffset())
	}
	b := newBuilder(ps, l)
	b.emit = pass.emit
	// shift turns the reader's lines into the file's: a piece's reader counts from 1.
	var shift int64
	var nrows int64
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if errors.As(err, &pe) {
			// The reader has consumed the bad record; carry on with the next one.
			ps.add(int64(pe.StartLine), "", fmt.Errorf("%w: %w", ErrSyntax, pe.Err))
			nrows++
			continue
		}
		if err != nil {
			return parsed{}, err
		}
		nrows++
		at, _ := cr.FieldPos(0)
		if nrows == 1 && pass.header != nil {
			shift = pass.firstLine - int64(at)
		}
		line := int64(at) + shift
		if len(rec) != len(names) {
			ps.add(line, "", fmt.Errorf("%w: %d fields, the header has %d", ErrSyntax, len(rec), len(names)))
			continue
		}
		b.add(line, func(c int) (string, int64) {
			pos := l[c]
			if pos < 0 {
				return "", line
			}
			fl, _ := cr.FieldPos(pos)
			return rec[pos], int64(fl) + shift
		})
		if pass.after != nil {
			pass.after(names, line, cr.InputOffset())
		}
	}
	if pass.header != nil {
		return parsed{hasIDs: b.l.has(cID)}, nil // a piece: the whole-file checks ran at the scan
	}
	return b.finish(nrows), nil
}

// CSVHeader is the column order WriteCSV writes: OML's dataframe columns.
var CSVHeader = []string{ColLabel, ColPath, ColSplit, ColIsQuery, ColIsGallery, ColCategory, ColX1, ColX2, ColY1, ColY2, ColSequence}

// WriteCSV writes rows as an OML catalog that Parse reads back: a header (CSVHeader, and an
// `id` column last when ids is set), then one line per row. Booleans are written True/False
// as pandas does; a train row with neither role leaves is_query and is_gallery empty; a row
// without a box leaves x_1 … y_2 empty. Row.Line is not written.
func WriteCSV(w io.Writer, rows []Row, ids bool) error {
	cw := csv.NewWriter(w)
	header := CSVHeader
	if ids {
		header = append(slices.Clone(header), ColID)
	}
	if err := cw.Write(header); err != nil {
		return fmt.Errorf("catalog: writing the header: %w", err)
	}
	rec := make([]string, len(header))
	for i, r := range rows {
		clear(rec)
		rec[0], rec[1], rec[2] = strconv.FormatInt(r.Label, 10), r.Path, r.Split
		if r.IsValidation() || r.IsQuery || r.IsGallery {
			rec[3], rec[4] = pyBool(r.IsQuery), pyBool(r.IsGallery)
		}
		rec[5] = r.Category
		if r.HasBox {
			rec[6], rec[7] = strconv.FormatInt(r.X1, 10), strconv.FormatInt(r.X2, 10)
			rec[8], rec[9] = strconv.FormatInt(r.Y1, 10), strconv.FormatInt(r.Y2, 10)
		}
		rec[10] = r.Sequence
		if ids {
			rec[11] = r.ID
		}
		if err := cw.Write(rec); err != nil {
			return fmt.Errorf("catalog: writing row %d (label %d, %s): %w", i+1, r.Label, r.Path, err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("catalog: writing: %w", err)
	}
	return nil
}

// pyBool spells a boolean as pandas writes it.
func pyBool(b bool) string {
	if b {
		return "True"
	}
	return "False"
}
