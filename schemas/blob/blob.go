// Package blob reads and writes whole files on local disk or in Google Cloud Storage
// (gs://bucket/object), so that every stage reads its inputs and publishes its outputs the
// same way on a laptop and on Dataflow.
//
// Writes are atomic: a file appears under its final name only on Commit (local: a temporary
// file in the same directory, fsync, rename; GCS: the object is finalised when the upload
// completes), so a killed run never leaves a half-written output.
//
// The GCS client honours STORAGE_EMULATOR_HOST (tests run against fake-gcs-server) and
// otherwise uses Application Default Credentials; no credential is ever logged.
package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"cloud.google.com/go/storage"
	"google.golang.org/api/iterator"
)

const gcsScheme = "gs://"

// IsGCS reports whether uri names a Cloud Storage object or prefix.
func IsGCS(uri string) bool { return strings.HasPrefix(uri, gcsScheme) }

// Join appends path elements to a local path or gs:// URI with forward slashes for GCS.
func Join(base string, elems ...string) string {
	if IsGCS(base) {
		parts := append([]string{strings.TrimSuffix(base, "/")}, elems...)
		return strings.Join(parts, "/")
	}
	return filepath.Join(append([]string{base}, elems...)...)
}

// Dir returns the directory (or gs:// prefix) holding uri: the part before its last
// separator, never shorter than a bucket.
func Dir(uri string) string {
	if IsGCS(uri) {
		i := strings.LastIndexByte(strings.TrimSuffix(uri, "/"), '/')
		if i < len(gcsScheme) {
			return uri
		}
		return uri[:i]
	}
	return filepath.Dir(uri)
}

// ErrNotExist is returned (wrapped) when a file or object does not exist.
var ErrNotExist = fs.ErrNotExist

// Open opens a file or object for reading.
func Open(ctx context.Context, uri string) (io.ReadCloser, error) {
	if !IsGCS(uri) {
		return os.Open(uri)
	}
	obj, err := object(ctx, uri)
	if err != nil {
		return nil, err
	}
	r, err := obj.NewReader(ctx)
	if err != nil {
		return nil, gcsErr(uri, err)
	}
	return r, nil
}

// OpenRange opens length bytes of a file or object from offset on, for reading.
func OpenRange(ctx context.Context, uri string, offset, length int64) (io.ReadCloser, error) {
	if !IsGCS(uri) {
		f, err := os.Open(uri)
		if err != nil {
			return nil, err
		}
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			f.Close()
			return nil, err
		}
		return struct {
			io.Reader
			io.Closer
		}{io.LimitReader(f, length), f}, nil
	}
	obj, err := object(ctx, uri)
	if err != nil {
		return nil, err
	}
	r, err := obj.NewRangeReader(ctx, offset, length)
	if err != nil {
		return nil, gcsErr(uri, err)
	}
	return r, nil
}

// ReadFile reads a whole file or object.
func ReadFile(ctx context.Context, uri string) ([]byte, error) {
	r, err := Open(ctx, uri)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", uri, err)
	}
	return data, nil
}

// Info describes a file or object.
type Info struct {
	Size int64
	// Version changes whenever the content may have: the object's generation on Cloud
	// Storage, the modification time in nanoseconds on local disk.
	Version string
}

// Stat returns the size and version of a file or object.
func Stat(ctx context.Context, uri string) (Info, error) {
	if !IsGCS(uri) {
		st, err := os.Stat(uri)
		if err != nil {
			return Info{}, err
		}
		return Info{Size: st.Size(), Version: "mtime:" + strconv.FormatInt(st.ModTime().UnixNano(), 10)}, nil
	}
	obj, err := object(ctx, uri)
	if err != nil {
		return Info{}, err
	}
	attrs, err := obj.Attrs(ctx)
	if err != nil {
		return Info{}, gcsErr(uri, err)
	}
	return Info{Size: attrs.Size, Version: "generation:" + strconv.FormatInt(attrs.Generation, 10)}, nil
}

// StoredMD5 returns the MD5 digest that the store keeps of an object's content, without
// reading it: Cloud Storage's, for every object but composite ones. It is nil for those
// and for local files.
func StoredMD5(ctx context.Context, uri string) ([]byte, error) {
	if !IsGCS(uri) {
		return nil, nil
	}
	obj, err := object(ctx, uri)
	if err != nil {
		return nil, err
	}
	attrs, err := obj.Attrs(ctx)
	if err != nil {
		return nil, gcsErr(uri, err)
	}
	return attrs.MD5, nil
}

// Size returns the size in bytes of a file or object.
func Size(ctx context.Context, uri string) (int64, error) {
	info, err := Stat(ctx, uri)
	return info.Size, err
}

// Writer writes one file or object; nothing is visible under the final name until Commit.
// Call Abort (safe after Commit) to discard an unfinished write.
type Writer struct {
	uri    string
	w      io.Writer
	commit func() error
	abort  func()
	done   bool
}

