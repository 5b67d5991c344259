package pqfile

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"path"
	"slices"
	"strings"

	"github.com/stirpipe/stirpipe/schemas/blob"
)

// ManifestFile is the name of a stage output's manifest inside its directory. It is
// written last, once every shard is, so its presence marks the output complete.
const ManifestFile = "_manifest.json"

// Provenance is what every file of one stage output shares, recorded in each file's
// metadata and once in the output's manifest.
type Provenance interface {
	// Listable reports every problem of the provenance as that of a complete output's
	// files: what a manifest may list.
	Listable() error
	// ShardExts are the extensions of the files such an output holds.
	ShardExts() []string
}

// Manifest lists the shards of one complete stage output. Its JSON is the manifest file.
type Manifest[P Provenance] struct {
	// Format names the manifest's format, e.g. "stirpipe.embeddings/v1".
	Format string `json:"format"`
	// Provenance is shared by every shard.
	Provenance P `json:"provenance"`
	// Rows is the total number of records.
	Rows int64 `json:"rows"`
	// Shards are the shard files, sorted by name.
	Shards []Info `json:"shards"`
}

// NewManifest returns the manifest of format of the given shards (in any order), with Rows
// summed and the shards sorted by name.
func NewManifest[P Provenance](format string, prov P, shards []Info) Manifest[P] {
	return Manifest[P]{Format: format, Provenance: prov, Rows: TotalRows(shards), Shards: SortShards(shards)}
}

// Kind is one kind of stage output, whose provenance is P: its manifests' format and how
// errors name it. Its methods are what a stage-file package exports for its manifests.
type Kind[P Provenance] struct{ Output }

// New returns the manifest of the given shards (in any order) with Rows summed.
func (k Kind[P]) New(prov P, shards []Info) Manifest[P] { return NewManifest(k.Format, prov, shards) }

// Write validates m and writes it atomically as dir/_manifest.json. Call it last, once
// every shard is written: its presence marks the output complete.
func (k Kind[P]) Write(ctx context.Context, dir string, m Manifest[P]) error {
	return WriteManifest(ctx, k.Output, dir, m)
}

// Read reads and validates dir/_manifest.json.
func (k Kind[P]) Read(ctx context.Context, dir string) (Manifest[P], error) {
	return ReadManifest[P](ctx, k.Output, dir)
}

// Output names one kind of stage output, and the format its manifests have.
type Output struct {
	// Format is the manifests' format; Readable are older formats still read.
	Format   string
	Readable []string
	// Name starts the errors, e.g. "embeddings" gives "embeddings manifest URI: …".
	Name string
	// Incomplete says what a directory without a manifest is, e.g. "embeddings output
	// incomplete or not an embeddings directory".
	Incomplete string
	// Rerun says what writes the manifest, e.g. "rerun the embed stage".
	Rerun string
}

// Validate reports every problem of m as a manifest of o's kind at once.
func Validate[P Provenance](o Output, m *Manifest[P]) error {
	var errs []error
	if m.Format != o.Format && !slices.Contains(o.Readable, m.Format) {
		errs = append(errs, fmt.Errorf("format is %q, want %q", m.Format, o.Format))
	}
	if err := m.Provenance.Listable(); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, CheckShards(m.Rows, m.Shards, m.Provenance.ShardExts()...))
	return errors.Join(errs...)
}

// WriteManifest validates m and writes it atomically as indented JSON (with a final
// newline) at dir/_manifest.json. Call it last, once every shard is written: its presence
// marks the output complete. An empty Format is set to o's and shards are sorted by name,
// so the bytes are deterministic.
func WriteManifest[P Provenance](ctx context.Context, o Output, dir string, m Manifest[P]) error {
	if m.Format == "" {
		m.Format = o.Format
	}
	m.Shards = SortShards(m.Shards)
	uri := blob.Join(dir, ManifestFile)
	if err := Validate(o, &m); err != nil {
		return fmt.Errorf("%s manifest %s: %w", o.Name, uri, err)
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("%s manifest %s: %w", o.Name, uri, err)
	}
	return blob.WriteFile(ctx, uri, append(data, '\n'))
}

