// Package catalogio brings a validated catalog into a pipeline as a PCollection of
// catalog.Row, read on the workers rather than embedded in the pipeline graph, so the
// graph stays small whatever the catalog's size.
package catalogio

import (
	"context"
	"fmt"
	"hash/fnv"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/stirpipe/stirpipe/schemas/catalog"
)

func init() {
	register.DoFn3x1[context.Context, int, func(catalog.Row), error](&readShardFn{})
	register.Emitter1[catalog.Row]()
}

// Source names a catalog that the launcher has already loaded and validated.
type Source struct {
	// URI is the catalog file, local or gs://.
	URI string
	// Format is "csv" or "parquet".
	Format string
	// Snapshot is the catalog's content hash when it was validated; workers refuse a
	// catalog that changed since.
	Snapshot string
	// Shards is how many parallel readers split the rows (≥ 1).
	Shards int
}

// Read emits every row of the catalog once. Each of Shards readers keeps the rows whose
// item id hashes to its shard, and a reshuffle spreads the rows over the workers.
func Read(s beam.Scope, src Source) beam.PCollection {
	s = s.Scope("ReadCatalog")
	if src.Shards < 1 {
		panic(fmt.Sprintf("catalogio.Read: shards must be ≥ 1, got %d", src.Shards))
	}
	shards := make([]int, src.Shards)
	for i := range shards {
		shards[i] = i
	}
	ids := beam.CreateList(s, shards)
	rows := beam.ParDo(s, &readShardFn{Source: src}, beam.Reshuffle(s, ids))
	return beam.Reshuffle(s, rows)
}

type readShardFn struct {
	Source Source
}

func (fn *readShardFn) ProcessElement(ctx context.Context, shard int, emit func(catalog.Row)) error {
	cat, err := catalog.Load(ctx, fn.Source.URI, catalog.Options{Format: fn.Source.Format})
	if err != nil {
		return err
	}
	if cat.Snapshot != fn.Source.Snapshot {
		return fmt.Errorf("catalog %s changed since the job was launched (snapshot %s, now %s): relaunch the job",
			fn.Source.URI, fn.Source.Snapshot, cat.Snapshot)
	}
	for _, r := range cat.Rows {
		if ShardOf(r.ID, fn.Source.Shards) == shard {
			emit(r)
		}
	}
	return nil
}

// ShardOf maps an item id to one of n shards (FNV-1a), the same on every worker and run.
func ShardOf(id string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(id))
	return int(h.Sum32() % uint32(n))
}
