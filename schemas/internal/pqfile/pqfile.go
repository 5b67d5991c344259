// Package pqfile is the Parquet (and Arrow IPC) plumbing shared by the stage files of
// package schemas (embeddings, rejects, neighbors): it sorts records into a deterministic
// order, builds Arrow record batches one row group at a time, writes them to one Parquet or
// Arrow IPC file published atomically through package blob, opens such files again, locally
// or on gs://, for streaming reads, reads typed values from their key-value metadata, and
// writes, reads and checks the JSON manifests that list a stage output's shards.
//
// The same records and schema always give the same bytes: the order is fixed by the caller's
// comparison, and nothing time- or host-dependent is written.
package pqfile

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"path"
	"slices"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/stirpipe/stirpipe/schemas/blob"
)

// Info describes one published Parquet file; it is what a manifest lists per shard.
type Info struct {
	// File is the base name of the file, e.g. part-00003-of-00016.parquet.
	File string `json:"file"`
	// Rows is the number of records in the file.
	Rows int64 `json:"rows"`
	// Bytes is the size of the file.
	Bytes int64 `json:"bytes"`
	// SHA256 is the hex SHA-256 of the file's bytes.
	SHA256 string `json:"sha256"`
}

// Spec says how to write records of type T.
type Spec[T any] struct {
	// Schema is the Arrow schema of every file, including its key-value metadata (which
	// becomes the Parquet file's key-value metadata).
	Schema *arrow.Schema
	// Compare orders the records; it should be a total order on distinct records so that the
	// output does not depend on the input order.
	Compare func(a, b *T) int
	// Append appends one record as one row to b, whose fields follow Schema.
	Append func(b *array.RecordBuilder, r *T)
	// RowGroupRows is the number of rows per row group (and per Arrow batch in memory).
	RowGroupRows int
	// Props are extra Parquet writer properties, e.g. per-column encodings.
	Props []parquet.WriterProperty
}

// Write sorts recs (without changing the caller's slice) and writes them as one
// zstd-compressed Parquet file at uri, a local path or gs:// URI (spec.Props may choose
// another codec). The file appears under its final name only when complete: on any error
// nothing is published.
func Write[T any](ctx context.Context, uri string, recs []T, spec Spec[T]) (Info, error) {
	return WriteSorted(ctx, uri, sortedRecords(recs, spec.Compare), spec)
}

// WriteSorted is Write for records that each hands over one at a time, already in
// spec.Compare order (a record that sorts before the previous one is an error): the same
// records give the same bytes as Write, but only one row group of them is held at a time.
// each calls yield with every record in order and returns the first error yield returns;
// a record need not outlive its yield call.
func WriteSorted[T any](ctx context.Context, uri string, each func(yield func(*T) error) error, spec Spec[T]) (Info, error) {
	if spec.RowGroupRows < 1 {
		return Info{File: path.Base(uri)}, fmt.Errorf("write %s: row group size must be ≥ 1, got %d", uri, spec.RowGroupRows)
	}
	props := append([]parquet.WriterProperty{
		parquet.WithCompression(compress.Codecs.Zstd),
		parquet.WithMaxRowGroupLength(int64(spec.RowGroupRows)),
		parquet.WithDictionaryDefault(true),
	}, spec.Props...)
	return publishBatches(ctx, uri, each, spec, func(w io.Writer) (batchWriter, error) {
		return pqarrow.NewFileWriter(spec.Schema, w, parquet.NewWriterProperties(props...),
			pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema()))
	})
}

// sortedRecords returns an each function (see WriteSorted) that yields recs in compare
// order, stably, without changing the caller's slice.
func sortedRecords[T any](recs []T, compare func(a, b *T) int) func(yield func(*T) error) error {
	return func(yield func(*T) error) error {
		order := make([]*T, len(recs))
		for i := range recs {
			order[i] = &recs[i]
		}
		slices.SortStableFunc(order, compare)
		for _, r := range order {
			if err := yield(r); err != nil {
				return err
			}
		}
		return nil
	}
}

// batchWriter is a Parquet or Arrow IPC file writer.
type batchWriter interface {
	Write(arrow.RecordBatch) error
	Close() error
}

// publishBatches publishes with Publish the file that the writer from open makes of the
// records each yields, written with writeBatches, and returns its Info with Rows set.
func publishBatches[T any](ctx context.Context, uri string, each func(yield func(*T) error) error, spec Spec[T], open func(w io.Writer) (batchWriter, error)) (Info, error) {
	var rows int64
	info, err := Publish(ctx, uri, func(w io.Writer) error {
		fw, err := open(w)
		if err != nil {
			return err
		}
		rows, err = writeBatches(ctx, each, spec, fw.Write)
		if cerr := fw.Close(); err == nil {
			err = cerr
		}
		return err
	})
	info.Rows = rows
	return info, err
}

// Publish writes one file at uri through write and publishes it atomically: the file
// appears under its final name only if write succeeds, and the returned Info (without Rows)
// gives its size and SHA-256. write must not keep w after it returns.
func Publish(ctx context.Context, uri string, write func(w io.Writer) error) (Info, error) {
	info := Info{File: path.Base(uri)}
	bw, err := blob.Create(ctx, uri)
	if err != nil {
		return info, err
	}
	published := false
	defer func() {
		if !published {
			bw.Abort()
		}
	}()
	// writer → hash and count → buffer → blob; the wrapper hides any Close method so the
	// format writer cannot close the blob writer behind our back.
	buf := bufio.NewWriterSize(bw, 1<<20)
	sink := &digestWriter{w: buf, h: sha256.New()}
	if err := write(sink); err != nil {
		return info, fmt.Errorf("write %s: %w", uri, err)
	}
	if err := buf.Flush(); err != nil {
		return info, fmt.Errorf("write %s: %w", uri, err)
	}
	if err := bw.Commit(); err != nil {
		return info, err
	}
	published = true
	info.Bytes = sink.n
	info.SHA256 = hex.EncodeToString(sink.h.Sum(nil))
	return info, nil
}

// writeBatches hands the records each yields, which must be in spec.Compare order, to
// write as record batches of spec.RowGroupRows rows (the last one shorter), each released
// after the call, and returns the number of records. It stops at the first error or when
// ctx is done.
func writeBatches[T any](ctx context.Context, each func(yield func(*T) error) error, spec Spec[T], write func(arrow.RecordBatch) error) (int64, error) {
	b := array.NewRecordBuilder(memory.DefaultAllocator, spec.Schema)
	defer b.Release()
	var (
		rows, start int64 // records so far; the first of the current batch
		prev        T     // the previous record (a shallow copy)
	)
	flush := func() error {
		if rows == start {
			return nil
		}
		rec := b.NewRecordBatch()
		err := write(rec)
		rec.Release()
		if err != nil {
			return fmt.Errorf("row group at row %d: %w", start, err)
		}
		start = rows
		return nil
	}
	err := each(func(r *T) error {
		if rows > 0 && spec.Compare(&prev, r) > 0 {
			return fmt.Errorf("record %d sorts before record %d: records must come in the file's order", rows, rows-1)
		}
		if rows == start {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		spec.Append(b, r)
		prev = *r
		rows++
		if rows-start == int64(spec.RowGroupRows) {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	return rows, err
}

// digestWriter counts and hashes what passes through it.
type digestWriter struct {
	w io.Writer
	h hash.Hash
	n int64
}

func (d *digestWriter) Write(p []byte) (int, error) {
	n, err := d.w.Write(p)
	d.h.Write(p[:n])
	d.n += int64(n)
	return n, err
}
