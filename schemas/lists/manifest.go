package lists

import (
	"context"
	"errors"
	"fmt"

	"github.com/stirpipe/stirpipe/schemas/blob"
	"github.com/stirpipe/stirpipe/schemas/internal/pqfile"
)

// ManifestFile is the name of the manifest inside a neighbours directory.
const ManifestFile = pqfile.ManifestFile

// errIncomplete starts the error given for a directory without a manifest.
const errIncomplete = "neighbours output incomplete or not a neighbours directory"

// Manifest lists the shards of one complete neighbours or reranked output, with their
// provenance; its stage is StageNeighbors or StageReranked.
type Manifest = pqfile.Manifest[Provenance]

// Listable reports the provenance's problems as that of a complete output's files, which
// partial files never are.
func (p Provenance) Listable() error {
	err := p.Validate()
	if p.Stage == StagePartial {
		err = errors.Join(err, fmt.Errorf("stage %q: partial files are merged, never listed in a manifest", StagePartial))
	}
	return err
}

// ShardExts are the extensions of a neighbours output's files.
func (Provenance) ShardExts() []string { return []string{ExtParquet, ExtArrow} }

var output = pqfile.Kind[Provenance]{Output: pqfile.Output{Format: FormatV1, Name: "neighbours", Incomplete: errIncomplete, Rerun: "rerun the stage"}}

// The manifest of a neighbours or reranked output: NewManifest makes it from the shards
// (in any order), WriteManifest validates it and writes it atomically as
// dir/_manifest.json once every shard is written (its presence marks the output
// complete), ReadManifest reads and validates it.
var (
	NewManifest   = output.New
	WriteManifest = output.Write
	ReadManifest  = output.Read
)

// ManifestSHA256 returns the hex SHA-256 of dir/_manifest.json, the snapshot id of a stage
// output (e.g. Provenance.EmbeddingsSnapshot of the embeddings output dir, or
// Provenance.InputSnapshot of the neighbours output a reranked file reranks): it changes
// whenever any shard changes, since the manifest lists every shard's hash.
func ManifestSHA256(ctx context.Context, dir string) (string, error) {
	return pqfile.ManifestSHA256(ctx, dir)
}

// PiecesDir is the directory inside a lists output where the rerank stage commits
// finished lists as it goes, until the output's manifest is written.
const PiecesDir = pqfile.PiecesDir

// PieceName names a piece file by a hash of its records' query ids.
func PieceName(recs []Record) string {
	ids := make([]string, len(recs))
	for i := range recs {
		ids[i] = recs[i].QueryID
	}
	return pqfile.PieceName(ids)
}

// RemovePieces removes a lists output's pieces (and, for a local output, their emptied
// directory).
func RemovePieces(ctx context.Context, dir string) error {
	files, err := ListPieces(ctx, dir)
	if err != nil {
		return err
	}
	if err := RemovePartials(ctx, files); err != nil {
		return err
	}
	if !blob.IsGCS(dir) {
		_ = blob.Remove(ctx, blob.Join(dir, PiecesDir)) // only when empty
	}
	return nil
}

// ListPieces returns the piece files under a lists output's pieces directory, sorted.
func ListPieces(ctx context.Context, dir string) ([]string, error) {
	return pqfile.ListPieces(ctx, dir)
}
