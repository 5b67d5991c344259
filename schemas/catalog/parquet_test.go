package catalog

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// column is one Parquet column to write: its name and a function appending row i's value
// (or a null) to the builder.
type column struct {
	name string
	typ  arrow.DataType
	add  func(b array.Builder, i int)
}

// writeParquet writes n rows as a Parquet file with pqarrow, in row groups of groupRows.
func writeParquet(t testing.TB, n, groupRows int, cols []column) []byte {
	t.Helper()
	fields := make([]arrow.Field, len(cols))
	for i, c := range cols {
		fields[i] = arrow.Field{Name: c.name, Type: c.typ, Nullable: true}
	}
	schema := arrow.NewSchema(fields, nil)
	rb := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer rb.Release()
	for i := range n {
		for j, c := range cols {
			c.add(rb.Field(j), i)
		}
	}
	rec := rb.NewRecordBatch()
	defer rec.Release()
	tbl := array.NewTableFromRecords(schema, []arrow.RecordBatch{rec})
	defer tbl.Release()
	var buf bytes.Buffer
	props := parquet.NewWriterProperties(parquet.WithDictionaryDefault(true))
	if err := pqarrow.WriteTable(tbl, &buf, int64(groupRows), props, pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema())); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// sample is a catalog in memory, written out as CSV and as Parquet by the tests.
type sample struct {
	label              int64
	path, split        string
	query, gallery     string // "" = empty
	category, sequence string
	box                *[4]int64 // x_1, x_2, y_1, y_2
}

func sampleRows(n int) []sample {
	var s []sample
	for i := range n {
		r := sample{label: int64(i / 3), path: fmt.Sprintf("img/%03d/%d.jpg", i/3, i), split: SplitValidation,
			category: []string{"shoes", "bags", ""}[i%3], sequence: fmt.Sprintf("seq%d", i/2)}
		switch i % 4 {
		case 0:
			r.query, r.gallery = "True", "True"
		case 1:
			r.query, r.gallery = "False", "True"
		case 2:
			r.query, r.gallery = "True", "True"
		case 3:
			r.split = SplitTrain
		}
		if i%5 == 0 {
			r.box = &[4]int64{int64(i), int64(i + 10), 3, 200}
		}
		s = append(s, r)
	}
	return s
}

func sampleCSV(rows []sample) string {
	var b strings.Builder
	// Another column order than the Parquet file, and an extra column.
	b.WriteString("path,label,note,split,is_query,is_gallery,x_1,x_2,y_1,y_2,category,sequence\n")
	for _, r := range rows {
		box := ",,,"
		if r.box != nil {
			box = fmt.Sprintf("%d.0,%d.0,%d,%d", r.box[0], r.box[1], r.box[2], r.box[3])
		}
		fmt.Fprintf(&b, "%s,%d,\"a, b\",%s,%s,%s,%s,%s,%s\n", r.path, r.label, r.split, r.query, r.gallery, box, r.category, r.sequence)
	}
	return b.String()
}

