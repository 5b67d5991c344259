// Package imageload turns a catalog row into a model input: it reads the row's image from
// under the dataset root (local or gs://, never outside it), refuses oversized files and
// images, decodes by content, crops to the row's box and preprocesses it (models/preprocess).
// Every failure carries the stage and a stable reason for the rejects file.
package imageload

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"io"
	"io/fs"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/stirpipe/stirpipe/models/imageio"
	"github.com/stirpipe/stirpipe/models/manifest"
	"github.com/stirpipe/stirpipe/models/preprocess"
	"github.com/stirpipe/stirpipe/schemas/blob"
	"github.com/stirpipe/stirpipe/schemas/catalog"
)

// Stages of a failure, as written in rejects records.
const (
	StageRead       = "read"
	StageDecode     = "decode"
	StagePreprocess = "preprocess"
)

// ReasonUnsafePath is the reason of a path that would leave the dataset root.
const ReasonUnsafePath = "unsafe_path"

// Error is a row whose image could not be turned into a tensor.
type Error struct {
	Stage, Reason string
	Err           error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Loader loads images for one preprocessing. It is safe for concurrent use.
type Loader struct {
	root   string
	limits imageio.Limits
	pre    *preprocess.Preprocessor
}

// New returns a Loader for images under root, preprocessed as p.
func New(root string, limits imageio.Limits, p manifest.Preprocess) (*Loader, error) {
	pre, err := preprocess.New(p)
	if err != nil {
		return nil, err
	}
	return &Loader{root: root, limits: limits, pre: pre}, nil
}

// TensorLen is the number of float32 values of one image.
func (l *Loader) TensorLen() int { return l.pre.TensorLen() }

// Load writes the preprocessed image of row into dst (TensorLen values). A failure is an
// *Error.
func (l *Loader) Load(ctx context.Context, row catalog.Row, dst []float32) error {
	_, err := l.load(ctx, row, dst)
	return err
}

// load is Load that also returns the fingerprint of the bytes it decoded.
func (l *Loader) load(ctx context.Context, row catalog.Row, dst []float32) (string, error) {
	data, err := l.read(ctx, row.Path)
	if err != nil {
		return "", err
	}
	print := Fingerprint(data)
	img, _, err := imageio.Decode(data, l.limits)
	if err != nil {
		return print, &Error{StageDecode, imageio.ReasonOf(err), err}
	}
	var box *image.Rectangle
	if r, ok := row.Box(); ok {
		box = &r
	}
	if err := l.pre.Tensor(img, box, dst); err != nil {
		return print, &Error{StagePreprocess, imageio.ReasonOf(err), err}
	}
	return print, nil
}

// LoadBatch loads rows[i] into dst[i] (TensorLen values each) on every core and sets
// errs[i] to the row's failure, or nil. dst and errs must have room for every row.
func (l *Loader) LoadBatch(ctx context.Context, rows []catalog.Row, dst [][]float32, errs []error) {
	l.LoadBatchPrinted(ctx, rows, dst, errs, nil)
}

// LoadBatchPrinted is LoadBatch that also sets prints[i] to the fingerprint of the bytes
// row i was decoded from ("" when they could not be read); prints may be nil.
func (l *Loader) LoadBatchPrinted(ctx context.Context, rows []catalog.Row, dst [][]float32, errs []error, prints []string) {
	dst, errs = dst[:len(rows)], errs[:len(rows)]
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(rows)) {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(len(rows)); i = next.Add(1) - 1 {
				print, err := l.load(ctx, rows[i], dst[i])
				if errs[i] = err; prints != nil {
					prints[i] = print
				}
			}
		})
	}
	wg.Wait()
}

// Fingerprint identifies an image file's content: "md5:" and the hex MD5 of its bytes,
// the digest Cloud Storage keeps in an object's metadata, so that an image on gs:// is
// fingerprinted without being read (FingerprintOf).
func Fingerprint(data []byte) string {
	sum := md5.Sum(data)
	return fingerprintPrefix + hex.EncodeToString(sum[:])
}

const fingerprintPrefix = "md5:"

// FingerprintOf returns the fingerprint of row's image: from the object's metadata on
// gs:// when it has an MD5 (composite objects have none), otherwise by reading the file
// (up to the byte limit, as Load would). A failure is an *Error; the row's image will
// not load either.
func (l *Loader) FingerprintOf(ctx context.Context, row catalog.Row) (string, error) {
	if blob.IsGCS(l.root) {
		uri, err := catalog.Resolve(l.root, row.Path)
		if err != nil {
			return "", &Error{StageRead, ReasonUnsafePath, err}
		}
		if sum, err := blob.StoredMD5(ctx, uri); err == nil && len(sum) == md5.Size {
			return fingerprintPrefix + hex.EncodeToString(sum), nil
		}
	}
	r, err := l.open(ctx, row.Path)
	if err != nil {
		return "", err
	}
	defer r.Close()
	h := md5.New()
	n, err := io.Copy(h, io.LimitReader(r, l.maxBytes()+1)) // streamed: nothing held but a buffer
	if err != nil {
		return "", &Error{StageRead, imageio.ReasonIO, fmt.Errorf("%s: %w", row.Path, err)}
	}
	if n > l.maxBytes() {
		return "", &Error{StageRead, imageio.ReasonTooLarge, fmt.Errorf("%s: larger than the %d-byte limit", row.Path, l.maxBytes())}
	}
	return fingerprintPrefix + hex.EncodeToString(h.Sum(nil)), nil
}

// maxBytes is the byte limit of an image file.
func (l *Loader) maxBytes() int64 {
	if l.limits.MaxBytes <= 0 {
		return imageio.DefaultMaxBytes
	}
	return l.limits.MaxBytes
}

// open opens an image file from under the root.
func (l *Loader) open(ctx context.Context, rel string) (io.ReadCloser, error) {
	uri, err := catalog.Resolve(l.root, rel)
	if err != nil {
		return nil, &Error{StageRead, ReasonUnsafePath, err}
	}
	r, err := catalog.OpenImage(ctx, l.root, rel)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, &Error{StageRead, imageio.ReasonMissing, fmt.Errorf("%s: no such file", uri)}
	case errors.Is(err, catalog.ErrUnsafePath):
		return nil, &Error{StageRead, ReasonUnsafePath, err}
	case err != nil:
		return nil, &Error{StageRead, imageio.ReasonIO, err}
	}
	return r, nil
}

// read loads an image file from under the root, refusing files over the byte limit.
func (l *Loader) read(ctx context.Context, rel string) ([]byte, error) {
	uri, err := catalog.Resolve(l.root, rel)
	if err != nil {
		return nil, &Error{StageRead, ReasonUnsafePath, err}
	}
	r, err := l.open(ctx, rel)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	limit := l.maxBytes()
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, &Error{StageRead, imageio.ReasonIO, fmt.Errorf("%s: %w", uri, err)}
	}
	if int64(len(data)) > limit {
		return nil, &Error{StageRead, imageio.ReasonTooLarge, fmt.Errorf("%s: larger than the %d-byte limit", uri, limit)}
	}
	return data, nil
}
