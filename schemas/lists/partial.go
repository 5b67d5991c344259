package lists

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"iter"
	"os"
	"slices"
	"strings"

	"github.com/stirpipe/stirpipe/schemas/blob"
)

// TmpDir is the subdirectory of an output that holds partial files. Manifests never list
// it (shard names cannot start with "_"), so a reader ignores what is left there.
const TmpDir = "_tmp"

// PartialName returns the file name of the partial file of query tile t of nt and gallery
// shard s of ns with extension ext, e.g. "tile-00003-of-00010.shard-00002-of-00004.parquet".
func PartialName(t, nt, s, ns int, ext string) string {
	return fmt.Sprintf("tile-%05d-of-%05d.shard-%05d-of-%05d.%s", t, nt, s, ns, strings.TrimPrefix(ext, "."))
}

// PartialURI returns where the partial file of tile t and shard s of the output dir goes:
// dir/_tmp/PartialName(t, nt, s, ns, ext).
func PartialURI(dir string, t, nt, s, ns int, ext string) string {
	return blob.Join(dir, TmpDir, PartialName(t, nt, s, ns, ext))
}

// CompareNeighbors is the ranking order of exact search, which Merge assumes of every part:
// by distance, then by neighbour id. Per-shard top-k search should rank with it too.
func CompareNeighbors(da, db float32, ia, ib string) int {
	return cmp.Or(cmp.Compare(da, db), strings.Compare(ia, ib))
}

// Merge merges the lists of one query from disjoint gallery shards into its top k, ordered
// by distance then neighbour id. The result is the global top k if every part is the top k
// of its shard under that same order (ties at a part's cut-off broken by id). Its
// NRelevant is the sum of the parts' (each counts the relevant items of its own shard), so
// it counts the whole gallery if the parts cover it. All parts must describe the same query
// (id, label, category, sequence) and hold no pair scores; a neighbour found in two parts is
// an error (gallery shards are disjoint).
func Merge(k int, parts ...Record) (Record, error) {
	if len(parts) == 0 {
		return Record{}, errors.New("merge: no partial lists")
	}
	out := Record{
		QueryID: parts[0].QueryID, QueryLabel: parts[0].QueryLabel,
		QueryCategory: parts[0].QueryCategory, QuerySequence: parts[0].QuerySequence,
	}
	type cand struct {
		id    string
		label int64
		dist  float32
	}
	var cands []cand
	for i, p := range parts {
		if p.QueryID != out.QueryID || p.QueryLabel != out.QueryLabel || p.QueryCategory != out.QueryCategory || p.QuerySequence != out.QuerySequence {
			return Record{}, fmt.Errorf("merge: part %d is query %q (label %d, category %q, sequence %q), part 0 is query %q (label %d, category %q, sequence %q)",
				i, p.QueryID, p.QueryLabel, p.QueryCategory, p.QuerySequence, out.QueryID, out.QueryLabel, out.QueryCategory, out.QuerySequence)
		}
		if len(p.NeighborLabels) != len(p.NeighborIDs) || len(p.Distances) != len(p.NeighborIDs) || len(p.PairScores) != 0 {
			return Record{}, fmt.Errorf("merge: query %q part %d: %d ids, %d labels, %d distances, %d pair scores: want equal lengths and no pair scores",
				out.QueryID, i, len(p.NeighborIDs), len(p.NeighborLabels), len(p.Distances), len(p.PairScores))
		}
		for j, id := range p.NeighborIDs {
			cands = append(cands, cand{id, p.NeighborLabels[j], p.Distances[j]})
		}
		out.NRelevant += p.NRelevant
	}
	seen := make(map[string]bool, len(cands))
	for _, c := range cands {
		if seen[c.id] {
			return Record{}, fmt.Errorf("merge: query %q: neighbour %q is in two parts (gallery shards must be disjoint)", out.QueryID, c.id)
		}
		seen[c.id] = true
	}
	slices.SortFunc(cands, func(a, b cand) int { return CompareNeighbors(a.dist, b.dist, a.id, b.id) })
	cands = cands[:min(k, len(cands))]
	out.NeighborIDs = make([]string, len(cands))
	out.NeighborLabels = make([]int64, len(cands))
	out.Distances = make([]float32, len(cands))
	for j, c := range cands {
		out.NeighborIDs[j], out.NeighborLabels[j], out.Distances[j] = c.id, c.label, c.dist
	}
	return out, nil
}

// MergeFiles reads the partial files of one query tile (one per gallery shard, in any
// order), merges each query's lists into its top prov.K with Merge, summing the partials'
// n_relevant, and writes the result at out like WriteFile (the format follows its
// extension). prov is the final provenance (stage StageNeighbors); each partial must carry
// the same with stage StagePartial, and all partials must list the same queries, so that a
// missing or stale partial is an error. The partials are read in lockstep, query by query
// (each file is sorted by query id), and the merged lists are written as they come: memory
// is bounded by a record batch of each partial and a row group of the output, whatever the
// tile's size.
func MergeFiles(ctx context.Context, out string, partials []string, prov Provenance) (ShardInfo, error) {
	return MergeWithEarlier(ctx, out, partials, "", prov)
}

