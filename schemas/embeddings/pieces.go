package embeddings

import (
	"context"
	"fmt"

	"github.com/stirpipe/stirpipe/schemas/internal/pqfile"
)

// PiecesDir is the directory inside an embeddings output where the embed stage commits
// finished embeddings as it goes (piece files, in the shard layout), until the output's
// manifest is written; a rerun of a killed run reads them back instead of embedding again.
const PiecesDir = pqfile.PiecesDir

// PieceName names a piece file by a hash of its records' ids, so that the same records
// always make the same file.
func PieceName(recs []Record) string {
	ids := make([]string, len(recs))
	for i := range recs {
		ids[i] = recs[i].Row.ID
	}
	return pqfile.PieceName(ids)
}

// ListPieces returns the piece files under an embeddings output's pieces directory,
// sorted (none when it does not exist).
func ListPieces(ctx context.Context, dir string) ([]string, error) {
	return pqfile.ListPieces(ctx, dir)
}

// ReadFile calls fn with every record of one embeddings file (a shard or a piece), read
// without a manifest: its provenance comes from its own metadata and is returned first,
// through check, which may refuse the file before any record is read.
func ReadFile(ctx context.Context, uri string, check func(Provenance) error, fn func(Record) error) error {
	f, err := pqfile.Open(ctx, uri)
	if err != nil {
		return fmt.Errorf("embeddings file %s: %w", uri, err)
	}
	defer f.Close()
	kv := f.KeyValue()
	prov, err := provenanceFromKV(kv)
	if err != nil {
		return fmt.Errorf("embeddings file %s: %w", uri, err)
	}
	if err := check(prov); err != nil {
		return err
	}
	format := kv[keyFormat]
	if format == "" {
		format = FormatV1
	}
	schema, err := f.Schema()
	if err != nil {
		return err
	}
	if err := pqfile.CheckFields(uri, schema, schemaOf(format, prov.Dim, prov)); err != nil {
		return fmt.Errorf("embeddings file %s: %w", uri, err)
	}
	_, err = eachRecord(ctx, f, fn)
	return err
}
