package embeddings

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/stirpipe/stirpipe/schemas/blob"
	"github.com/stirpipe/stirpipe/schemas/catalog"
	"github.com/stirpipe/stirpipe/schemas/internal/pqfile"
)

// Reader reads a complete embeddings output, shard by shard.
type Reader struct {
	*pqfile.Listed[Provenance]
}

// Open reads dir's manifest and checks every shard it lists: the file exists with the
// listed size and, for local files, its row count, schema and provenance agree with the
// manifest. gs:// shards are checked the same way when they are read.
func Open(ctx context.Context, dir string) (*Reader, error) {
	l, err := pqfile.OpenListed(ctx, output, dir, func(l *pqfile.Listed[Provenance], uri string, s ShardInfo) error {
		f, err := pqfile.Open(ctx, uri)
		if err != nil {
			return fmt.Errorf("shard listed in %s: %w", ManifestFile, err)
		}
		defer f.Close()
		_, err = (&Reader{l}).checkShard(f, s)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &Reader{l}, nil
}

// checkShard compares an open shard with its manifest entry and returns its schema.
func (r *Reader) checkShard(f *pqfile.File, s ShardInfo) (*arrow.Schema, error) {
	var errs []error
	if f.Size != s.Bytes {
		errs = append(errs, fmt.Errorf("%d bytes, manifest says %d", f.Size, s.Bytes))
	}
	if f.NumRows() != s.Rows {
		errs = append(errs, fmt.Errorf("%d rows, manifest says %d", f.NumRows(), s.Rows))
	}
	kv := f.KeyValue()
	if _, err := provenanceFromKV(kv); err != nil {
		errs = append(errs, err)
	}
	format := r.Manifest().Format
	keys, want := r.Provenance().keyValues(format)
	for i, k := range keys {
		if got, ok := kv[k]; ok && got != want[i] {
			errs = append(errs, fmt.Errorf("metadata %s is %q, manifest says %q", k, got, want[i]))
		}
	}
	schema, err := f.Schema()
	if err != nil {
		errs = append(errs, err)
	} else if err := pqfile.CheckFields(f.URI, schema, schemaOf(format, r.Manifest().Provenance.Dim, r.Manifest().Provenance)); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("shard %s does not match %s: %w", f.URI, ManifestFile, err)
	}
	return schema, nil
}

// Each calls fn with every record, shard by shard in name order and by item id within a
// shard. Memory is bounded by one row group of a shard (all of one shard for gs://). Each
// record owns its embedding slice. An error from fn stops the iteration and is returned.
func (r *Reader) Each(ctx context.Context, fn func(Record) error) error {
	for _, s := range r.Manifest().Shards {
		if err := r.eachInShard(ctx, s, fn); err != nil {
			return err
		}
	}
	return nil
}

// ReadAll returns every record, in the order of Each.
func (r *Reader) ReadAll(ctx context.Context) ([]Record, error) {
	return pqfile.Collect(r.Manifest().Rows, func(fn func(Record) error) error { return r.Each(ctx, fn) })
}

func (r *Reader) eachInShard(ctx context.Context, s ShardInfo, fn func(Record) error) error {
	uri := blob.Join(r.Dir(), s.File)
	f, err := pqfile.Open(ctx, uri)
	if err != nil {
		return fmt.Errorf("embeddings %s: %w", r.Dir(), err)
	}
	defer f.Close()
	if _, err := r.checkShard(f, s); err != nil {
		return fmt.Errorf("embeddings %s: %w", r.Dir(), err)
	}
	n, err := eachRecord(ctx, f, fn)
	if err != nil {
		return err
	}
	if n != s.Rows {
		return fmt.Errorf("%s: read %d rows, manifest says %d", uri, n, s.Rows)
	}
	return nil
}

// eachRecord calls fn with every record of an open file and returns how many there were.
func eachRecord(ctx context.Context, f *pqfile.File, fn func(Record) error) (int64, error) {
	var n int64
	err := f.Each(ctx, func(rec arrow.RecordBatch) error {
		cols, err := bindColumns(rec, f.URI)
		if err != nil {
			return err
		}
		for i := range int(rec.NumRows()) {
			if err := fn(cols.record(i)); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

// columns are the typed columns of one record batch.
type columns struct {
	id, path, split, category, sequence *array.String
	fingerprint                         *array.String // nil in FormatV1 files
	label, x1, y1, x2, y2, line         *array.Int64
	isQuery, isGallery                  *array.Boolean
	emb                                 *array.FixedSizeList
	values                              []float32
}

func bindColumns(rec arrow.RecordBatch, uri string) (*columns, error) {
	c := &columns{}
	var emb *array.FixedSizeList
	err := pqfile.BindColumns(rec, uri, []pqfile.Col{{Name: colItemID, Dst: &c.id}, {Name: colPath, Dst: &c.path},
		{Name: colSplit, Dst: &c.split}, {Name: colCategory, Dst: &c.category}, {Name: colSequence, Dst: &c.sequence},
		{Name: colLabel, Dst: &c.label}, {Name: colX1, Dst: &c.x1}, {Name: colY1, Dst: &c.y1},
		{Name: colX2, Dst: &c.x2}, {Name: colY2, Dst: &c.y2}, {Name: colLine, Dst: &c.line},
		{Name: colIsQuery, Dst: &c.isQuery}, {Name: colIsGallery, Dst: &c.isGallery}, {Name: colEmbedding, Dst: &emb}}...)
	if err != nil {
		return nil, err
	}
	if len(rec.Schema().FieldIndices(colFingerprint)) > 0 {
		if err := pqfile.BindColumns(rec, uri, pqfile.Col{Name: colFingerprint, Dst: &c.fingerprint}); err != nil {
			return nil, err
		}
	}
	vals, ok := emb.ListValues().(*array.Float32)
	if !ok {
		return nil, fmt.Errorf("%s: embedding values are %s, want float", uri, emb.ListValues().DataType())
	}
	c.emb, c.values = emb, vals.Float32Values()
	return c, nil
}

// record converts row i; strings are copied so that records outlive the batch.
func (c *columns) record(i int) Record {
	row := catalog.Row{
		ID:        strings.Clone(c.id.Value(i)),
		Line:      c.line.Value(i),
		Label:     c.label.Value(i),
		Path:      strings.Clone(c.path.Value(i)),
		Split:     strings.Clone(c.split.Value(i)),
		IsQuery:   c.isQuery.Value(i),
		IsGallery: c.isGallery.Value(i),
	}
	if c.category.IsValid(i) {
		row.Category = strings.Clone(c.category.Value(i))
	}
	if c.sequence.IsValid(i) {
		row.Sequence = strings.Clone(c.sequence.Value(i))
	}
	if c.x1.IsValid(i) {
		row.HasBox = true
		row.X1, row.Y1, row.X2, row.Y2 = c.x1.Value(i), c.y1.Value(i), c.x2.Value(i), c.y2.Value(i)
	}
	rec := Record{Row: row}
	if c.fingerprint != nil && c.fingerprint.IsValid(i) {
		rec.Fingerprint = strings.Clone(c.fingerprint.Value(i))
	}
	start, end := c.emb.ValueOffsets(i)
	rec.Embedding = slices.Clone(c.values[start:end])
	return rec
}
