package pqfile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// WriteIPC is Write for the Arrow IPC file format (uncompressed, one record batch per
// spec.RowGroupRows rows; spec.Props is ignored): sorted, published atomically, and the same
// records always give the same bytes. The schema's metadata is the file's schema metadata.
func WriteIPC[T any](ctx context.Context, uri string, recs []T, spec Spec[T]) (Info, error) {
	return WriteIPCSorted(ctx, uri, sortedRecords(recs, spec.Compare), spec)
}

// WriteIPCSorted is WriteIPC for records handed over one at a time in spec.Compare order,
// as WriteSorted is for Write.
func WriteIPCSorted[T any](ctx context.Context, uri string, each func(yield func(*T) error) error, spec Spec[T]) (Info, error) {
	if spec.RowGroupRows < 1 {
		return Info{File: path.Base(uri)}, fmt.Errorf("write %s: record batch size must be ≥ 1, got %d", uri, spec.RowGroupRows)
	}
	// One writer per file, used by this goroutine only: an IPC writer is not safe for
	// concurrent use.
	return publishBatches(ctx, uri, each, spec, func(w io.Writer) (batchWriter, error) {
		return ipc.NewFileWriter(w, ipc.WithSchema(spec.Schema), ipc.WithAllocator(memory.DefaultAllocator))
	})
}

// IPCFile is an open Arrow IPC file. A local file is read in place, one record batch at a
// time; a gs:// object is read into memory once.
type IPCFile struct {
	// URI is the path or gs:// URI the file was opened from.
	URI string
	// Size is the size of the file in bytes.
	Size int64

	src io.Closer // the local file, nil for gs://
	fr  *ipc.FileReader
}

// OpenIPC opens the Arrow IPC file at uri and reads its footer and schema.
func OpenIPC(ctx context.Context, uri string) (*IPCFile, error) {
	src, size, err := openSource(ctx, uri)
	if err != nil {
		return nil, err
	}
	f := &IPCFile{URI: uri, Size: size}
	if c, ok := src.(*os.File); ok {
		f.src = c
	}
	f.fr, err = ipc.NewFileReader(src, ipc.WithAllocator(memory.DefaultAllocator))
	if err != nil {
		if f.src != nil {
			f.src.Close()
		}
		return nil, fmt.Errorf("%s: not a readable Arrow IPC file: %w", uri, err)
	}
	return f, nil
}

// Close releases the file.
func (f *IPCFile) Close() error {
	err := f.fr.Close()
	if f.src != nil {
		err = errors.Join(err, f.src.Close())
	}
	return err
}

// KeyValue returns the schema's key-value metadata.
func (f *IPCFile) KeyValue() map[string]string {
	md := f.fr.Schema().Metadata()
	out := make(map[string]string, md.Len())
	for i, k := range md.Keys() {
		out[k] = md.Values()[i]
	}
	return out
}

// Schema returns the file's Arrow schema.
func (f *IPCFile) Schema() (*arrow.Schema, error) { return f.fr.Schema(), nil }

// Each calls fn with every record batch of the file in order; a batch is valid only during
// the call. Memory is bounded by one batch (all of the file for gs://).
func (f *IPCFile) Each(ctx context.Context, fn func(arrow.RecordBatch) error) error {
	for i := range f.fr.NumRecords() {
		if err := ctx.Err(); err != nil {
			return err
		}
		rec, err := f.fr.RecordBatchAt(i)
		if err != nil {
			return fmt.Errorf("%s: record batch %d: %w", f.URI, i, err)
		}
		err = fn(rec)
		rec.Release()
		if err != nil {
			return err
		}
	}
	return nil
}
