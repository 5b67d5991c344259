// Package catalogio brings a scanned catalog into a pipeline as a PCollection of
// catalog.Row, read on the workers rather than embedded in the pipeline graph: the graph
// holds the list of pieces (a few dozen bytes per 1,000 rows), never the rows.
package catalogio

import (
	"context"
	"fmt"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/stirpipe/stirpipe/schemas/catalog"
)

func init() {
	register.DoFn3x1[context.Context, int, func(catalog.Row), error](&readPieceFn{})
	register.Emitter1[catalog.Row]()
}

// Read emits every row of a catalog that the launcher has scanned and validated: one
// reader per piece, each reading its own rows only. The pieces are spread over the workers,
// and their rows are not: each piece's rows flow into the next transform as they are read
// (fused with it), so the work starts with the first row and no stage holds the catalog.
func Read(s beam.Scope, cat *catalog.Scan) beam.PCollection {
	s = s.Scope("ReadCatalog")
	if len(cat.Pieces) == 0 {
		panic(fmt.Sprintf("catalogio.Read: catalog %s has no pieces", cat.URI))
	}
	pieces := make([]int, len(cat.Pieces))
	for i := range pieces {
		pieces[i] = i
	}
	return beam.ParDo(s, &readPieceFn{Catalog: *cat}, beam.Reshuffle(s, beam.CreateList(s, pieces)))
}

type readPieceFn struct {
	Catalog catalog.Scan
}

func (fn *readPieceFn) ProcessElement(ctx context.Context, piece int, emit func(catalog.Row)) error {
	return fn.Catalog.ReadPiece(ctx, piece, emit)
}
