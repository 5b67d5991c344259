package neighbors

import (
	"context"
	"errors"
	"fmt"

	"github.com/stirpipe/stirpipe/schemas/internal/pqfile"
)

// ManifestFile is the name of the manifest inside a neighbours directory.
const ManifestFile = pqfile.ManifestFile

// errIncomplete starts the error given for a directory without a manifest.
const errIncomplete = "neighbours output incomplete or not a neighbours directory"

// output names neighbours outputs in manifest errors.
var output = pqfile.Output{Name: "neighbours", Incomplete: errIncomplete, Rerun: "rerun the stage"}

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
	if m.Stage == StagePartial {
		errs = append(errs, fmt.Errorf("stage %q: partial files are merged, never listed in a manifest", StagePartial))
	}
	errs = append(errs, pqfile.CheckShards(m.Rows, m.Shards, ExtParquet, ExtArrow))
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

// ManifestSHA256 returns the hex SHA-256 of dir/_manifest.json, the snapshot id of a stage
// output (e.g. Provenance.EmbeddingsSnapshot of the embeddings output dir, or
// Provenance.InputSnapshot of the neighbours output a reranked file reranks): it changes
// whenever any shard changes, since the manifest lists every shard's hash.
func ManifestSHA256(ctx context.Context, dir string) (string, error) {
	return pqfile.ManifestSHA256(ctx, dir)
}