// MergeWithEarlier is MergeFiles with one more partial file, earlier ("" = none), that
// holds the lists of some of the tile's queries only (sorted by query id like every
// partial): a refresh's still exact lists of the queries it searched among the changed
// items alone. Each of its lists is merged into its query's; its n_relevant is not added
// (the gallery shards' partials count the whole gallery).
func MergeWithEarlier(ctx context.Context, out string, partials []string, earlier string, prov Provenance) (ShardInfo, error) {
	fail := func(err error) (ShardInfo, error) {
		return ShardInfo{}, fmt.Errorf("merge neighbours into %s: %w", out, err)
	}
	if prov.Stage != StageNeighbors {
		return fail(fmt.Errorf("the merged file's stage is %q, want %q", prov.Stage, StageNeighbors))
	}
	if len(partials) == 0 {
		return fail(errors.New("no partial files"))
	}
	want := prov
	want.Stage = StagePartial
	parts := make([]*partialReader, len(partials))
	for i, uri := range partials {
		parts[i] = readPartial(ctx, uri, want)
		defer parts[i].stop()
	}
	var extra *partialReader
	var next Record // extra's next record
	haveNext := false
	if earlier != "" {
		extra = readPartial(ctx, earlier, want)
		defer extra.stop()
	}
	var readErr error // a problem of the partials rather than of the output
	buf := make([]Record, len(parts), len(parts)+1)
	have := make([]bool, len(parts))
	info, err := writeSorted(ctx, out, func(yield func(*Record) error) error {
		for {
			n := 0
			for i, p := range parts {
				var err error
				if buf[i], have[i], err = p.next(); err != nil {
					readErr = err
					return err
				}
				if have[i] {
					n++
				}
			}
			if extra != nil && !haveNext {
				var err error
				if next, haveNext, err = extra.next(); err != nil {
					readErr = err
					return err
				}
			}
			if n == 0 {
				if haveNext {
					readErr = fmt.Errorf("%s: query %q is in no partial of the tile", earlier, next.QueryID)
					return readErr
				}
				return nil
			}
			// Files are sorted by unique query id, so equal query sets mean equal id
			// sequences: the first difference names a query that one of them lacks.
			for i := 1; i < len(parts); i++ {
				if err := sameQuery(buf[0], have[0], buf[i], have[i]); err != nil {
					readErr = fmt.Errorf("partials %s and %s: %w", partials[0], partials[i], err)
					return readErr
				}
			}
			all := buf
			if haveNext && next.QueryID == buf[0].QueryID {
				next.NRelevant = 0
				all, haveNext = append(buf, next), false
			} else if haveNext && next.QueryID < buf[0].QueryID {
				readErr = fmt.Errorf("%s: query %q is in no partial of the tile", earlier, next.QueryID)
				return readErr
			}
			merged, err := Merge(prov.K, all...)
			if err != nil {
				readErr = err
				return err
			}
			if err := yield(&merged); err != nil {
				return err
			}
		}
	}, prov)
	if readErr != nil {
		return fail(readErr)
	}
	if err != nil {
		return fail(err)
	}
	return info, nil
}

// partialReader hands out the records of one partial file one at a time.
type partialReader struct {
	pull func() (Record, bool)
	stop func()
	err  error
}

// errStopped ends a partial's read early; it never leaves this file.
var errStopped = errors.New("read stopped")

// readPartial starts reading the partial file at uri, whose provenance must be want.
func readPartial(ctx context.Context, uri string, want Provenance) *partialReader {
	p := &partialReader{}
	p.pull, p.stop = iter.Pull(func(yield func(Record) bool) {
		_, err := eachInFile(ctx, uri, &want, -1, func(r Record) error {
			if !yield(r) {
				return errStopped
			}
			return nil
		})
		if err != nil && !errors.Is(err, errStopped) {
			p.err = err
		}
	})
	return p
}

// next returns the file's next record; ok is false at its end or after an error.
func (p *partialReader) next() (r Record, ok bool, err error) {
	if r, ok = p.pull(); ok {
		return r, true, nil
	}
	return Record{}, false, p.err
}

// sameQuery reports a query that is in one of a and b but not the other, given the next
// record of each file (a zero record past its end).
func sameQuery(a Record, haveA bool, b Record, haveB bool) error {
	switch {
	case haveA && (!haveB || a.QueryID < b.QueryID):
		return fmt.Errorf("query %q is only in the first", a.QueryID)
	case haveB && (!haveA || b.QueryID < a.QueryID):
		return fmt.Errorf("query %q is only in the second", b.QueryID)
	}
	return nil
}

// RemovePartials removes the given partial files; missing ones are not an error.
func RemovePartials(ctx context.Context, uris []string) error {
	var errs []error
	for _, uri := range uris {
		if err := blob.Remove(ctx, uri); err != nil {
			errs = append(errs, fmt.Errorf("remove partial %s: %w", uri, err))
		}
	}
	return errors.Join(errs...)
}

// RemoveTmp removes everything under dir/_tmp (and, for a local dir, the emptied
// directory). Call it once the output's manifest is written, not per tile: a retried
// bundle may need a tile's partials again.
func RemoveTmp(ctx context.Context, dir string) error {
	tmp := blob.Join(dir, TmpDir)
	prefix := tmp
	if blob.IsGCS(tmp) {
		prefix += "/"
	}
	files, err := blob.List(ctx, prefix)
	if err != nil {
		return fmt.Errorf("remove %s: %w", tmp, err)
	}
	if err := RemovePartials(ctx, files); err != nil {
		return err
	}
	if !blob.IsGCS(tmp) {
		if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove %s: %w", tmp, err)
		}
	}
	return nil
}
