// Package rejects records the catalog rows that a stage could not process (a missing or
// corrupt image, a failed crop, …) so that a run goes on without them and says exactly what
// it left out. Rejects are written as Parquet shards beside a stage's output, sorted and
// published atomically like the embeddings shards; a shard with no rejects is still a valid
// (empty) file, so "no problems" is visible too.
package rejects

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/stirpipe/stirpipe/schemas/blob"
	"github.com/stirpipe/stirpipe/schemas/internal/pqfile"
)

// FormatV1 identifies a rejects file in its key-value metadata (key "stir.format").
const FormatV1 = "stir.rejects/v1"

// Stages that reject rows.
const (
	StageCatalog    = "catalog"
	StageDecode     = "decode"
	StagePreprocess = "preprocess"
	StageEmbed      = "embed"
)

// Machine-readable reasons.
const (
	// ReasonMissing: the image file does not exist.
	ReasonMissing = "missing"
	// ReasonCorrupt: the image exists but cannot be decoded.
	ReasonCorrupt = "corrupt"
)

// Record is one rejected catalog row.
type Record struct {
	// ItemID is the row's item id ("" when the row never got one).
	ItemID string
	// Path is the image path as written in the catalog.
	Path string
	// Stage is the stage that rejected the row, e.g. StageDecode.
	Stage string
	// Reason is a machine-readable cause, e.g. ReasonCorrupt.
	Reason string
	// Detail is the human-readable explanation.
	Detail string
	// Line is the row's catalog line.
	Line int64
}

// ShardInfo describes one written rejects file.
type ShardInfo = pqfile.Info

const keyFormat = "stir.format"

// rowGroupRows keeps row groups small: rejects are few and short.
const rowGroupRows = 1 << 16

// Schema returns the Arrow schema of a rejects file.
func Schema() *arrow.Schema {
	md := arrow.NewMetadata([]string{keyFormat}, []string{FormatV1})
	return arrow.NewSchema([]arrow.Field{
		{Name: "item_id", Type: arrow.BinaryTypes.String},
		{Name: "path", Type: arrow.BinaryTypes.String},
		{Name: "stage", Type: arrow.BinaryTypes.String},
		{Name: "reason", Type: arrow.BinaryTypes.String},
		{Name: "detail", Type: arrow.BinaryTypes.String},
		{Name: "line", Type: arrow.PrimitiveTypes.Int64},
	}, &md)
}

// compare orders records by item id, then stage, then every other field, so the order is
// total and the file deterministic.
func compare(a, b *Record) int {
	return cmp.Or(
		strings.Compare(a.ItemID, b.ItemID),
		strings.Compare(a.Stage, b.Stage),
		strings.Compare(a.Reason, b.Reason),
		cmp.Compare(a.Line, b.Line),
		strings.Compare(a.Path, b.Path),
		strings.Compare(a.Detail, b.Detail),
	)
}

// WriteShard writes recs, sorted by item id then stage, as one Parquet file at uri (local
// path or gs:// URI), published atomically. Zero records give a valid empty file. Every
// record needs a Stage and a Reason.
func WriteShard(ctx context.Context, uri string, recs []Record) (ShardInfo, error) {
	var errs []error
	for i, r := range recs {
		if r.Stage == "" || r.Reason == "" {
			errs = append(errs, fmt.Errorf("reject %d (item %q, catalog line %d): stage %q and reason %q must both be set", i, r.ItemID, r.Line, r.Stage, r.Reason))
		}
	}
	if err := pqfile.JoinLimited(errs, 20); err != nil {
		return ShardInfo{}, fmt.Errorf("write rejects %s: %w", uri, err)
	}
	return pqfile.Write(ctx, uri, recs, pqfile.Spec[Record]{
		Schema:       Schema(),
		Compare:      compare,
		RowGroupRows: rowGroupRows,
		Append: func(b *array.RecordBuilder, r *Record) {
			b.Field(0).(*array.StringBuilder).Append(r.ItemID)
			b.Field(1).(*array.StringBuilder).Append(r.Path)
			b.Field(2).(*array.StringBuilder).Append(r.Stage)
			b.Field(3).(*array.StringBuilder).Append(r.Reason)
			b.Field(4).(*array.StringBuilder).Append(r.Detail)
			b.Field(5).(*array.Int64Builder).Append(r.Line)
		},
	})
}

