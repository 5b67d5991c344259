package catalog

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"image"
	"path"
)

// DerivedID is the item id of a row in a catalog without an `id` column:
//
//	"i" + the first 16 hex digits (64 bits) of SHA-256 over path.Clean(relPath),
//	followed by "#x_1,y_1,x_2,y_2" (decimal) when the row has a box,
//
// for example "i3f9c0e27a1b45d88". It depends only on the row's own path and box, so it
// survives re-runs and edits of other rows, of row order and of column order. Two rows with
// the same image and box get the same id and are reported as duplicates. box is the row's
// crop as Row.Box returns it: an empty rectangle (the zero Rectangle) means no box.
func DerivedID(relPath string, box image.Rectangle) string {
	key := path.Clean(relPath)
	if !box.Empty() {
		key += fmt.Sprintf("#%d,%d,%d,%d", box.Min.X, box.Min.Y, box.Max.X, box.Max.Y)
	}
	sum := sha256.Sum256([]byte(key))
	return "i" + hex.EncodeToString(sum[:8])
}
