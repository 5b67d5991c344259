package embeddings

import "github.com/stirpipe/stirpipe/schemas/internal/pqfile"

// ManifestFile is the name of the manifest inside an embeddings directory.
const ManifestFile = pqfile.ManifestFile

// errIncomplete starts the error given for a directory without a manifest.
const errIncomplete = "embeddings output incomplete or not an embeddings directory"

// Manifest lists the shards of one complete embeddings output, with their provenance.
type Manifest = pqfile.Manifest[Provenance]

// Listable reports the provenance's problems: any valid embeddings file may be listed.
func (p Provenance) Listable() error { return p.Validate() }

// ShardExts are the extensions of an embeddings output's files.
func (Provenance) ShardExts() []string { return []string{".parquet"} }

var output = pqfile.Kind[Provenance]{Output: pqfile.Output{Format: FormatV2, Readable: []string{FormatV1}, Name: "embeddings", Incomplete: errIncomplete, Rerun: "rerun the embed stage"}}

// The manifest of an embeddings output: NewManifest makes it from the shards (in any
// order), WriteManifest validates it and writes it atomically as dir/_manifest.json once
// every shard is written (its presence marks the output complete), ReadManifest reads and
// validates it.
var (
	NewManifest   = output.New
	WriteManifest = output.Write
	ReadManifest  = output.Read
)
