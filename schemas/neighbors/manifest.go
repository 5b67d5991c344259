package neighbors

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"

	"github.com/stirpipe/stirpipe/schemas/blob"
	"github.com/stirpipe/stirpipe/schemas/internal/pqfile"
)

// ManifestFile is the name of the manifest inside a neighbours directory.
const ManifestFile = "_manifest.json"

// errIncomplete starts the error given for a directory without a manifest.
const errIncomplete = "neighbours output incomplete or not a neighbours directory"

// Manifest lists the shards of one complete neighbours or reranked output.
type Manifest struct {
	// Format is FormatV1.
	Format string `json:"format"`
	// Provenance is shared by every shard; its stage is StageNeighbors or StageReranked.
	Provenance `json:"provenance"`
	// Rows is the total number of records (queries).
	Rows int64 `json:"rows"`
	// Shards are the shard files (*.parquet or *.arrow), sorted by name.
	Shards []ShardInfo `json:"shards"`
}

// NewManifest returns the manifest of the given shards (in any order) with Rows summed.
func NewManifest(prov Provenance, shards []ShardInfo) Manifest {
	m := Manifest{Format: FormatV1, Provenance: prov, Shards: pqfile.SortShards(shards)}
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
	if m.Stage == StagePartial {
		errs = append(errs, fmt.Errorf("stage %q: partial files are merged, never listed in a manifest", StagePartial))
	}
	rows, err := pqfile.CheckShards(m.Shards, ExtParquet, ExtArrow)
	errs = append(errs, err)
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
	m.Shards = pqfile.SortShards(m.Shards)
	if err := m.Validate(); err != nil {
		return fmt.Errorf("neighbours manifest %s: %w", uri, err)
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("neighbours manifest %s: %w", uri, err)
	}
	return blob.WriteFile(ctx, uri, append(data, '\n'))
}

// ReadManifest reads and validates dir/_manifest.json.
func ReadManifest(ctx context.Context, dir string) (Manifest, error) {
	uri := blob.Join(dir, ManifestFile)
	data, err := blob.ReadFile(ctx, uri)
	if errors.Is(err, fs.ErrNotExist) {
		return Manifest{}, fmt.Errorf("%s: %s: %s is missing (it is written last, once every shard is done; rerun the stage): %w",
			dir, errIncomplete, ManifestFile, err)
	}
	if err != nil {
		return Manifest{}, fmt.Errorf("neighbours manifest: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return Manifest{}, fmt.Errorf("neighbours manifest %s: decode: %w", uri, err)
	}
	if err := m.Validate(); err != nil {
		return Manifest{}, fmt.Errorf("neighbours manifest %s: %w", uri, err)
	}
	return m, nil
}

// ManifestSHA256 returns the hex SHA-256 of dir/_manifest.json, the snapshot id of a stage
// output (e.g. Provenance.EmbeddingsSnapshot of the embeddings output dir): it changes
// whenever any shard changes, since the manifest lists every shard's hash.
func ManifestSHA256(ctx context.Context, dir string) (string, error) {
	data, err := blob.ReadFile(ctx, blob.Join(dir, ManifestFile))
	if err != nil {
		return "", fmt.Errorf("snapshot of %s: %w", dir, err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]), nil
}
