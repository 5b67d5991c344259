package catalog

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"fmt"
	"io"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/stirpipe/stirpipe/schemas/blob"
	"github.com/stirpipe/stirpipe/schemas/internal/pqfile"
)

// Scan is a catalog that was read once and validated as a whole without keeping its rows,
// with what is needed to read it back in pieces on many workers: a launcher checks a
// catalog of any size in constant memory (but for 16 bytes a row of id hashes), and each
// worker reads only its own piece.
type Scan struct {
	// URI is the catalog's location; Format is FormatCSV or FormatParquet.
	URI, Format string
	// Snapshot is "sha256:<hex>" of the file's bytes, as Catalog.Snapshot.
	Snapshot string
	// HasIDs says the ids come from an `id` column.
	HasIDs bool
	// Rows counts the catalog's rows.
	Rows int64
	// File is the size and version the catalog had when scanned; a piece is read only
	// from the same version.
	File blob.Info
	// Header is a CSV file's header, which every piece is parsed with.
	Header []string
	// Pieces cover every row once, in file order.
	Pieces []Piece
}

// Piece is a run of whole records: a byte range of a CSV file, or row groups of a Parquet
// file.
type Piece struct {
	// Offset and Length are a CSV piece's byte range.
	Offset, Length int64
	// RowGroups are a Parquet piece's row groups.
	RowGroups []int
	// First is the line (CSV) or row number (Parquet) of the piece's first row.
	First int64
	// Rows counts the piece's rows.
	Rows int64
}

// ScanFile reads and validates the catalog at uri, as Load does, and cuts it into pieces of
// about rowsPerPiece rows (Parquet: whole row groups).
func ScanFile(ctx context.Context, uri string, opts Options, rowsPerPiece int64) (*Scan, error) {
	format, err := formatOf(uri, opts)
	if err != nil {
		return nil, err
	}
	info, err := blob.Stat(ctx, uri)
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	s := &Scan{URI: uri, Format: format, File: info}
	if format == FormatCSV {
		err = s.scanCSV(ctx, max(rowsPerPiece, 1))
	} else {
		err = s.scanParquet(ctx, max(rowsPerPiece, 1))
	}
	if err != nil {
		return nil, err
	}
	if after, err := blob.Stat(ctx, uri); err != nil || after != info {
		return nil, fmt.Errorf("catalog %s changed while it was read: run again once it is written", uri)
	}
	return s, nil
}

func (s *Scan) scanCSV(ctx context.Context, rowsPerPiece int64) error {
	r, err := blob.Open(ctx, s.URI)
	if err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	defer r.Close()
	h := sha256.New()
	br := bufio.NewReader(io.TeeReader(r, h))
	var bom int64
	if b, err := br.Peek(len(utf8BOM)); err == nil && bytes.Equal(b, utf8BOM) {
		br.Discard(len(utf8BOM))
		bom = int64(len(utf8BOM))
	}
	cr := csv.NewReader(br)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	var start int64 // the open piece's start
	open := Piece{}
	ps := &problems{file: s.URI, unit: "line"}
	res, err := parseCSV(cr, ps, csvPass{
		emit: func(Row) {},
		after: func(names []string, line, end int64) {
			if line == 0 {
				s.Header, start = names, bom+end
				return
			}
			if open.Rows == 0 {
				open = Piece{Offset: start, First: line}
			}
			open.Rows++
			s.Rows++
			if open.Rows == rowsPerPiece {
				open.Length = bom + end - open.Offset
				s.Pieces = append(s.Pieces, open)
				open, start = Piece{}, bom+end
			}
		},
	})
	if err != nil {
		return fmt.Errorf("catalog %s: %w", s.URI, err)
	}
	if _, err := io.Copy(io.Discard, br); err != nil {
		return fmt.Errorf("catalog %s: %w", s.URI, err)
	}
	if err := ps.result(); err != nil {
		return err
	}
	if open.Rows > 0 {
		open.Length = s.File.Size - open.Offset
		s.Pieces = append(s.Pieces, open)
	}
	s.HasIDs, s.Snapshot = res.hasIDs, "sha256:"+hex.EncodeToString(h.Sum(nil))
	return nil
}

// scanParquet validates a Parquet catalog read in place (a gs:// one by ranged requests),
// one record batch at a time, then hashes its bytes in a second streaming pass.
func (s *Scan) scanParquet(ctx context.Context, rowsPerPiece int64) error {
	src, closeSrc, err := parquetSource(ctx, s.URI)
	if err != nil {
		return err
	}
	defer closeSrc()
	ps := &problems{file: s.URI, unit: "row"}
	var groups []int64 // rows per row group
	res, err := withParquet(s.URI, src, func(fr *pqarrow.FileReader) (parsed, error) {
		md := fr.ParquetReader().MetaData()
		for g := range md.NumRowGroups() {
			groups = append(groups, md.RowGroup(g).NumRows())
		}
		return parseParquet(fr, ps, parquetPass{emit: func(Row) {}})
	})
	if err != nil {
		return err
	}
	if err := ps.result(); err != nil {
		return err
	}
	open := Piece{First: 1}
	for g, n := range groups {
		open.RowGroups = append(open.RowGroups, g)
		open.Rows += n
		s.Rows += n
		if open.Rows >= rowsPerPiece {
			s.Pieces = append(s.Pieces, open)
			open = Piece{First: s.Rows + 1}
		}
	}
	if open.Rows > 0 {
		s.Pieces = append(s.Pieces, open)
	}
	s.HasIDs = res.hasIDs
	s.Snapshot, err = SnapshotOf(ctx, s.URI)
	return err
}

