package synth

import (
	"encoding/csv"
	"fmt"
	"io"
	"strconv"

	"github.com/stirpipe/stirpipe/schemas/catalog"
)

// CatalogHeader is the column order WriteCatalogCSV writes (OML's dataframe
// columns).
var CatalogHeader = []string{"label", "path", "split", "is_query", "is_gallery", "category", "x_1", "x_2", "y_1", "y_2", "sequence"}

// WriteCatalogCSV writes rows as an OML catalog: a header, then one line per
// row. Booleans are written True/False as pandas does; train rows leave
// is_query and is_gallery empty; rows without a box leave x_1 … y_2 empty.
// Row.ID and Row.Line are not written.
func WriteCatalogCSV(w io.Writer, rows []catalog.Row) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(CatalogHeader); err != nil {
		return fmt.Errorf("synth: writing the catalog header: %w", err)
	}
	rec := make([]string, len(CatalogHeader))
	for i, r := range rows {
		rec[0] = strconv.FormatInt(r.Label, 10)
		rec[1] = r.Path
		rec[2] = r.Split
		rec[3], rec[4] = "", ""
		if r.Split != "train" {
			rec[3], rec[4] = pyBool(r.IsQuery), pyBool(r.IsGallery)
		}
		rec[5] = r.Category
		for j := 6; j < 10; j++ {
			rec[j] = ""
		}
		if r.HasBox {
			rec[6] = strconv.FormatInt(r.X1, 10)
			rec[7] = strconv.FormatInt(r.X2, 10)
			rec[8] = strconv.FormatInt(r.Y1, 10)
			rec[9] = strconv.FormatInt(r.Y2, 10)
		}
		rec[10] = r.Sequence
		if err := cw.Write(rec); err != nil {
			return fmt.Errorf("synth: writing catalog row %d (label %d, %s): %w", i+1, r.Label, r.Path, err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("synth: writing the catalog: %w", err)
	}
	return nil
}

func pyBool(b bool) string {
	if b {
		return "True"
	}
	return "False"
}