// ReadAll reads one rejects file (a name ending in .parquet) or every *.parquet file
// directly inside a directory or gs:// prefix, and returns the records sorted as written.
func ReadAll(ctx context.Context, uri string) ([]Record, error) {
	files := []string{uri}
	if !strings.HasSuffix(uri, ".parquet") {
		var err error
		if files, err = listShards(ctx, uri); err != nil {
			return nil, err
		}
	}
	var out []Record
	for _, f := range files {
		recs, err := readFile(ctx, f)
		if err != nil {
			return nil, err
		}
		out = append(out, recs...)
	}
	slices.SortStableFunc(out, func(a, b Record) int { return compare(&a, &b) })
	return out, nil
}

// listShards returns the *.parquet files directly inside dir, skipping hidden and
// underscore names (temporary files, manifests).
func listShards(ctx context.Context, dir string) ([]string, error) {
	prefix := dir
	if blob.IsGCS(dir) {
		prefix = strings.TrimSuffix(dir, "/") + "/"
	}
	all, err := blob.List(ctx, prefix)
	if err != nil {
		return nil, fmt.Errorf("rejects %s: %w", dir, err)
	}
	var files []string
	for _, f := range all {
		var direct bool
		if blob.IsGCS(f) {
			direct = !strings.Contains(strings.TrimPrefix(f, prefix), "/")
		} else {
			direct = filepath.Dir(f) == filepath.Clean(dir)
		}
		base := path.Base(filepath.ToSlash(f))
		if !direct || !strings.HasSuffix(base, ".parquet") || strings.HasPrefix(base, ".") || strings.HasPrefix(base, "_") {
			continue
		}
		files = append(files, f)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("rejects %s: no *.parquet files there (wrong directory, or the stage did not finish?)", dir)
	}
	return files, nil
}

func readFile(ctx context.Context, uri string) ([]Record, error) {
	f, err := pqfile.Open(ctx, uri)
	if err != nil {
		return nil, fmt.Errorf("rejects: %w", err)
	}
	defer f.Close()
	if got := f.KeyValue()[keyFormat]; got != FormatV1 {
		return nil, fmt.Errorf("rejects: %s: metadata %s is %q, want %q (not a rejects file)", uri, keyFormat, got, FormatV1)
	}
	schema, err := f.Schema()
	if err != nil {
		return nil, fmt.Errorf("rejects: %w", err)
	}
	if err := pqfile.CheckFields(uri, schema, Schema()); err != nil {
		return nil, fmt.Errorf("rejects: %w", err)
	}
	out := make([]Record, 0, f.NumRows())
	err = f.Each(ctx, func(rec arrow.RecordBatch) error {
		var cols [5]*array.String
		var errs []error
		for i, name := range []string{"item_id", "path", "stage", "reason", "detail"} {
			var err error
			cols[i], err = pqfile.Column[*array.String](rec, uri, name)
			errs = append(errs, err)
		}
		line, err := pqfile.Column[*array.Int64](rec, uri, "line")
		if err := errors.Join(append(errs, err)...); err != nil {
			return err
		}
		for i := range int(rec.NumRows()) {
			out = append(out, Record{
				ItemID: strings.Clone(cols[0].Value(i)),
				Path:   strings.Clone(cols[1].Value(i)),
				Stage:  strings.Clone(cols[2].Value(i)),
				Reason: strings.Clone(cols[3].Value(i)),
				Detail: strings.Clone(cols[4].Value(i)),
				Line:   line.Value(i),
			})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("rejects: %w", err)
	}
	return out, nil
}
