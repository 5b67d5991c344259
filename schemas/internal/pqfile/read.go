package pqfile

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/stirpipe/stirpipe/schemas/blob"
)

// batchRows is the number of rows per Arrow batch when reading: a reader holds one batch
// and the decoding buffers it needs (384 KiB of values for 384-wide embeddings, 25,600
// neighbours for lists of 100).
const batchRows = 256

// readProperties make a reader stream each column chunk page by page through a small
// buffer (local files are read in place), instead of reading whole column chunks into
// memory first: an embeddings row group's vectors are tens of MB.
func readProperties() *parquet.ReaderProperties {
	props := parquet.NewReaderProperties(memory.DefaultAllocator)
	props.BufferedStreamEnabled = true
	return props
}

// File is an open Parquet file. A local file is read in place; a gs:// object is read into
// memory once (a shard is a bounded fraction of the output).
type File struct {
	// URI is the path or gs:// URI the file was opened from.
	URI string
	// Size is the size of the file in bytes.
	Size int64

	pf *file.Reader
	fr *pqarrow.FileReader
}

// Open opens the Parquet file at uri and reads its footer.
func Open(ctx context.Context, uri string) (*File, error) {
	src, size, err := openSource(ctx, uri)
	if err != nil {
		return nil, err
	}
	return open(uri, src, size)
}

// OpenRanged is Open for a reader of a few columns: a gs:// object is read by ranged
// requests, only the footer and the column chunks asked for, instead of whole.
func OpenRanged(ctx context.Context, uri string) (*File, error) {
	src, size, err := RangedSource(ctx, uri)
	if err != nil {
		return nil, err
	}
	return open(uri, src, size)
}

// RangedSource opens uri for random access without reading it whole: a local file in
// place, a gs:// object by ranged requests. Close the result if it is an io.Closer.
func RangedSource(ctx context.Context, uri string) (ipc.ReadAtSeeker, int64, error) {
	if !blob.IsGCS(uri) {
		return openSource(ctx, uri)
	}
	size, err := blob.Size(ctx, uri)
	if err != nil {
		return nil, 0, err
	}
	return &rangedObject{ctx: ctx, uri: uri, size: size}, size, nil
}

func open(uri string, src ipc.ReadAtSeeker, size int64) (*File, error) {
	pf, err := file.NewParquetReader(src, file.WithReadProps(readProperties()))
	if err != nil {
		if c, ok := src.(io.Closer); ok {
			c.Close()
		}
		return nil, fmt.Errorf("%s: not a readable Parquet file: %w", uri, err)
	}
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: batchRows}, memory.DefaultAllocator)
	if err != nil {
		pf.Close()
		return nil, fmt.Errorf("%s: %w", uri, err)
	}
	return &File{URI: uri, Size: size, pf: pf, fr: fr}, nil
}

// openSource opens uri for random access: a local file in place, a gs:// object read into
// memory. Close the result if it is an io.Closer.
func openSource(ctx context.Context, uri string) (src ipc.ReadAtSeeker, size int64, err error) {
	if blob.IsGCS(uri) {
		data, err := blob.ReadFile(ctx, uri)
		if err != nil {
			return nil, 0, err
		}
		return bytes.NewReader(data), int64(len(data)), nil
	}
	f, err := os.Open(uri)
	if err != nil {
		return nil, 0, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, st.Size(), nil
}

// rangedObject reads a gs:// object by ranged requests.
type rangedObject struct {
	ctx       context.Context
	uri       string
	size, pos int64
}

func (o *rangedObject) ReadAt(p []byte, off int64) (int, error) {
	if off >= o.size {
		return 0, io.EOF
	}
	n := min(int64(len(p)), o.size-off)
	r, err := blob.OpenRange(o.ctx, o.uri, off, n)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	m, err := io.ReadFull(r, p[:n])
	if err == nil && m < len(p) {
		err = io.EOF
	}
	return m, err
}

func (o *rangedObject) Read(p []byte) (int, error) {
	n, err := o.ReadAt(p, o.pos)
	o.pos += int64(n)
	return n, err
}

func (o *rangedObject) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekCurrent:
		offset += o.pos
	case io.SeekEnd:
		offset += o.size
	}
	if offset < 0 {
		return 0, fmt.Errorf("%s: seek to %d", o.uri, offset)
	}
	o.pos = offset
	return offset, nil
}

// Close releases the file.
func (f *File) Close() error { return f.pf.Close() }

// NumRows returns the number of rows in the file.
func (f *File) NumRows() int64 { return f.pf.NumRows() }

// KeyValue returns the file's key-value metadata.
func (f *File) KeyValue() map[string]string {
	kv := f.pf.MetaData().KeyValueMetadata()
	out := make(map[string]string, kv.Len())
	keys, vals := kv.Keys(), kv.Values()
	for i := range keys {
		out[keys[i]] = vals[i]
	}
	return out
}