// sampleParquet writes rows with the Arrow types pandas/pyarrow would use: int64 labels,
// nullable bools, float64 box columns with NaN/null gaps, dictionary-encoded categories.
func sampleParquet(t testing.TB, rows []sample, groupRows int) []byte {
	role := func(get func(sample) string) func(b array.Builder, i int) {
		return func(b array.Builder, i int) {
			switch get(rows[i]) {
			case "":
				b.AppendNull()
			case "True":
				b.(*array.BooleanBuilder).Append(true)
			default:
				b.(*array.BooleanBuilder).Append(false)
			}
		}
	}
	boxCol := func(name string, k int) column {
		return column{name, arrow.PrimitiveTypes.Float64, func(b array.Builder, i int) {
			switch {
			case rows[i].box != nil:
				b.(*array.Float64Builder).Append(float64(rows[i].box[k]))
			case i%2 == 0:
				b.(*array.Float64Builder).Append(math.NaN())
			default:
				b.AppendNull()
			}
		}}
	}
	dict := &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int32, ValueType: arrow.BinaryTypes.String}
	return writeParquet(t, len(rows), groupRows, []column{
		{"label", arrow.PrimitiveTypes.Int64, func(b array.Builder, i int) { b.(*array.Int64Builder).Append(rows[i].label) }},
		{"path", arrow.BinaryTypes.String, func(b array.Builder, i int) { b.(*array.StringBuilder).Append(rows[i].path) }},
		{"split", arrow.BinaryTypes.LargeString, func(b array.Builder, i int) { b.(*array.LargeStringBuilder).Append(rows[i].split) }},
		{"is_query", arrow.FixedWidthTypes.Boolean, role(func(s sample) string { return s.query })},
		{"is_gallery", arrow.FixedWidthTypes.Boolean, role(func(s sample) string { return s.gallery })},
		{"category", dict, func(b array.Builder, i int) {
			if rows[i].category == "" {
				b.AppendNull()
				return
			}
			if err := b.(*array.BinaryDictionaryBuilder).AppendString(rows[i].category); err != nil {
				t.Fatal(err)
			}
		}},
		{"sequence", arrow.BinaryTypes.String, func(b array.Builder, i int) { b.(*array.StringBuilder).Append(rows[i].sequence) }},
		boxCol("x_1", 0), boxCol("x_2", 1), boxCol("y_1", 2), boxCol("y_2", 3),
		{"embedding_hint", arrow.ListOf(arrow.PrimitiveTypes.Float32), func(b array.Builder, i int) { b.AppendNull() }},
	})
}

func TestCSVAndParquetGiveSameRows(t *testing.T) {
	rows := sampleRows(200)
	fromCSV, err := Parse("s.csv", strings.NewReader(sampleCSV(rows)))
	if err != nil {
		t.Fatal(err)
	}
	// Small row groups and a batch boundary inside the file exercise the row numbering.
	fromPQ, err := ParseParquet("s.parquet", sampleParquet(t, rows, 64))
	if err != nil {
		t.Fatal(err)
	}
	if fromPQ.Format != FormatParquet || len(fromPQ.Rows) != len(rows) || len(fromCSV.Rows) != len(rows) {
		t.Fatalf("rows: csv %d, parquet %d, want %d", len(fromCSV.Rows), len(fromPQ.Rows), len(rows))
	}
	for i := range rows {
		c, p := fromCSV.Rows[i], fromPQ.Rows[i]
		if c.Line != int64(i+2) || p.Line != int64(i+1) {
			t.Errorf("row %d: csv line %d, parquet row %d", i, c.Line, p.Line)
		}
		c.Line, p.Line = 0, 0
		if c != p {
			t.Errorf("row %d differs:\ncsv     %+v\nparquet %+v", i, c, p)
		}
		if c.HasBox != (rows[i].box != nil) || c.Category != rows[i].category {
			t.Errorf("row %d = %+v, from %+v", i, c, rows[i])
		}
	}
	if fromCSV.Counts() != fromPQ.Counts() {
		t.Errorf("counts differ: %+v vs %+v", fromCSV.Counts(), fromPQ.Counts())
	}
}

func TestParquetProblems(t *testing.T) {
	rows := sampleRows(12)
	rows[4].box = &[4]int64{9, 3, 0, 5}                     // x_1 > x_2
	rows[6].path = "../../etc/passwd"                       // escapes
	rows[8].gallery = ""                                    // validation row without is_gallery
	rows[10].path, rows[10].box = rows[9].path, rows[9].box // duplicate of row 10 (1-based)
	_, err := ParseParquet("p.parquet", sampleParquet(t, rows, 5))
	ps := problemsOf(t, err)
	want := []string{
		`p.parquet row 5, column "x_1": bad bounding box: want x_1 < x_2`,
		`p.parquet row 7, column "path": unsafe image path`,
		`p.parquet row 9, column "is_gallery": bad value`,
		`p.parquet row 11, column "path": duplicate item id: same image and box as row 10`,
	}
	if len(ps) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%v", len(ps), len(want), err)
	}
	for i, w := range want {
		if !strings.HasPrefix(ps[i].Error(), w) {
			t.Errorf("problem %d = %q, want prefix %q", i, ps[i], w)
		}
	}
}

