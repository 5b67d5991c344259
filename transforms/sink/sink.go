// Package sink writes the stage files of the pipeline: embeddings and neighbour lists as
// shards with a manifest written last, and rejects files. Files are published atomically and their
// contents are sorted, so the same inputs give the same bytes on every run and runner.
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
	"github.com/stirpipe/stirpipe/schemas/embeddings"
	"github.com/stirpipe/stirpipe/schemas/neighbors"
	"github.com/stirpipe/stirpipe/schemas/rejects"
)

func init() {
	register.DoFn2x0[embeddings.Record, func(int, embeddings.Record)](&shardKeyFn{})
	register.DoFn4x1[context.Context, int, func(*embeddings.Record) bool, func(embeddings.ShardInfo), error](&writeShardFn{})
	register.DoFn3x1[context.Context, []byte, func(*embeddings.ShardInfo) bool, error](&writeManifestFn{})
	register.DoFn3x1[context.Context, []byte, func(*rejects.Record) bool, error](&writeRejectsFn{})
	register.DoFn2x0[neighbors.Record, func(int, neighbors.Record)](&listKeyFn{})
	register.DoFn4x1[context.Context, int, func(*neighbors.Record) bool, func(neighbors.ShardInfo), error](&writeListsFn{})
	register.DoFn3x1[context.Context, []byte, func(*neighbors.ShardInfo) bool, error](&writeListsManifestFn{})
	register.Emitter2[int, neighbors.Record]()
	register.Iter1[*neighbors.Record]()
	register.Emitter2[int, embeddings.Record]()
	register.Emitter1[embeddings.ShardInfo]()
	register.Iter1[*embeddings.Record]()
	register.Iter1[*embeddings.ShardInfo]()
	register.Iter1[*rejects.Record]()
}

// Embeddings writes records under dir as `shards` Parquet files (an item's shard is a hash
// of its id) and then dir/_manifest.json listing them; part files left by an earlier run
// that the manifest does not list are removed.
func Embeddings(s beam.Scope, recs beam.PCollection, dir string, shards int, prov embeddings.Provenance) {
	s = s.Scope("WriteEmbeddings")
	if shards < 1 {
		panic(fmt.Sprintf("sink.Embeddings: shards must be ≥ 1, got %d", shards))
	}
	keyed := beam.ParDo(s, &shardKeyFn{Shards: shards}, recs)
	infos := beam.ParDo(s, &writeShardFn{Dir: dir, Shards: shards, Provenance: prov}, beam.GroupByKey(s, keyed))
	beam.ParDo0(s, &writeManifestFn{Dir: dir, Provenance: prov}, beam.Impulse(s), beam.SideInput{Input: infos})
}

// Rejects writes every rejects record into one Parquet file (a valid file even when there
// are none).
func Rejects(s beam.Scope, recs beam.PCollection, uri string) {
	s = s.Scope("WriteRejects")
	beam.ParDo0(s, &writeRejectsFn{URI: uri}, beam.Impulse(s), beam.SideInput{Input: recs})
}

type shardKeyFn struct{ Shards int }

func (fn *shardKeyFn) ProcessElement(r embeddings.Record, emit func(int, embeddings.Record)) {
	emit(shardOf(r.Row.ID, fn.Shards), r)
}

type writeShardFn struct {
	Dir        string
	Shards     int
	Provenance embeddings.Provenance
}

func (fn *writeShardFn) ProcessElement(ctx context.Context, shard int, iter func(*embeddings.Record) bool, emit func(embeddings.ShardInfo)) error {
	var recs []embeddings.Record
	var r embeddings.Record
	for iter(&r) {
		recs = append(recs, r)
		r = embeddings.Record{}
	}
	info, err := embeddings.WriteShard(ctx, blob.Join(fn.Dir, embeddings.ShardName(shard, fn.Shards)), recs, fn.Provenance)
	if err != nil {
		return err
	}
	emit(info)
	return nil
}

type writeManifestFn struct {
	Dir        string
	Provenance embeddings.Provenance
}

