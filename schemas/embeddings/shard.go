package embeddings

import "context"

// EachIn is Each restricted to the manifest's i-th shard (Manifest().Shards[i]), so a
// worker can stream one file of a large output.
func (r *Reader) EachIn(ctx context.Context, i int, fn func(Record) error) error {
	return r.eachInShard(ctx, r.m.Shards[i], fn)
}
