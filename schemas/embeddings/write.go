package embeddings

import (
	"context"
	"fmt"
	"math"
	"strings"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/parquet"

	"github.com/stirpipe/stirpipe/schemas/internal/pqfile"
)

// rowGroupBytes is the target uncompressed size of a row group: the unit a reader holds in
// memory. A variable so that tests can make several row groups from few rows.
var rowGroupBytes = 32 << 20

// maxProblems caps how many bad records one error lists.
const maxProblems = 20

// ShardName returns the file name of shard i of n (0 ≤ i < n), e.g.
// part-00003-of-00016.parquet.
func ShardName(i, n int) string {
	return fmt.Sprintf("part-%05d-of-%05d.parquet", i, n)
}

// rowGroupRows returns the rows per row group for dim-wide embeddings.
func rowGroupRows(dim int) int {
	const perRowOverhead = 128 // ids, paths and the other columns, roughly
	return max(1024, min(1<<16, rowGroupBytes/(4*dim+perRowOverhead)))
}

// WriteShard writes recs, sorted by item id, as one Parquet file at uri (a local path or
// gs:// URI), published atomically. Every record needs a non-empty, unique item id and an
// embedding of prov.Dim finite values; otherwise nothing is written and the error names
// every offending item (up to 20).
func WriteShard(ctx context.Context, uri string, recs []Record, prov Provenance) (ShardInfo, error) {
	return writeShard(ctx, uri, recs, prov, FormatV2)
}

// writeShard is WriteShard in the layout of format (FormatV1 only in tests).
func writeShard(ctx context.Context, uri string, recs []Record, prov Provenance, format string) (ShardInfo, error) {
	if err := prov.Validate(); err != nil {
		return ShardInfo{}, fmt.Errorf("write embeddings %s: %w", uri, err)
	}
	if err := checkRecords(recs, prov.Dim); err != nil {
		return ShardInfo{}, fmt.Errorf("write embeddings %s: %w", uri, err)
	}
	dim := prov.Dim
	return pqfile.Write(ctx, uri, recs, pqfile.Spec[Record]{
		Schema:       schemaOf(format, dim, prov),
		Compare:      func(a, b *Record) int { return strings.Compare(a.Row.ID, b.Row.ID) },
		Append:       appendRecord,
		RowGroupRows: rowGroupRows(dim),
		Props: []parquet.WriterProperty{
			// Embedding values never repeat: a dictionary or min/max statistics only cost time.
			parquet.WithDictionaryFor(colEmbedding+".list.element", false),
			parquet.WithStatsFor(colEmbedding+".list.element", false),
		},
	})
}

// checkRecords reports empty or duplicate ids and embeddings of the wrong width or with
// non-finite values.
func checkRecords(recs []Record, dim int) error {
	var errs []error
	seen := make(map[string]int64, len(recs))
	for i := range recs {
		r := &recs[i]
		id := r.Row.ID
		if id == "" {
			errs = append(errs, fmt.Errorf("record %d (catalog line %d, path %q): empty item id", i, r.Row.Line, r.Row.Path))
			continue
		}
		if line, dup := seen[id]; dup {
			errs = append(errs, fmt.Errorf("item %q (catalog line %d): duplicate item id, also at catalog line %d", id, r.Row.Line, line))
		}
		seen[id] = r.Row.Line
		if len(r.Embedding) != dim {
			errs = append(errs, fmt.Errorf("item %q (catalog line %d): embedding has %d values, want dim %d", id, r.Row.Line, len(r.Embedding), dim))
			continue
		}
		for j, v := range r.Embedding {
			if math.Float32bits(v)&0x7f800000 == 0x7f800000 { // all exponent bits set: NaN or ±Inf
				errs = append(errs, fmt.Errorf("item %q (catalog line %d): embedding value %d is %v, want a finite number", id, r.Row.Line, j, v))
				break
			}
		}
	}
	return pqfile.JoinLimited(errs, maxProblems)
}

// appendRecord appends r as one row; the builder's fields follow Schema (or the FormatV1
// schema, which has no fingerprint column).
func appendRecord(b *array.RecordBuilder, r *Record) {
	row := &r.Row
	b.Field(0).(*array.StringBuilder).Append(row.ID)
	b.Field(1).(*array.Int64Builder).Append(row.Label)
	b.Field(2).(*array.StringBuilder).Append(row.Path)
	b.Field(3).(*array.StringBuilder).Append(row.Split)
	b.Field(4).(*array.BooleanBuilder).Append(row.IsQuery)
	b.Field(5).(*array.BooleanBuilder).Append(row.IsGallery)
	appendOptional(b.Field(6).(*array.StringBuilder), row.Category)
	appendOptional(b.Field(7).(*array.StringBuilder), row.Sequence)
	for k, v := range [4]int64{row.X1, row.Y1, row.X2, row.Y2} {
		ib := b.Field(8 + k).(*array.Int64Builder)
		if row.HasBox {
			ib.Append(v)
		} else {
			ib.AppendNull()
		}
	}
	b.Field(12).(*array.Int64Builder).Append(row.Line)
	emb := 13
	if b.Schema().NumFields() > 14 {
		appendOptional(b.Field(13).(*array.StringBuilder), r.Fingerprint)
		emb = 14
	}
	lb := b.Field(emb).(*array.FixedSizeListBuilder)
	lb.Append(true)
	lb.ValueBuilder().(*array.Float32Builder).AppendValues(r.Embedding, nil)
}

func appendOptional(b *array.StringBuilder, s string) {
	if s == "" {
		b.AppendNull()
	} else {
		b.Append(s)
	}
}
