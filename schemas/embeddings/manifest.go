package embeddings

import (
	"context"

	"github.com/stirpipe/stirpipe/schemas/internal/pqfile"
)

// ManifestFile is the name of the manifest inside an embeddings directory.
const ManifestFile = pqfile.ManifestFile

// errIncomplete starts the error given for a directory without a manifest.
const errIncomplete = "embeddings output incomplete or not an embeddings directory"

// output is the embeddings outputs' kind: its manifest format and how errors name it.
var output = pqfile.Output{Format: FormatV1, Name: "embeddings", Incomplete: errIncomplete, Rerun: "rerun the embed stage"}

// Manifest lists the shards of one complete embeddings output, with their provenance.
type Manifest = pqfile.Manifest[Provenance]

// Listable reports the provenance's problems: any valid embeddings file may be listed.
func (p Provenance) Listable() error { return p.Validate() }

// ShardExts are the extensions of an embeddings output's files.
func (Provenance) ShardExts() []string { return []string{".parquet"} }

// NewManifest returns the manifest of the given shards (in any order) with Rows summed.
func NewManifest(prov Provenance, shards []ShardInfo) Manifest {
	return pqfile.NewManifest(FormatV1, prov, shards)
}

// WriteManifest validates m and writes it atomically as dir/_manifest.json. Call it last,
// once every shard is written: its presence marks the output complete.
func WriteManifest(ctx context.Context, dir string, m Manifest) error {
	return pqfile.WriteManifest(ctx, output, dir, m)
}

// ReadManifest reads and validates dir/_manifest.json.
func ReadManifest(ctx context.Context, dir string) (Manifest, error) {
	return pqfile.ReadManifest[Provenance](ctx, output, dir)
}
