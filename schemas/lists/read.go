package lists

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/stirpipe/stirpipe/schemas/blob"
	"github.com/stirpipe/stirpipe/schemas/internal/pqfile"
)

// table is an open Parquet or Arrow IPC file.
type table interface {
	KeyValue() map[string]string
	Schema() (*arrow.Schema, error)
	Each(ctx context.Context, fn func(arrow.RecordBatch) error) error
	Close() error
}

// openTable opens uri in the format its extension names and returns it with its size.
func openTable(ctx context.Context, uri string) (table, int64, error) {
	ext, err := extOf(uri)
	if err != nil {
		return nil, 0, err
	}
	if ext == ExtArrow {
		f, err := pqfile.OpenIPC(ctx, uri)
		if err != nil {
			return nil, 0, err
		}
		return f, f.Size, nil
	}
	f, err := pqfile.Open(ctx, uri)
	if err != nil {
		return nil, 0, err
	}
	return f, f.Size, nil
}

// ReadFile reads one neighbour file (a shard, a partial or any single file), Parquet or
// Arrow IPC by its extension, checks its schema and every record against the provenance in
// its metadata, and returns its records in file order (by query id) and that provenance.
func ReadFile(ctx context.Context, uri string) ([]Record, Provenance, error) {
	var out []Record
	prov, err := eachInFile(ctx, uri, nil, -1, func(r Record) error {
		out = append(out, r)
		return nil
	})
	if err != nil {
		return nil, prov, err
	}
	return out, prov, nil
}

// eachInFile calls fn with every record of the file at uri, checked, and returns the file's
// provenance. When want is set, the file's provenance must equal it; when bytes ≥ 0, the
// file must have that size.
func eachInFile(ctx context.Context, uri string, want *Provenance, bytes int64, fn func(Record) error) (Provenance, error) {
	f, size, err := openTable(ctx, uri)
	if err != nil {
		return Provenance{}, fmt.Errorf("neighbours: %w", err)
	}
	defer f.Close()
	if bytes >= 0 {
		if err := pqfile.CheckSize(uri, size, bytes); err != nil {
			return Provenance{}, fmt.Errorf("neighbours: %w", err)
		}
	}
	prov, err := provenanceFromKV(f.KeyValue())
	if err == nil && want != nil {
		err = diffProvenance(prov, *want)
	}
	if err != nil {
		return prov, fmt.Errorf("neighbours %s: %w", uri, err)
	}
	schema, err := f.Schema()
	if err == nil {
		err = pqfile.CheckFields(uri, schema, Schema(prov))
	}
	if err != nil {
		return prov, fmt.Errorf("neighbours: %w", err)
	}
	c := newChecker(prov)
	var row int
	var prev string
	err = f.Each(ctx, func(rec arrow.RecordBatch) error {
		cols, err := bindColumns(rec, uri, prov.reranked())
		if err != nil {
			return err
		}
		for i := range int(rec.NumRows()) {
			r := cols.record(i)
			if errs := c.check(row, &r); len(errs) > 0 {
				return fmt.Errorf("%s row %d: %w", uri, row, pqfile.JoinLimited(errs, maxProblems))
			}
			if row > 0 && r.QueryID <= prev {
				return fmt.Errorf("%s row %d: query %q after %q, want rows sorted by unique query id", uri, row, r.QueryID, prev)
			}
			prev = r.QueryID
			row++
			if err := fn(r); err != nil {
				return err
			}
		}
		return nil
	})
	return prov, err
}

// columns are the typed columns of one record batch.
type columns struct {
	id, category, sequence *array.String
	label, nRelevant       *array.Int64
	ids, labels, dists     *array.List
	scores                 *array.List // nil unless reranked
	idValues               *array.String
	labelValues            []int64
	distValues, scoreVals  []float32
}

func bindColumns(rec arrow.RecordBatch, uri string, reranked bool) (*columns, error) {
	c := &columns{}
	cols := []pqfile.Col{{Name: colQueryID, Dst: &c.id}, {Name: colQueryCategory, Dst: &c.category}, {Name: colQuerySequence, Dst: &c.sequence},
		{Name: colQueryLabel, Dst: &c.label}, {Name: colNRelevant, Dst: &c.nRelevant}, {Name: colNeighborIDs, Dst: &c.ids},
		{Name: colNeighborLabels, Dst: &c.labels}, {Name: colDistances, Dst: &c.dists}}
	if reranked {
		cols = append(cols, pqfile.Col{Name: colPairScores, Dst: &c.scores})
	}
	if err := pqfile.BindColumns(rec, uri, cols...); err != nil {
		return nil, err
	}
	// The schema was checked, so the list values have the expected types.
	c.idValues = c.ids.ListValues().(*array.String)
	c.labelValues = c.labels.ListValues().(*array.Int64).Int64Values()
	c.distValues = c.dists.ListValues().(*array.Float32).Float32Values()
	if reranked {
		c.scoreVals = c.scores.ListValues().(*array.Float32).Float32Values()
	}
	return c, nil
}

