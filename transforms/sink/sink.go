// Package sink writes the stage files of the pipeline: embeddings and neighbour lists as
// shards with a manifest written last, and rejects files. Files are published atomically
// and their contents are sorted, so the same inputs give the same bytes on every run and
// runner.
package sink

import (
	"context"
	"fmt"
	"hash/fnv"
	"path"
	"path/filepath"
	"strings"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/stirpipe/stirpipe/schemas/blob"
	"github.com/stirpipe/stirpipe/schemas/changes"
	"github.com/stirpipe/stirpipe/schemas/embeddings"
	"github.com/stirpipe/stirpipe/schemas/lists"
	"github.com/stirpipe/stirpipe/schemas/rejects"
)

func init() {
	registerKind[embeddingFiles, embeddings.Record, embeddings.Provenance]()
	registerKind[listFiles, lists.Record, lists.Provenance]()
	register.DoFn3x1[context.Context, []byte, func(*rejects.Record) bool, error](&writeRejectsFn{})
	register.Emitter1[embeddings.ShardInfo]()
	register.Iter1[*embeddings.ShardInfo]()
	register.Iter1[*rejects.Record]()
	register.DoFn3x1[context.Context, []byte, func(*string) bool, error](&writeChangesFn{})
	register.Iter1[*string]()
}

// registerKind registers the DoFns that write one kind of stage file.
func registerKind[K kind[R, P], R, P any]() {
	register.DoFn2x0[R, func(int, R)](&shardKeyFn[K, R, P]{})
	register.DoFn4x1[context.Context, int, func(*R) bool, func(embeddings.ShardInfo), error](&writeShardFn[K, R, P]{})
	register.DoFn3x1[context.Context, []byte, func(*embeddings.ShardInfo) bool, error](&writeManifestFn[K, R, P]{})
	register.Emitter2[int, R]()
	register.Iter1[*R]()
}

// A kind is one kind of stage file: records R sharing a provenance P, written as shards
// and a manifest. Its value travels to the workers, so its fields are exported.
type kind[R, P any] interface {
	// id is the key a record is sharded by.
	id(r *R) string
	// shardName names shard i of n.
	shardName(i, n int) string
	// writeShard writes one shard's records.
	writeShard(ctx context.Context, uri string, recs []R, prov P) (embeddings.ShardInfo, error)
	// writeManifest writes the manifest of an output's shards and removes stale files.
	writeManifest(ctx context.Context, dir string, prov P, shards []embeddings.ShardInfo) error
}

// Embeddings writes records under dir as `shards` Parquet files (an item's shard is a hash
// of its id) and then dir/_manifest.json listing them; part files left by an earlier run
// that the manifest does not list are removed.
func Embeddings(s beam.Scope, recs beam.PCollection, dir string, shards int, prov embeddings.Provenance) {
	write[embeddingFiles](s.Scope("WriteEmbeddings"), embeddingFiles{}, recs, dir, shards, prov)
}

// Lists writes neighbour-list records under dir as `files` files of format ext (a query's
// file is a hash of its id), then dir/_manifest.json; part files of an earlier run that the
// manifest does not list are removed.
func Lists(s beam.Scope, recs beam.PCollection, dir string, files int, ext string, prov lists.Provenance) {
	write[listFiles](s.Scope("WriteLists"), listFiles{Ext: ext}, recs, dir, files, prov)
}

func write[K kind[R, P], R, P any](s beam.Scope, k K, recs beam.PCollection, dir string, shards int, prov P) {
	if shards < 1 {
		panic(fmt.Sprintf("sink: %s needs ≥ 1 shards, got %d", dir, shards))
	}
	keyed := beam.ParDo(s, &shardKeyFn[K, R, P]{Kind: k, Shards: shards}, recs)
	infos := beam.ParDo(s, &writeShardFn[K, R, P]{Kind: k, Dir: dir, Shards: shards, Provenance: prov}, beam.GroupByKey(s, keyed))
	beam.ParDo0(s, &writeManifestFn[K, R, P]{Kind: k, Dir: dir, Provenance: prov}, beam.Impulse(s), beam.SideInput{Input: infos})
}

type shardKeyFn[K kind[R, P], R, P any] struct {
	Kind   K
	Shards int
}

func (fn *shardKeyFn[K, R, P]) ProcessElement(r R, emit func(int, R)) {
	emit(shardOf(fn.Kind.id(&r), fn.Shards), r)
}

type writeShardFn[K kind[R, P], R, P any] struct {
	Kind       K
	Dir        string
	Shards     int
	Provenance P
}

func (fn *writeShardFn[K, R, P]) ProcessElement(ctx context.Context, shard int, iter func(*R) bool, emit func(embeddings.ShardInfo)) error {
	var recs []R
	var r R
	for iter(&r) {
		recs = append(recs, r)
		r = *new(R) // the next record must not share this one's slices
	}
	info, err := fn.Kind.writeShard(ctx, blob.Join(fn.Dir, fn.Kind.shardName(shard, fn.Shards)), recs, fn.Provenance)
	if err != nil {
		return err
	}
	emit(info)
	return nil
}

