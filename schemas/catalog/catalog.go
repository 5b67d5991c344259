package catalog

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/stirpipe/stirpipe/schemas/blob"
)

// Catalog formats.
const (
	FormatCSV     = "csv"
	FormatParquet = "parquet"
)

// Catalog is a validated catalog file.
type Catalog struct {
	// URI is the catalog's location (or the name given to Parse).
	URI string
	// Format is FormatCSV or FormatParquet.
	Format string
	// Rows are the catalog rows in file order.
	Rows []Row
	// Snapshot is "sha256:<hex>" of the catalog file's bytes: provenance for stage files.
	Snapshot string
	// HasIDs says the ids come from an `id` column rather than DerivedID.
	HasIDs bool
}

func newCatalog(name, format string, rows []Row, hasIDs bool, snapshot string) *Catalog {
	return &Catalog{URI: name, Format: format, Rows: rows, Snapshot: snapshot, HasIDs: hasIDs}
}

// Options tune Load.
type Options struct {
	// Format is FormatCSV or FormatParquet; empty means from the extension (.csv,
	// .parquet, .pq).
	Format string
	// Root is the dataset root that image paths are relative to: a local directory or
	// gs://bucket/prefix. When set, Load checks it is well-formed; every row's path is
	// checked with CleanPath either way, so Resolve(Root, row.Path) cannot fail after Load.
	Root string
}

// Load reads the catalog at uri (a local path or gs://bucket/object) and validates it; on
// failure the error is a *ValidationError listing every problem, or a read error. Images
// are not opened: that happens per row later, with OpenImage.
func Load(ctx context.Context, uri string, opts Options) (*Catalog, error) {
	format, err := formatOf(uri, opts)
	if err != nil {
		return nil, err
	}
	data, err := blob.ReadFile(ctx, uri)
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	var cat *Catalog
	if format == FormatCSV {
		cat, err = Parse(uri, bytes.NewReader(data))
	} else {
		cat, err = ParseParquet(uri, data)
	}
	if err != nil {
		return nil, err
	}
	return cat, nil
}

// formatOf returns the catalog's format, given or from the extension, after checking the
// dataset root, if any.
func formatOf(uri string, opts Options) (string, error) {
	format := opts.Format
	if format == "" {
		switch strings.ToLower(path.Ext(uri)) {
		case ".csv":
			format = FormatCSV
		case ".parquet", ".pq":
			format = FormatParquet
		default:
			return "", fmt.Errorf("catalog %s: cannot tell the format from the extension; want .csv or .parquet, or set the format explicitly", uri)
		}
	}
	if format != FormatCSV && format != FormatParquet {
		return "", fmt.Errorf("catalog %s: format %q; want %q or %q", uri, format, FormatCSV, FormatParquet)
	}
	if opts.Root != "" {
		if err := checkRoot(opts.Root); err != nil {
			return "", fmt.Errorf("catalog %s: %w", uri, err)
		}
	}
	return format, nil
}

// Counts summarises a catalog.
type Counts struct {
	// Rows, Train and Validation count rows, in all and per split.
	Rows, Train, Validation int
	// Queries and Galleries count validation rows by role (a row may be both).
	Queries, Galleries int
	// Labels counts distinct labels over all rows; ValidationLabels over validation rows.
	Labels, ValidationLabels int
	// Boxes counts rows with a bounding box.
	Boxes int
}

// Counts counts the catalog's rows by split, role, label and box.
func (c *Catalog) Counts() Counts {
	var n Counts
	labels := map[int64]bool{}
	valLabels := map[int64]bool{}
	for _, r := range c.Rows {
		n.Rows++
		labels[r.Label] = true
		if r.HasBox {
			n.Boxes++
		}
		if !r.IsValidation() {
			n.Train++
			continue
		}
		n.Validation++
		valLabels[r.Label] = true
		if r.IsQuery {
			n.Queries++
		}
		if r.IsGallery {
			n.Galleries++
		}
	}
	n.Labels, n.ValidationLabels = len(labels), len(valLabels)
	return n
}

// SnapshotOf returns the snapshot of the catalog file at uri ("sha256:<hex>" of its bytes,
// as Catalog.Snapshot), streaming it without parsing.
func SnapshotOf(ctx context.Context, uri string) (string, error) {
	r, err := blob.Open(ctx, uri)
	if err != nil {
		return "", fmt.Errorf("catalog: %w", err)
	}
	defer r.Close()
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return "", fmt.Errorf("catalog %s: %w", uri, err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}