// record converts row i; everything is copied so that records outlive the batch.
func (c *columns) record(i int) Record {
	r := Record{
		QueryID:    strings.Clone(c.id.Value(i)),
		QueryLabel: c.label.Value(i),
		NRelevant:  c.nRelevant.Value(i),
	}
	if c.category.IsValid(i) {
		r.QueryCategory = strings.Clone(c.category.Value(i))
	}
	if c.sequence.IsValid(i) {
		r.QuerySequence = strings.Clone(c.sequence.Value(i))
	}
	start, end := c.ids.ValueOffsets(i)
	r.NeighborIDs = make([]string, end-start)
	for j := range r.NeighborIDs {
		r.NeighborIDs[j] = strings.Clone(c.idValues.Value(int(start) + j))
	}
	start, end = c.labels.ValueOffsets(i)
	r.NeighborLabels = slices.Clone(c.labelValues[start:end])
	start, end = c.dists.ValueOffsets(i)
	r.Distances = slices.Clone(c.distValues[start:end])
	if c.scores != nil {
		start, end = c.scores.ValueOffsets(i)
		r.PairScores = slices.Clone(c.scoreVals[start:end])
	}
	return r
}

// Reader reads a complete neighbours or reranked output, shard by shard.
type Reader struct {
	*pqfile.Listed[Provenance]
}

// Open reads dir's manifest and checks every shard it lists: the file exists with the
// listed size and, for local files, its schema and provenance agree with the manifest.
// gs:// shards are checked the same way when they are read; row counts and records are
// checked when read.
func Open(ctx context.Context, dir string) (*Reader, error) {
	l, err := pqfile.OpenListed(ctx, output, dir, func(l *pqfile.Listed[Provenance], uri string, s ShardInfo) error {
		return (&Reader{l}).checkShard(ctx, uri, s)
	})
	if err != nil {
		return nil, err
	}
	return &Reader{l}, nil
}

// checkShard opens the shard s at uri and compares its size, provenance and schema with the
// manifest.
func (r *Reader) checkShard(ctx context.Context, uri string, s ShardInfo) error {
	f, size, err := openTable(ctx, uri)
	if err != nil {
		return fmt.Errorf("shard listed in %s: %w", ManifestFile, err)
	}
	defer f.Close()
	var errs []error
	errs = append(errs, pqfile.CheckSize(uri, size, s.Bytes))
	prov, err := provenanceFromKV(f.KeyValue())
	if err == nil {
		err = diffProvenance(prov, r.Manifest().Provenance)
	}
	errs = append(errs, err)
	schema, err := f.Schema()
	if err == nil {
		err = pqfile.CheckFields(uri, schema, Schema(r.Manifest().Provenance))
	}
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("shard %s does not match %s: %w", uri, ManifestFile, err)
	}
	return nil
}

// Each calls fn with every record, shard by shard in name order and by query id within a
// shard, each checked as it is read. Memory is bounded by one row group of a shard (all of
// one shard for gs://). Records own their slices. An error from fn stops the iteration and
// is returned.
func (r *Reader) Each(ctx context.Context, fn func(Record) error) error {
	prov := r.Provenance()
	for _, s := range r.Manifest().Shards {
		uri := blob.Join(r.Dir(), s.File)
		var n int64
		_, err := eachInFile(ctx, uri, &prov, s.Bytes, func(rec Record) error {
			n++
			return fn(rec)
		})
		if err != nil {
			return err
		}
		if n != s.Rows {
			return fmt.Errorf("neighbours %s: %s: read %d rows, manifest says %d", r.Dir(), uri, n, s.Rows)
		}
	}
	return nil
}

// ReadAll returns every record, in the order of Each.
func (r *Reader) ReadAll(ctx context.Context) ([]Record, error) {
	return pqfile.Collect(r.Manifest().Rows, func(fn func(Record) error) error { return r.Each(ctx, fn) })
}
