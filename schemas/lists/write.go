package lists

import (
	"context"
	"fmt"
	"strings"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"

	"github.com/stirpipe/stirpipe/schemas/internal/pqfile"
)

// rowGroupBytes is the target uncompressed size of a row group (Parquet) or record batch
// (Arrow IPC): the unit a reader holds in memory. A variable so that tests can make several
// groups from few rows.
var rowGroupBytes = 32 << 20

// rowGroupRows returns the rows per row group for lists of up to k neighbours.
func rowGroupRows(k int) int {
	const perRow, perNeighbor = 104, 40 // query columns; an id, a label and a distance, roughly
	return max(16, min(1<<16, rowGroupBytes/(perRow+perNeighbor*k)))
}

// ShardName returns the file name of shard i of n (0 ≤ i < n) with extension ext (with or
// without its dot), e.g. ShardName(3, 16, ExtArrow) = "part-00003-of-00016.arrow".
func ShardName(i, n int, ext string) string {
	return fmt.Sprintf("part-%05d-of-%05d.%s", i, n, strings.TrimPrefix(ext, "."))
}

// WriteShard writes recs, sorted by query id, as one Parquet file at uri (a local path or
// gs:// URI ending in .parquet), published atomically; the same records in any order give
// the same bytes. Every record is checked against prov first (see Record); on any problem
// nothing is written and the error names every offending query (up to 20).
func WriteShard(ctx context.Context, uri string, recs []Record, prov Provenance) (ShardInfo, error) {
	return write(ctx, uri, ExtParquet, recs, prov)
}

// WriteIPCShard is WriteShard for the Arrow IPC file format: uri ends in .arrow, the
// record batches are uncompressed, and the provenance is the schema's metadata.
func WriteIPCShard(ctx context.Context, uri string, recs []Record, prov Provenance) (ShardInfo, error) {
	return write(ctx, uri, ExtArrow, recs, prov)
}

// WriteFile writes recs with WriteShard or WriteIPCShard, chosen by uri's extension.
func WriteFile(ctx context.Context, uri string, recs []Record, prov Provenance) (ShardInfo, error) {
	ext, err := extOf(uri)
	if err != nil {
		return ShardInfo{}, fmt.Errorf("write neighbours: %w", err)
	}
	return write(ctx, uri, ext, recs, prov)
}

// extOf returns the format extension of uri.
func extOf(uri string) (string, error) {
	for _, ext := range []string{ExtParquet, ExtArrow} {
		if strings.HasSuffix(uri, ext) {
			return ext, nil
		}
	}
	return "", fmt.Errorf("%s: want a name ending in %s (Parquet) or %s (Arrow IPC)", uri, ExtParquet, ExtArrow)
}

func write(ctx context.Context, uri, ext string, recs []Record, prov Provenance) (ShardInfo, error) {
	spec, err := fileSpec(uri, ext, prov)
	if err != nil {
		return ShardInfo{}, err
	}
	if err := checkRecords(recs, prov); err != nil {
		return ShardInfo{}, fmt.Errorf("write neighbours %s: %w", uri, err)
	}
	if ext == ExtArrow {
		return pqfile.WriteIPC(ctx, uri, recs, spec)
	}
	return pqfile.Write(ctx, uri, recs, spec)
}

