package catalog

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"strconv"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// parquetBatch is the number of rows decoded at a time.
const parquetBatch = 64 << 10

// ParseParquet reads and validates a catalog stored as Parquet with the same column names
// as the CSV form. Columns may be any Arrow string, binary, integer, float (NaN = empty;
// pandas writes integer columns with gaps as float), bool or null type, or a dictionary of
// those; unknown columns are never decoded. Problems are located by 1-based row number.
// name is used in messages and as Catalog.URI. Like Parse, it checks paths only lexically.
func ParseParquet(name string, data []byte) (*Catalog, error) {
	ps := &problems{file: name, unit: "row"}
	res, err := withParquet(name, bytes.NewReader(data), func(fr *pqarrow.FileReader) (parsed, error) {
		return parseParquet(fr, ps, parquetPass{})
	})
	if err != nil {
		return nil, err
	}
	if err := ps.result(); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	return newCatalog(name, FormatParquet, res.rows, res.hasIDs, "sha256:"+hex.EncodeToString(sum[:])), nil
}

// parquetPass tunes one pass of parseParquet over a whole file or over some of its row
// groups.
type parquetPass struct {
	// rowGroups, when set, are the row groups to read (a piece); firstRow is the file row
	// number of the first one's first row.
	rowGroups []int
	firstRow  int64
	// emit, when set, receives the valid rows instead of parsed keeping them.
	emit func(Row)
}

func parseParquet(fr *pqarrow.FileReader, ps *problems, pass parquetPass) (parsed, error) {
	fields := fr.Manifest.Fields
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.Field.Name
	}
	l, ok := resolveHeader(names, ps)
	if !ok {
		return parsed{}, nil
	}
	var leaves []int
	for c, pos := range l {
		if pos < 0 {
			continue
		}
		f := fields[pos]
		if !f.IsLeaf() || !supportedType(f.Field.Type) {
			ps.add(0, colNames[c], fmt.Errorf("%w: Arrow type %s; want a string, integer, float or bool column", ErrColumn, f.Field.Type))
			ok = false
			continue
		}
		leaves = append(leaves, f.ColIndex)
	}
	if !ok {
		return parsed{}, nil
	}

	b := newBuilder(ps, l)
	b.emit = pass.emit
	nrows := fr.ParquetReader().NumRows()
	if nrows == 0 {
		return b.finish(0), nil
	}
	rr, err := fr.GetRecordReader(context.Background(), leaves, pass.rowGroups)
	if err != nil {
		return parsed{}, err
	}
	defer rr.Release()
	row := max(pass.firstRow-1, 0)
	for rr.Next() {
		rec := rr.RecordBatch()
		var cols [numCols]arrow.Array
		for c := range l {
			if l[c] < 0 {
				continue
			}
			idx := rec.Schema().FieldIndices(colNames[c])
			if len(idx) != 1 {
				return parsed{}, fmt.Errorf("column %q missing from decoded batch", colNames[c])
			}
			cols[c] = rec.Column(idx[0])
		}
		for i := range int(rec.NumRows()) {
			row++
			b.add(row, func(c int) (string, int64) {
				if cols[c] == nil {
					return "", row
				}
				return cellString(cols[c], i), row
			})
		}
	}
	if err := rr.Err(); err != nil {
		return parsed{}, err
	}
	if pass.rowGroups != nil {
		return parsed{hasIDs: b.l.has(cID)}, nil // a piece: the whole-file checks ran at the scan
	}
	return b.finish(row), nil
}

func supportedType(t arrow.DataType) bool {
	switch t.ID() {
	case arrow.STRING, arrow.LARGE_STRING, arrow.STRING_VIEW,
		arrow.BINARY, arrow.LARGE_BINARY, arrow.BINARY_VIEW,
		arrow.INT8, arrow.INT16, arrow.INT32, arrow.INT64,
		arrow.UINT8, arrow.UINT16, arrow.UINT32, arrow.UINT64,
		arrow.FLOAT32, arrow.FLOAT64, arrow.BOOL, arrow.NULL:
		return true
	case arrow.DICTIONARY:
		return supportedType(t.(*arrow.DictionaryType).ValueType)
	}
	return false
}

// cellString renders value i as the CSV form would hold it: null and NaN become "",
// integral floats lose their ".0", booleans become "true"/"false".
func cellString(a arrow.Array, i int) string {
	if a.IsNull(i) {
		return ""
	}
	switch a := a.(type) {
	case *array.String:
		return a.Value(i)
	case *array.LargeString:
		return a.Value(i)
	case *array.StringView:
		return a.Value(i)
	case *array.Binary:
		return a.ValueString(i)
	case *array.LargeBinary:
		return a.ValueString(i)
	case *array.BinaryView:
		return a.ValueString(i)
	case *array.Int8:
		return strconv.FormatInt(int64(a.Value(i)), 10)
	case *array.Int16:
		return strconv.FormatInt(int64(a.Value(i)), 10)
	case *array.Int32:
		return strconv.FormatInt(int64(a.Value(i)), 10)
	case *array.Int64:
		return strconv.FormatInt(a.Value(i), 10)
	case *array.Uint8:
		return strconv.FormatUint(uint64(a.Value(i)), 10)
	case *array.Uint16:
		return strconv.FormatUint(uint64(a.Value(i)), 10)
	case *array.Uint32:
		return strconv.FormatUint(uint64(a.Value(i)), 10)
	case *array.Uint64:
		return strconv.FormatUint(a.Value(i), 10)
	case *array.Float32:
		return formatFloat(float64(a.Value(i)))
	case *array.Float64:
		return formatFloat(a.Value(i))
	case *array.Boolean:
		return strconv.FormatBool(a.Value(i))
	case *array.Dictionary:
		return cellString(a.Dictionary(), a.GetValueIndex(i))
	}
	return "" // *array.Null; other types are refused by supportedType
}

func formatFloat(f float64) string {
	if math.IsNaN(f) {
		return ""
	}
	return strconv.FormatFloat(f, 'f', -1, 64)
}