func (fn *writeManifestFn) ProcessElement(ctx context.Context, _ []byte, iter func(*embeddings.ShardInfo) bool) error {
	m := embeddings.Manifest{Provenance: fn.Provenance}
	var info embeddings.ShardInfo
	for iter(&info) {
		m.Shards = append(m.Shards, info)
		m.Rows += info.Rows
	}
	if err := embeddings.WriteManifest(ctx, fn.Dir, m); err != nil {
		return err
	}
	files := make([]string, len(m.Shards))
	for i, sh := range m.Shards {
		files[i] = sh.File
	}
	return RemoveStale(ctx, fn.Dir, files)
}

// RemoveStale deletes the part files ("part-*") under dir that an earlier run left and a
// new manifest does not list.
func RemoveStale(ctx context.Context, dir string, listed []string) error {
	keep := map[string]bool{}
	for _, f := range listed {
		keep[f] = true
	}
	files, err := blob.List(ctx, dir)
	if err != nil {
		return err
	}
	for _, f := range files {
		base := path.Base(filepath.ToSlash(f))
		if strings.HasPrefix(base, "part-") && !keep[base] {
			if err := blob.Remove(ctx, f); err != nil {
				return fmt.Errorf("remove stale file %s: %w", f, err)
			}
		}
	}
	return nil
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

// Lists writes neighbour-list records under dir as `files` files of format ext (a query's
// file is a hash of its id), then dir/_manifest.json; part files of an earlier run that the
// manifest does not list are removed.
func Lists(s beam.Scope, recs beam.PCollection, dir string, files int, ext string, prov neighbors.Provenance) {
	s = s.Scope("WriteLists")
	if files < 1 {
		panic(fmt.Sprintf("sink.Lists: files must be ≥ 1, got %d", files))
	}
	keyed := beam.ParDo(s, &listKeyFn{Files: files}, recs)
	infos := beam.ParDo(s, &writeListsFn{Dir: dir, Files: files, Ext: ext, Provenance: prov}, beam.GroupByKey(s, keyed))
	beam.ParDo0(s, &writeListsManifestFn{Dir: dir, Provenance: prov}, beam.Impulse(s), beam.SideInput{Input: infos})
}

type listKeyFn struct{ Files int }

func (fn *listKeyFn) ProcessElement(r neighbors.Record, emit func(int, neighbors.Record)) {
	emit(shardOf(r.QueryID, fn.Files), r)
}

type writeListsFn struct {
	Dir        string
	Files      int
	Ext        string
	Provenance neighbors.Provenance
}

func (fn *writeListsFn) ProcessElement(ctx context.Context, file int, iter func(*neighbors.Record) bool, emit func(neighbors.ShardInfo)) error {
	var recs []neighbors.Record
	var r neighbors.Record
	for iter(&r) {
		recs = append(recs, r)
		r = neighbors.Record{}
	}
	info, err := neighbors.WriteFile(ctx, blob.Join(fn.Dir, neighbors.ShardName(file, fn.Files, fn.Ext)), recs, fn.Provenance)
	if err != nil {
		return err
	}
	emit(info)
	return nil
}

type writeListsManifestFn struct {
	Dir        string
	Provenance neighbors.Provenance
}

func (fn *writeListsManifestFn) ProcessElement(ctx context.Context, _ []byte, iter func(*neighbors.ShardInfo) bool) error {
	var infos []neighbors.ShardInfo
	var info neighbors.ShardInfo
	for iter(&info) {
		infos = append(infos, info)
	}
	return ListsManifest(ctx, fn.Dir, fn.Provenance, infos)
}

// ListsManifest writes the manifest of a neighbour-list output from its files, then
// removes the part files of an earlier run that it does not list.
func ListsManifest(ctx context.Context, dir string, prov neighbors.Provenance, infos []neighbors.ShardInfo) error {
	m := neighbors.NewManifest(prov, infos)
	if err := neighbors.WriteManifest(ctx, dir, m); err != nil {
		return err
	}
	files := make([]string, len(m.Shards))
	for i, sh := range m.Shards {
		files[i] = sh.File
	}
	return RemoveStale(ctx, dir, files)
}

// shardOf maps an id to one of n files (FNV-1a), the same on every worker and run.
func shardOf(id string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(id))
	return int(h.Sum32() % uint32(n))
}
