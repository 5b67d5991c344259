package embeddings

import (
	"context"
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/stirpipe/stirpipe/schemas/blob"
	"github.com/stirpipe/stirpipe/schemas/catalog"
	"github.com/stirpipe/stirpipe/schemas/internal/pqfile"
)

// EachIn is Each restricted to the manifest's i-th shard (Manifest().Shards[i]), so a
// worker can stream one file of a large output.
func (r *Reader) EachIn(ctx context.Context, i int, fn func(Record) error) error {
	return r.eachInShard(ctx, r.Manifest().Shards[i], fn)
}

// Roles counts a shard's retrieval roles: its queries and its gallery rows.
type Roles struct{ Queries, Galleries int64 }

// RolesIn counts the roles of the manifest's i-th shard from its split and role columns
// alone: a gs:// shard is read by ranged requests, never the embeddings themselves.
func (r *Reader) RolesIn(ctx context.Context, i int) (Roles, error) {
	s := r.Manifest().Shards[i]
	uri := blob.Join(r.Dir(), s.File)
	f, err := pqfile.OpenRanged(ctx, uri)
	if err != nil {
		return Roles{}, fmt.Errorf("embeddings %s: %w", r.Dir(), err)
	}
	defer f.Close()
	if _, err := r.checkShard(f, s); err != nil {
		return Roles{}, fmt.Errorf("embeddings %s: %w", r.Dir(), err)
	}
	var roles Roles
	err = f.EachColumns(ctx, []string{colSplit, colIsQuery, colIsGallery}, func(rec arrow.RecordBatch) error {
		split, err := pqfile.Column[*array.String](rec, uri, colSplit)
		if err != nil {
			return err
		}
		query, err := pqfile.Column[*array.Boolean](rec, uri, colIsQuery)
		if err != nil {
			return err
		}
		gallery, err := pqfile.Column[*array.Boolean](rec, uri, colIsGallery)
		if err != nil {
			return err
		}
		for j := range int(rec.NumRows()) {
			row := catalog.Row{Split: split.Value(j), IsQuery: query.Value(j), IsGallery: gallery.Value(j)}
			if row.Queries() {
				roles.Queries++
			}
			if row.InGallery() {
				roles.Galleries++
			}
		}
		return nil
	})
	return roles, err
}