func TestParquetColumns(t *testing.T) {
	str := func(vals ...string) func(b array.Builder, i int) {
		return func(b array.Builder, i int) { b.(*array.StringBuilder).Append(vals[i%len(vals)]) }
	}
	tests := []struct {
		name string
		cols []column
		kind error // nil = valid
		want string
	}{
		{"int labels as int32, int ids", []column{
			{"id", arrow.PrimitiveTypes.Uint32, func(b array.Builder, i int) { b.(*array.Uint32Builder).Append(uint32(100 + i)) }},
			{"label", arrow.PrimitiveTypes.Int32, func(b array.Builder, i int) { b.(*array.Int32Builder).Append(int32(i)) }},
			{"path", arrow.BinaryTypes.String, str("a.jpg", "b.jpg")},
			{"split", arrow.BinaryTypes.String, str("train")},
		}, nil, "100 101"},
		{"integer roles", []column{
			{"label", arrow.PrimitiveTypes.Int64, func(b array.Builder, i int) { b.(*array.Int64Builder).Append(1) }},
			{"path", arrow.BinaryTypes.Binary, func(b array.Builder, i int) { b.(*array.BinaryBuilder).AppendString(fmt.Sprintf("%d.jpg", i)) }},
			{"split", arrow.BinaryTypes.String, str("validation")},
			{"is_query", arrow.PrimitiveTypes.Int8, func(b array.Builder, i int) { b.(*array.Int8Builder).Append(int8(i)) }},
			{"is_gallery", arrow.PrimitiveTypes.Int8, func(b array.Builder, i int) { b.(*array.Int8Builder).Append(1) }},
		}, nil, "false true"},
		{"missing columns", []column{
			{"path", arrow.BinaryTypes.String, str("a.jpg")},
		}, ErrMissingColumn, `p.parquet column "label": missing column`},
		{"unsupported type", []column{
			{"label", arrow.FixedWidthTypes.Date32, func(b array.Builder, i int) { b.(*array.Date32Builder).Append(1) }},
			{"path", arrow.BinaryTypes.String, str("a.jpg")},
			{"split", arrow.BinaryTypes.String, str("train")},
		}, ErrColumn, `p.parquet column "label": bad column: Arrow type date32`},
		{"fractional label", []column{
			{"label", arrow.PrimitiveTypes.Float32, func(b array.Builder, i int) { b.(*array.Float32Builder).Append(float32(i) + 0.5) }},
			{"path", arrow.BinaryTypes.String, str("a.jpg", "b.jpg")},
			{"split", arrow.BinaryTypes.String, str("train")},
		}, ErrValue, `p.parquet row 1, column "label": bad value: want an integer label, got "0.5"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cat, err := ParseParquet("p.parquet", writeParquet(t, 2, 10, tc.cols))
			if tc.kind != nil {
				if !errors.Is(err, tc.kind) || !strings.Contains(fmt.Sprint(err), tc.want) {
					t.Fatalf("err = %v, want %v containing %q", err, tc.kind, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got string
			if cat.HasIDs {
				got = cat.Rows[0].ID + " " + cat.Rows[1].ID
			} else {
				got = fmt.Sprint(cat.Rows[0].IsQuery, cat.Rows[1].IsQuery)
			}
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParquetCorruptInput(t *testing.T) {
	good := sampleParquet(t, sampleRows(20), 8)
	inputs := map[string][]byte{
		"empty":       nil,
		"not parquet": []byte("label,path,split\n1,a.jpg,train\n"),
		"truncated":   good[:len(good)/2],
		"body flipped": func() []byte {
			b := bytes.Clone(good)
			for i := 4; i < len(b)/2; i += 7 {
				b[i] ^= 0x5a
			}
			return b
		}(),
	}
	for name, data := range inputs {
		t.Run(name, func(t *testing.T) {
			cat, err := ParseParquet("bad.parquet", data)
			if err == nil {
				t.Fatalf("no error; got %d rows", len(cat.Rows))
			}
			if !strings.Contains(err.Error(), "bad.parquet") {
				t.Errorf("error does not name the file: %v", err)
			}
		})
	}
}