// Schema returns the file's Arrow schema (the stored one when the writer kept it).
func (f *File) Schema() (*arrow.Schema, error) {
	s, err := f.fr.Schema()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.URI, err)
	}
	return s, nil
}

// Each calls fn with every record batch of the file in order; a batch is valid only during
// the call. Memory is bounded by one row group.
func (f *File) Each(ctx context.Context, fn func(arrow.RecordBatch) error) error {
	rr, err := f.fr.GetRecordReader(ctx, nil, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", f.URI, err)
	}
	defer rr.Release()
	for rr.Next() {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(rr.RecordBatch()); err != nil {
			return err
		}
	}
	if err := rr.Err(); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: %w", f.URI, err)
	}
	return nil
}

// EachColumns is Each, decoding only the named top-level columns (in the batch, in file
// order): a reader that needs a few small columns of a wide file reads only those.
func (f *File) EachColumns(ctx context.Context, names []string, fn func(arrow.RecordBatch) error) error {
	schema := f.pf.MetaData().Schema
	var leaves []int
	for _, name := range names {
		i := schema.ColumnIndexByName(name)
		if i < 0 {
			return fmt.Errorf("%s: no column %q", f.URI, name)
		}
		leaves = append(leaves, i)
	}
	rr, err := f.fr.GetRecordReader(ctx, leaves, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", f.URI, err)
	}
	defer rr.Release()
	for rr.Next() {
		if err := fn(rr.RecordBatch()); err != nil {
			return err
		}
	}
	if err := rr.Err(); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: %w", f.URI, err)
	}
	return nil
}

// Column returns the column called name of rec as array type A, or an error naming the file
// and the expected type.
func Column[A arrow.Array](rec arrow.RecordBatch, uri, name string) (A, error) {
	var zero A
	idx := rec.Schema().FieldIndices(name)
	if len(idx) != 1 {
		return zero, fmt.Errorf("%s: want exactly one column %q, found %d", uri, name, len(idx))
	}
	a, ok := rec.Column(idx[0]).(A)
	if !ok {
		return zero, fmt.Errorf("%s: column %q has type %s, want %T", uri, name, rec.Column(idx[0]).DataType(), zero)
	}
	return a, nil
}

// Col names a column and where BindColumns puts it: a pointer to a variable of the
// column's typed array, e.g. **array.String.
type Col struct {
	Name string
	Dst  any
}

// BindColumns sets every destination to its column of rec, as Column does, and reports
// every missing or mistyped column at once.
func BindColumns(rec arrow.RecordBatch, uri string, cols ...Col) error {
	var errs []error
	for _, c := range cols {
		dst := reflect.ValueOf(c.Dst).Elem()
		idx := rec.Schema().FieldIndices(c.Name)
		if len(idx) != 1 {
			errs = append(errs, fmt.Errorf("%s: want exactly one column %q, found %d", uri, c.Name, len(idx)))
			continue
		}
		col := reflect.ValueOf(rec.Column(idx[0]))
		if !col.Type().AssignableTo(dst.Type()) {
			errs = append(errs, fmt.Errorf("%s: column %q has type %s, want %s", uri, c.Name, rec.Column(idx[0]).DataType(), dst.Type()))
			continue
		}
		dst.Set(col)
	}
	return errors.Join(errs...)
}

// CheckFields reports every difference between the fields of got and want (names, types,
// nullability, in order); schema metadata is not compared.
func CheckFields(uri string, got, want *arrow.Schema) error {
	var errs []error
	if got.NumFields() != want.NumFields() {
		errs = append(errs, fmt.Errorf("%s: %d columns, want %d (%s)", uri, got.NumFields(), want.NumFields(), fieldNames(want)))
	}
	for i := range min(got.NumFields(), want.NumFields()) {
		g, w := got.Field(i), want.Field(i)
		if g.Name != w.Name || !arrow.TypeEqual(g.Type, w.Type) || g.Nullable != w.Nullable {
			errs = append(errs, fmt.Errorf("%s: column %d is %s %s (nullable=%t), want %s %s (nullable=%t)",
				uri, i, g.Name, g.Type, g.Nullable, w.Name, w.Type, w.Nullable))
		}
	}
	return errors.Join(errs...)
}

func fieldNames(s *arrow.Schema) []string {
	out := make([]string, s.NumFields())
	for i, f := range s.Fields() {
		out[i] = f.Name
	}
	return out
}

// JoinLimited joins errs like errors.Join but keeps only the first limit of them, adding a
// count of the rest, so a file with a million bad rows gives a readable error.
func JoinLimited(errs []error, limit int) error {
	if len(errs) <= limit {
		return errors.Join(errs...)
	}
	kept := append(errs[:limit:limit], fmt.Errorf("… and %d more problems", len(errs)-limit))
	return errors.Join(kept...)
}