// Create starts an atomic write of uri, creating local parent directories as needed.
func Create(ctx context.Context, uri string) (*Writer, error) {
	if IsGCS(uri) {
		obj, err := object(ctx, uri)
		if err != nil {
			return nil, err
		}
		wctx, cancel := context.WithCancel(ctx)
		ow := obj.NewWriter(wctx)
		return &Writer{
			uri: uri, w: ow,
			commit: func() error { defer cancel(); return gcsErr(uri, ow.Close()) },
			abort:  func() { cancel(); _ = ow.Close() },
		}, nil
	}
	dir := filepath.Dir(uri)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", uri, err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(uri)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", uri, err)
	}
	tmp := f.Name()
	return &Writer{
		uri: uri, w: f,
		commit: func() error {
			err := f.Sync()
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err == nil {
				err = os.Chmod(tmp, 0o644)
			}
			if err == nil {
				err = os.Rename(tmp, uri)
			}
			if err != nil {
				_ = os.Remove(tmp)
				return fmt.Errorf("publish %s: %w", uri, err)
			}
			syncDir(dir)
			return nil
		},
		abort: func() { _ = f.Close(); _ = os.Remove(tmp) },
	}, nil
}

// Write implements io.Writer.
func (w *Writer) Write(p []byte) (int, error) { return w.w.Write(p) }

// Commit publishes the file under its final name.
func (w *Writer) Commit() error {
	if w.done {
		return fmt.Errorf("blob: %s already committed or aborted", w.uri)
	}
	w.done = true
	return w.commit()
}

// Abort discards the write; it does nothing after Commit.
func (w *Writer) Abort() {
	if !w.done {
		w.done = true
		w.abort()
	}
}

// WriteFile atomically writes data to uri.
func WriteFile(ctx context.Context, uri string, data []byte) error {
	w, err := Create(ctx, uri)
	if err != nil {
		return err
	}
	if _, err := w.Write(data); err != nil {
		w.Abort()
		return fmt.Errorf("write %s: %w", uri, err)
	}
	return w.Commit()
}

// List returns the files under a directory (local, recursive) or the objects under a
// gs:// prefix, sorted. A missing directory gives an empty list.
func List(ctx context.Context, prefix string) ([]string, error) {
	var out []string
	if IsGCS(prefix) {
		bucket, name, err := split(prefix)
		if err != nil {
			return nil, err
		}
		c, err := client(ctx)
		if err != nil {
			return nil, err
		}
		it := c.Bucket(bucket).Objects(ctx, &storage.Query{Prefix: name})
		for {
			attrs, err := it.Next()
			if errors.Is(err, iterator.Done) {
				break
			}
			if err != nil {
				return nil, gcsErr(prefix, err)
			}
			out = append(out, gcsScheme+bucket+"/"+attrs.Name)
		}
	} else {
		err := filepath.WalkDir(prefix, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			if !d.IsDir() {
				out = append(out, p)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", prefix, err)
		}
	}
	sort.Strings(out)
	return out, nil
}

// Rename moves a file or object to a new name (on Cloud Storage: a copy inside the service,
// then a delete), creating local parent directories as needed.
func Rename(ctx context.Context, from, to string) error {
	if IsGCS(from) != IsGCS(to) {
		return fmt.Errorf("rename %s to %s: both must be local or both on gs://", from, to)
	}
	if !IsGCS(from) {
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			return err
		}
		if err := os.Rename(from, to); err != nil {
			return err
		}
		syncDir(filepath.Dir(to))
		return nil
	}
	src, err := object(ctx, from)
	if err != nil {
		return err
	}
	dst, err := object(ctx, to)
	if err != nil {
		return err
	}
	if _, err := dst.CopierFrom(src).Run(ctx); err != nil {
		return gcsErr(from, err)
	}
	return Remove(ctx, from)
}

// Remove deletes a file or object; a missing one is not an error.
func Remove(ctx context.Context, uri string) error {
	if !IsGCS(uri) {
		if err := os.Remove(uri); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	obj, err := object(ctx, uri)
	if err != nil {
		return err
	}
	if err := obj.Delete(ctx); err != nil && !errors.Is(err, storage.ErrObjectNotExist) {
		return gcsErr(uri, err)
	}
	return nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}

// split parses gs://bucket/object into its bucket and object name.
func split(uri string) (bucket, name string, err error) {
	rest := strings.TrimPrefix(uri, gcsScheme)
	bucket, name, _ = strings.Cut(rest, "/")
	if bucket == "" {
		return "", "", fmt.Errorf("invalid Cloud Storage URI %q: want gs://bucket/object", uri)
	}
	return bucket, path.Clean("/" + name)[1:], nil
}

func object(ctx context.Context, uri string) (*storage.ObjectHandle, error) {
	bucket, name, err := split(uri)
	if err != nil {
		return nil, err
	}
	if name == "" {
		return nil, fmt.Errorf("invalid Cloud Storage URI %q: no object name", uri)
	}
	c, err := client(ctx)
	if err != nil {
		return nil, err
	}
	return c.Bucket(bucket).Object(name), nil
}

var (
	clientOnce sync.Once
	gcsClient  *storage.Client
	clientErr  error
)

// client returns the process-wide Cloud Storage client.
func client(ctx context.Context) (*storage.Client, error) {
	clientOnce.Do(func() {
		// JSON reads work the same against GCS and its emulators.
		gcsClient, clientErr = storage.NewClient(context.WithoutCancel(ctx), storage.WithJSONReads())
		if clientErr != nil {
			clientErr = fmt.Errorf("Cloud Storage client: %w (set up Application Default Credentials: gcloud auth application-default login)", clientErr)
		}
	})
	return gcsClient, clientErr
}

func gcsErr(uri string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, storage.ErrObjectNotExist) || errors.Is(err, storage.ErrBucketNotExist) {
		return fmt.Errorf("%s: %w", uri, fs.ErrNotExist)
	}
	return fmt.Errorf("%s: %w", uri, err)
}