// parquetSource opens a Parquet catalog for random access without reading it whole.
func parquetSource(ctx context.Context, uri string) (parquet.ReaderAtSeeker, func(), error) {
	src, _, err := pqfile.RangedSource(ctx, uri)
	if err != nil {
		return nil, nil, fmt.Errorf("catalog: %w", err)
	}
	return src, func() {
		if c, ok := src.(io.Closer); ok {
			c.Close()
		}
	}, nil
}

// ReadPiece calls fn with every row of piece i, in file order. It refuses a file that
// changed since the scan.
func (s *Scan) ReadPiece(ctx context.Context, i int, fn func(Row)) error {
	info, err := blob.Stat(ctx, s.URI)
	if err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	if info != s.File {
		return fmt.Errorf("catalog %s changed since the job was launched (%d bytes, %s; now %d bytes, %s): relaunch the job",
			s.URI, s.File.Size, s.File.Version, info.Size, info.Version)
	}
	p := s.Pieces[i]
	var n int64
	count := func(r Row) {
		n++
		fn(r)
	}
	var ps *problems
	if s.Format == FormatCSV {
		ps = &problems{file: s.URI, unit: "line"}
		r, err := blob.OpenRange(ctx, s.URI, p.Offset, p.Length)
		if err != nil {
			return fmt.Errorf("catalog: %w", err)
		}
		defer r.Close()
		cr := csv.NewReader(bufio.NewReader(r))
		cr.FieldsPerRecord = -1
		cr.ReuseRecord = true
		_, err = parseCSV(cr, ps, csvPass{header: s.Header, firstLine: p.First, emit: count})
		if err != nil {
			return fmt.Errorf("catalog %s: %w", s.URI, err)
		}
	} else {
		ps = &problems{file: s.URI, unit: "row"}
		src, closeSrc, err := parquetSource(ctx, s.URI)
		if err != nil {
			return err
		}
		defer closeSrc()
		_, err = withParquet(s.URI, src, func(fr *pqarrow.FileReader) (parsed, error) {
			return parseParquet(fr, ps, parquetPass{rowGroups: p.RowGroups, firstRow: p.First, emit: count})
		})
		if err != nil {
			return err
		}
	}
	if err := ps.result(); err != nil {
		return fmt.Errorf("catalog piece %d of %s no longer validates: %w", i, s.URI, err)
	}
	if n != p.Rows {
		return fmt.Errorf("catalog %s: piece %d holds %d rows, the scan counted %d: relaunch the job", s.URI, i, n, p.Rows)
	}
	return nil
}

// withParquet opens src as a Parquet file and runs parse on it, reporting a decoder panic
// on corrupt input as a malformed file.
func withParquet(name string, src parquet.ReaderAtSeeker, parse func(*pqarrow.FileReader) (parsed, error)) (res parsed, err error) {
	defer func() {
		if p := recover(); p != nil {
			res, err = parsed{}, fmt.Errorf("catalog %s: %w: Parquet decoder failed: %v", name, ErrSyntax, p)
		}
	}()
	pf, err := file.NewParquetReader(src)
	if err != nil {
		return parsed{}, fmt.Errorf("catalog %s: %w: not a readable Parquet file: %w", name, ErrSyntax, err)
	}
	defer pf.Close()
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: parquetBatch}, memory.DefaultAllocator)
	if err != nil {
		return parsed{}, fmt.Errorf("catalog %s: %w: %w", name, ErrSyntax, err)
	}
	res, err = parse(fr)
	if err != nil {
		return parsed{}, fmt.Errorf("catalog %s: %w", name, err)
	}
	return res, nil
}

// Regroup merges adjacent pieces into n pieces (fewer when there are fewer) of about equal
// rows.
func (s *Scan) Regroup(n int) {
	if n < 1 || n >= len(s.Pieces) {
		return
	}
	var out []Piece
	var done int64
	for _, p := range s.Pieces {
		// Start a new piece when the rows so far fill the ones before it.
		if len(out) == 0 || (len(out) < n && done >= s.Rows*int64(len(out))/int64(n)) {
			out = append(out, Piece{Offset: p.Offset, First: p.First})
		}
		last := &out[len(out)-1]
		last.Length = p.Offset + p.Length - last.Offset
		last.RowGroups = append(last.RowGroups, p.RowGroups...)
		last.Rows += p.Rows
		done += p.Rows
	}
	s.Pieces = out
}
