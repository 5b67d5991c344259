package embeddings

import (
	"context"
	"errors"
	"fmt"

	"github.com/stirpipe/stirpipe/schemas/internal/pqfile"
)

// ManifestFile is the name of the manifest inside an embeddings directory.
const ManifestFile = pqfile.ManifestFile

// errIncomplete starts the error given for a directory without a manifest.
const errIncomplete = "embeddings output incomplete or not an embeddings directory"

// output names embeddings outputs in manifest errors.
var output = pqfile.Output{Name: "embeddings", Incomplete: errIncomplete, Rerun: "rerun the embed stage"}

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
	return Manifest{Format: FormatV1, Provenance: prov, Rows: pqfile.TotalRows(shards), Shards: pqfile.SortShards(shards)}
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
	errs = append(errs, pqfile.CheckShards(m.Rows, m.Shards, ".parquet"))
	return errors.Join(errs...)
}

// WriteManifest validates m and writes it atomically as dir/_manifest.json. Call it last,
// once every shard is written: its presence marks the output complete. An empty Format is
// set to FormatV1 and shards are sorted by name, so the bytes are deterministic.
func WriteManifest(ctx context.Context, dir string, m Manifest) error {
	if m.Format == "" {
		m.Format = FormatV1
	}
	m.Shards = pqfile.SortShards(m.Shards)
	return output.WriteManifest(ctx, dir, &m)
}

// ReadManifest reads and validates dir/_manifest.json.
func ReadManifest(ctx context.Context, dir string) (Manifest, error) {
	var m Manifest
	if err := output.ReadManifest(ctx, dir, &m); err != nil {
		return Manifest{}, err
	}
	return m, nil
}
