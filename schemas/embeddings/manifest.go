package embeddings

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"

	"github.com/stirpipe/stirpipe/schemas/blob"
)

// ManifestFile is the name of the manifest inside an embeddings directory.
const ManifestFile = "_manifest.json"

// errIncomplete starts the error given for a directory without a manifest.
const errIncomplete = "embeddings output incomplete or not an embeddings directory"

// Manifest lists the shards of one complete embeddings output.
type Manifest struct {
	// Format is FormatV1.
	Format string `json:"format"`
	// Provenance is shared by every shard.
	Provenance `json:"provenance"`
	// Rows is the total number of records.
	Rows int64 `json:"rows"`
	// Shards are the shard files, sorted by name.
	Shards []ShardInfo `json:"shards"`
}

// NewManifest returns the manifest of the given shards (in any order) with Rows summed.
func NewManifest(prov Provenance, shards []ShardInfo) Manifest {
	m := Manifest{Format: FormatV1, Provenance: prov, Shards: slices.Clone(shards)}
	slices.SortFunc(m.Shards, func(a, b ShardInfo) int { return strings.Compare(a.File, b.File) })
	for _, s := range m.Shards {
		m.Rows += s.Rows
	}
	return m
}

// Validate reports every problem of m at once.
func (m *Manifest) Validate() error {
	var errs []error
	if m.Format != FormatV1 {
		errs = append(errs, fmt.Errorf("format is %q, want %q", m.Format, FormatV1))
	}
	if err := m.Provenance.Validate(); err != nil {
		errs = append(errs, err)
	}
	var rows int64
	seen := map[string]bool{}
	for i, s := range m.Shards {
		if s.File == "" || s.File != path.Base(s.File) || strings.ContainsAny(s.File, `/\`) ||
			strings.HasPrefix(s.File, ".") || strings.HasPrefix(s.File, "_") || !strings.HasSuffix(s.File, ".parquet") {
			errs = append(errs, fmt.Errorf("shard %d: file %q is not a plain *.parquet name inside the directory", i, s.File))
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
		rows += s.Rows
	}
	if rows != m.Rows {
		errs = append(errs, fmt.Errorf("rows is %d but the shards hold %d", m.Rows, rows))
	}
	return errors.Join(errs...)
}

// WriteManifest validates m and writes it atomically as dir/_manifest.json. Call it last,
// once every shard is written: its presence marks the output complete. An empty Format is
// set to FormatV1 and shards are sorted by name, so the bytes are deterministic.
func WriteManifest(ctx context.Context, dir string, m Manifest) error {
	uri := blob.Join(dir, ManifestFile)
	if m.Format == "" {
		m.Format = FormatV1
	}
	m.Shards = slices.Clone(m.Shards)
	slices.SortFunc(m.Shards, func(a, b ShardInfo) int { return strings.Compare(a.File, b.File) })
	if err := m.Validate(); err != nil {
		return fmt.Errorf("embeddings manifest %s: %w", uri, err)
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("embeddings manifest %s: %w", uri, err)
	}
	return blob.WriteFile(ctx, uri, append(data, '\n'))
}

// ReadManifest reads and validates dir/_manifest.json.
func ReadManifest(ctx context.Context, dir string) (Manifest, error) {
	uri := blob.Join(dir, ManifestFile)
	data, err := blob.ReadFile(ctx, uri)
	if errors.Is(err, fs.ErrNotExist) {
		return Manifest{}, fmt.Errorf("%s: %s: %s is missing (it is written last, once every shard is done; rerun the embed stage): %w",
			dir, errIncomplete, ManifestFile, err)
	}
	if err != nil {
		return Manifest{}, fmt.Errorf("embeddings manifest: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return Manifest{}, fmt.Errorf("embeddings manifest %s: decode: %w", uri, err)
	}
	if err := m.Validate(); err != nil {
		return Manifest{}, fmt.Errorf("embeddings manifest %s: %w", uri, err)
	}
	return m, nil
}
