// Package catalog reads and validates image catalogs in OML's dataframe format (CSV, or the
// same columns in Parquet), from local disk or gs://, and gives every row a stable item id.
//
// A catalog is validated as a whole before any image is read: every problem is reported at
// once with file, line and column. Image paths are resolved against a dataset root and can
// never escape it.
package catalog

import "image"

// Row is one validated catalog row: one image (or one box of an image) of one product.
// It is the element type that enters the pipeline; field names are stable because Beam
// encodes them.
type Row struct {
	// ID is the stable item id that joins every stage file: the `id` column when the
	// catalog has one, otherwise DerivedID(Path, box).
	ID string
	// Line is the 1-based line (CSV) or row number (Parquet, header not counted) in the
	// catalog file, for error messages.
	Line int64
	// Label is the product id; rows with the same label show the same product.
	Label int64
	// Path is the image path relative to the dataset root, as written in the catalog.
	Path string
	// Split is "train" or "validation".
	Split string
	// IsQuery and IsGallery say how a validation row takes part in retrieval.
	IsQuery   bool
	IsGallery bool
	// Category is the optional product category ("" when absent).
	Category string
	// Sequence is the optional sequence id ("" when absent); rows sharing a sequence are
	// never each other's neighbours.
	Sequence string
	// HasBox says the row crops its image to (X1, Y1)-(X2, Y2): left, top, right, bottom,
	// in pixels, right and bottom exclusive as PIL's crop.
	HasBox         bool
	X1, Y1, X2, Y2 int64
}

// Box returns the row's crop rectangle (left, top, right, bottom; right and bottom
// exclusive) and true, or the zero rectangle and false when the row has no box.
func (r Row) Box() (image.Rectangle, bool) {
	if !r.HasBox {
		return image.Rectangle{}, false
	}
	return image.Rect(int(r.X1), int(r.Y1), int(r.X2), int(r.Y2)), true
}

// IsValidation reports whether the row belongs to the validation split.
func (r Row) IsValidation() bool { return r.Split == SplitValidation }

// Queries reports whether the row is a retrieval query: a validation row marked query.
func (r Row) Queries() bool { return r.IsValidation() && r.IsQuery }

// InGallery reports whether the row is in the retrieval gallery: a validation row marked
// gallery.
func (r Row) InGallery() bool { return r.IsValidation() && r.IsGallery }