type writeManifestFn[K kind[R, P], R, P any] struct {
	Kind       K
	Dir        string
	Provenance P
}

func (fn *writeManifestFn[K, R, P]) ProcessElement(ctx context.Context, _ []byte, iter func(*embeddings.ShardInfo) bool) error {
	var infos []embeddings.ShardInfo
	var info embeddings.ShardInfo
	for iter(&info) {
		infos = append(infos, info)
	}
	return fn.Kind.writeManifest(ctx, fn.Dir, fn.Provenance, infos)
}

// embeddingFiles are embeddings shards.
type embeddingFiles struct{}

func (embeddingFiles) id(r *embeddings.Record) string { return r.Row.ID }
func (embeddingFiles) shardName(i, n int) string      { return embeddings.ShardName(i, n) }
func (embeddingFiles) writeShard(ctx context.Context, uri string, recs []embeddings.Record, prov embeddings.Provenance) (embeddings.ShardInfo, error) {
	return embeddings.WriteShard(ctx, uri, recs, prov)
}
func (embeddingFiles) writeManifest(ctx context.Context, dir string, prov embeddings.Provenance, shards []embeddings.ShardInfo) error {
	m := embeddings.NewManifest(prov, shards)
	if err := embeddings.WriteManifest(ctx, dir, m); err != nil {
		return err
	}
	return removeStale(ctx, dir, m.Shards)
}

// listFiles are neighbour-list files of one format.
type listFiles struct{ Ext string }

func (listFiles) id(r *lists.Record) string   { return r.QueryID }
func (k listFiles) shardName(i, n int) string { return lists.ShardName(i, n, k.Ext) }
func (listFiles) writeShard(ctx context.Context, uri string, recs []lists.Record, prov lists.Provenance) (lists.ShardInfo, error) {
	return lists.WriteFile(ctx, uri, recs, prov)
}
func (listFiles) writeManifest(ctx context.Context, dir string, prov lists.Provenance, shards []lists.ShardInfo) error {
	return ListsManifest(ctx, dir, prov, shards)
}

// ListsManifest writes the manifest of a neighbour-list output from its files, then
// removes the part files of an earlier run that it does not list.
func ListsManifest(ctx context.Context, dir string, prov lists.Provenance, infos []lists.ShardInfo) error {
	m := lists.NewManifest(prov, infos)
	if err := lists.WriteManifest(ctx, dir, m); err != nil {
		return err
	}
	return removeStale(ctx, dir, m.Shards)
}

// removeStale deletes the part files ("part-*") under dir that an earlier run left and a
// new manifest does not list, and the pieces committed on the way (embeddings.PiecesDir),
// which the complete output now holds.
func removeStale(ctx context.Context, dir string, listed []embeddings.ShardInfo) error {
	keep := map[string]bool{}
	for _, f := range listed {
		keep[f.File] = true
	}
	files, err := blob.List(ctx, dir)
	if err != nil {
		return err
	}
	for _, f := range files {
		base := path.Base(filepath.ToSlash(f))
		piece := path.Base(path.Dir(filepath.ToSlash(f))) == embeddings.PiecesDir
		if piece || strings.HasPrefix(base, "part-") && !keep[base] {
			if err := blob.Remove(ctx, f); err != nil {
				return fmt.Errorf("remove stale file %s: %w", f, err)
			}
		}
	}
	if !blob.IsGCS(dir) { // the emptied pieces directory (a missing one is no error)
		_ = blob.Remove(ctx, blob.Join(dir, embeddings.PiecesDir))
	}
	return nil
}

// Rejects writes every rejects record into one Parquet file (a valid file even when there
// are none).
func Rejects(s beam.Scope, recs beam.PCollection, uri string) {
	s = s.Scope("WriteRejects")
	beam.ParDo0(s, &writeRejectsFn{URI: uri}, beam.Impulse(s), beam.SideInput{Input: recs})
}

type writeRejectsFn struct{ URI string }

func (fn *writeRejectsFn) ProcessElement(ctx context.Context, _ []byte, iter func(*rejects.Record) bool) error {
	var recs []rejects.Record
	var r rejects.Record
	for iter(&r) {
		recs = append(recs, r)
	}
	_, err := rejects.WriteShard(ctx, fn.URI, recs)
	return err
}

// shardOf maps an id to one of n files (FNV-1a), the same on every worker and run.
func shardOf(id string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(id))
	return int(h.Sum32() % uint32(n))
}

// Changes writes the ids of the items that changed since the previous run (embeddings
// output previous) into one changes file at uri.
func Changes(s beam.Scope, ids beam.PCollection, uri, previous string) {
	s = s.Scope("WriteChanges")
	beam.ParDo0(s, &writeChangesFn{URI: uri, Previous: previous}, beam.Impulse(s), beam.SideInput{Input: ids})
}

type writeChangesFn struct{ URI, Previous string }

func (fn *writeChangesFn) ProcessElement(ctx context.Context, _ []byte, iter func(*string) bool) error {
	var ids []string
	var id string
	for iter(&id) {
		ids = append(ids, id)
	}
	return changes.Write(ctx, fn.URI, fn.Previous, ids)
}