// ReadManifest reads dir/_manifest.json, refusing unknown fields, and validates it. A
// missing manifest gives an error that says the output is incomplete and wraps
// fs.ErrNotExist.
func ReadManifest[P Provenance](ctx context.Context, o Output, dir string) (Manifest[P], error) {
	var m Manifest[P]
	uri := blob.Join(dir, ManifestFile)
	data, err := blob.ReadFile(ctx, uri)
	if errors.Is(err, fs.ErrNotExist) {
		return m, fmt.Errorf("%s: %s: %s is missing (it is written last, once every shard is done; %s): %w",
			dir, o.Incomplete, ManifestFile, o.Rerun, err)
	}
	if err != nil {
		return m, fmt.Errorf("%s manifest: %w", o.Name, err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return Manifest[P]{}, fmt.Errorf("%s manifest %s: decode: %w", o.Name, uri, err)
	}
	if err := Validate(o, &m); err != nil {
		return Manifest[P]{}, fmt.Errorf("%s manifest %s: %w", o.Name, uri, err)
	}
	return m, nil
}

// ManifestSHA256 returns the hex SHA-256 of dir/_manifest.json, the snapshot id of a stage
// output: it changes whenever any shard changes, since the manifest lists every shard's
// hash.
func ManifestSHA256(ctx context.Context, dir string) (string, error) {
	data, err := blob.ReadFile(ctx, blob.Join(dir, ManifestFile))
	if err != nil {
		return "", fmt.Errorf("snapshot of %s: %w", dir, err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]), nil
}

// CheckSize reports a file whose size is not the one its manifest lists.
func CheckSize(uri string, size, want int64) error {
	if size != want {
		return fmt.Errorf("%s: %d bytes, manifest says %d (file changed after the manifest was written?)", uri, size, want)
	}
	return nil
}

// CheckListed checks that every shard listed in dir's manifest is there, and returns every
// problem: a gs:// shard by its size only (anything more would download it), a local one
// with checkLocal (given its URI), which should open it and compare its size, schema and
// metadata with the manifest.
func CheckListed(ctx context.Context, dir string, shards []Info, checkLocal func(uri string, s Info) error) error {
	var errs []error
	for _, s := range shards {
		uri := blob.Join(dir, s.File)
		if !blob.IsGCS(uri) {
			errs = append(errs, checkLocal(uri, s))
			continue
		}
		size, err := blob.Size(ctx, uri)
		if err != nil {
			errs = append(errs, fmt.Errorf("shard listed in %s: %w", ManifestFile, err))
			continue
		}
		errs = append(errs, CheckSize(uri, size, s.Bytes))
	}
	return errors.Join(errs...)
}

// SortShards returns a copy of shards sorted by file name, the order a manifest lists them.
func SortShards(shards []Info) []Info {
	out := slices.Clone(shards)
	slices.SortFunc(out, func(a, b Info) int { return strings.Compare(a.File, b.File) })
	return out
}

// CheckShards reports every problem of a manifest's shard list and of its total, rows: each
// file must be a plain name inside the output directory (no separator, not hidden, not
// starting with "_" like the manifest or a temporary directory) ending in one of exts,
// listed once, with rows ≥ 0, bytes > 0 and a 64-hex-digit SHA-256, and rows must be the
// sum of the shards' rows.
func CheckShards(rows int64, shards []Info, exts ...string) error {
	var sum int64
	var errs []error
	seen := make(map[string]bool, len(shards))
	for i, s := range shards {
		okExt := slices.ContainsFunc(exts, func(e string) bool { return strings.HasSuffix(s.File, e) })
		if s.File == "" || s.File != path.Base(s.File) || strings.ContainsAny(s.File, `/\`) ||
			strings.HasPrefix(s.File, ".") || strings.HasPrefix(s.File, "_") || !okExt {
			errs = append(errs, fmt.Errorf("shard %d: file %q is not a plain *%s name inside the directory", i, s.File, strings.Join(exts, " or *")))
		}
		if seen[s.File] {
			errs = append(errs, fmt.Errorf("shard %d: file %q is listed twice", i, s.File))
		}
		seen[s.File] = true
		if s.Rows < 0 || s.Bytes <= 0 {
			errs = append(errs, fmt.Errorf("shard %s: rows %d and bytes %d must be ≥ 0 and > 0", s.File, s.Rows, s.Bytes))
		}
		if b, err := hex.DecodeString(s.SHA256); err != nil || len(b) != 32 {
			errs = append(errs, fmt.Errorf("shard %s: sha256 %q is not 64 hex digits", s.File, s.SHA256))
		}
		sum += s.Rows
	}
	if sum != rows {
		errs = append(errs, fmt.Errorf("rows is %d but the shards hold %d", rows, sum))
	}
	return errors.Join(errs...)
}

// TotalRows returns the sum of the shards' rows.
func TotalRows(shards []Info) int64 {
	var n int64
	for _, s := range shards {
		n += s.Rows
	}
	return n
}

// Collect returns, in order, every value that each passes to its callback, in a slice of
// capacity n (the number expected, e.g. a manifest's rows). each stops at the callback's
// first error, which Collect returns.
func Collect[T any](n int64, each func(fn func(T) error) error) ([]T, error) {
	out := make([]T, 0, n)
	err := each(func(v T) error {
		out = append(out, v)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Listed is a complete stage output opened for reading: its directory and its manifest,
// whose shards were checked when it was opened.
type Listed[P Provenance] struct {
	dir string
	m   Manifest[P]
}

// OpenListed reads dir's manifest and checks every shard it lists: a gs:// shard by its
// size (anything more would download it), a local one with checkLocal, which should open
// it and compare its size, schema and metadata with the manifest.
func OpenListed[P Provenance](ctx context.Context, k Kind[P], dir string, checkLocal func(l *Listed[P], uri string, s Info) error) (*Listed[P], error) {
	m, err := k.Read(ctx, dir)
	if err != nil {
		return nil, err
	}
	l := &Listed[P]{dir: dir, m: m}
	if err := CheckListed(ctx, dir, m.Shards, func(uri string, s Info) error { return checkLocal(l, uri, s) }); err != nil {
		return nil, fmt.Errorf("%s %s: %w", k.Name, dir, err)
	}
	return l, nil
}

// Dir returns the output's directory.
func (l *Listed[P]) Dir() string { return l.dir }

// Manifest returns the output's manifest.
func (l *Listed[P]) Manifest() Manifest[P] { return l.m }

// Provenance returns the provenance shared by every shard.
func (l *Listed[P]) Provenance() P { return l.m.Provenance }

// PiecesDir is the directory inside a stage output where a stage commits finished records
// as it goes (piece files), until the output's manifest is written.
const PiecesDir = "_pieces"

// PieceName names a piece file by a hash of the ids of its records, so that the same
// records always make the same file.
func PieceName(ids []string) string {
	ids = slices.Clone(ids)
	slices.Sort(ids)
	h := fnv.New64a()
	for _, id := range ids {
		h.Write([]byte(id))
		h.Write([]byte{0})
	}
	return fmt.Sprintf("piece-%016x.parquet", h.Sum64())
}

// ListPieces returns the piece files under an output's pieces directory, sorted (none
// when there is none).
func ListPieces(ctx context.Context, dir string) ([]string, error) {
	files, err := blob.List(ctx, blob.Join(dir, PiecesDir))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, f := range files {
		if base := path.Base(f); strings.HasPrefix(base, "piece-") && strings.HasSuffix(base, ".parquet") {
			out = append(out, f)
		}
	}
	return out, nil
}