// writeSorted writes the records each yields, which must come sorted by unique query id,
// to uri like WriteFile does a slice of them (the same records give the same bytes), with
// one row group in memory at a time. Each record is checked as it comes; on any problem
// nothing is written.
func writeSorted(ctx context.Context, uri string, each func(yield func(*Record) error) error, prov Provenance) (ShardInfo, error) {
	ext, err := extOf(uri)
	if err != nil {
		return ShardInfo{}, fmt.Errorf("write neighbours: %w", err)
	}
	spec, err := fileSpec(uri, ext, prov)
	if err != nil {
		return ShardInfo{}, err
	}
	c := newChecker(prov)
	var (
		i    int
		prev string
	)
	checked := func(yield func(*Record) error) error {
		return each(func(r *Record) error {
			if errs := c.check(i, r); len(errs) > 0 {
				return pqfile.JoinLimited(errs, maxProblems)
			}
			if i > 0 && r.QueryID <= prev {
				return fmt.Errorf("record %d: query %q after %q, want records sorted by unique query id", i, r.QueryID, prev)
			}
			prev = r.QueryID
			i++
			return yield(r)
		})
	}
	var info ShardInfo
	if ext == ExtArrow {
		info, err = pqfile.WriteIPCSorted(ctx, uri, checked, spec)
	} else {
		info, err = pqfile.WriteSorted(ctx, uri, checked, spec)
	}
	if err != nil {
		return info, fmt.Errorf("write neighbours %s: %w", uri, err)
	}
	return info, nil
}

// fileSpec checks uri and prov and returns how records of prov go into a file of format
// ext. Partial files (StagePartial) are temporary: they are compressed with Snappy, whose
// encoder holds no history window, instead of zstd.
func fileSpec(uri, ext string, prov Provenance) (pqfile.Spec[Record], error) {
	if !strings.HasSuffix(uri, ext) {
		return pqfile.Spec[Record]{}, fmt.Errorf("write neighbours %s: want a name ending in %s for this format", uri, ext)
	}
	if err := prov.Validate(); err != nil {
		return pqfile.Spec[Record]{}, fmt.Errorf("write neighbours %s: %w", uri, err)
	}
	spec := pqfile.Spec[Record]{
		Schema:       Schema(prov),
		Compare:      compare,
		Append:       appendRecord,
		RowGroupRows: rowGroupRows(prov.K),
	}
	if ext == ExtArrow {
		return spec, nil
	}
	// Distances and scores seldom repeat: a dictionary only costs time. Neighbour ids do
	// repeat across queries, so they keep the default dictionary.
	for _, col := range []string{colDistances, colPairScores} {
		spec.Props = append(spec.Props, parquet.WithDictionaryFor(col+".list.element", false))
	}
	if prov.Stage == StagePartial {
		spec.Props = append(spec.Props, parquet.WithCompression(compress.Codecs.Snappy))
	}
	return spec, nil
}

// appendRecord appends r as one row; the builder's fields follow Schema.
func appendRecord(b *array.RecordBuilder, r *Record) {
	b.Field(0).(*array.StringBuilder).Append(r.QueryID)
	b.Field(1).(*array.Int64Builder).Append(r.QueryLabel)
	appendOptional(b.Field(2).(*array.StringBuilder), r.QueryCategory)
	appendOptional(b.Field(3).(*array.StringBuilder), r.QuerySequence)
	b.Field(4).(*array.Int64Builder).Append(r.NRelevant)
	lb := b.Field(5).(*array.ListBuilder)
	lb.Append(true)
	// One at a time: AppendValues reserves exactly, which copies the whole buffer per row.
	sb := lb.ValueBuilder().(*array.StringBuilder)
	for _, id := range r.NeighborIDs {
		sb.Append(id)
	}
	lb = b.Field(6).(*array.ListBuilder)
	lb.Append(true)
	lb.ValueBuilder().(*array.Int64Builder).AppendValues(r.NeighborLabels, nil)
	appendFloats(b.Field(7).(*array.ListBuilder), r.Distances)
	if b.Schema().NumFields() > 8 {
		appendFloats(b.Field(8).(*array.ListBuilder), r.PairScores)
	}
}

func appendFloats(lb *array.ListBuilder, v []float32) {
	lb.Append(true)
	lb.ValueBuilder().(*array.Float32Builder).AppendValues(v, nil)
}

func appendOptional(b *array.StringBuilder, s string) {
	if s == "" {
		b.AppendNull()
	} else {
		b.Append(s)
	}
}
