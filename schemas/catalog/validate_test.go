package catalog

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

const header = "label,path,split,is_query,is_gallery,category,sequence,x_1,x_2,y_1,y_2\n"

// parseString parses CSV text named "cat.csv".
func parseString(t *testing.T, text string) (*Catalog, error) {
	t.Helper()
	return Parse("cat.csv", strings.NewReader(text))
}

// problemsOf returns the problems of a *ValidationError, failing the test for any other error.
func problemsOf(t *testing.T, err error) []*Problem {
	t.Helper()
	if err == nil {
		t.Fatal("no error, want a validation error")
	}
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error %v (%T) is not a *ValidationError", err, err)
	}
	return ve.Problems
}

func TestParseValid(t *testing.T) {
	text := header +
		"1,img/a.jpg,validation,True,True,shoes,s1,,,,\n" +
		"1,img/b.jpg,validation,False,True,shoes,s2,10,50,5,40\n" +
		"2,img/c.jpg,validation,true,false,bags,,0,1.0,0,1\n" + // integral float, as pandas writes
		"2,img/d.jpg,validation,0,1,bags,,,,,\n" +
		"3,img/e.jpg,train,,,bags,,,,,\n"
	cat, err := parseString(t, text)
	if err != nil {
		t.Fatal(err)
	}
	if len(cat.Rows) != 5 || cat.Format != FormatCSV || cat.HasIDs {
		t.Fatalf("got %d rows, format %q, HasIDs %v", len(cat.Rows), cat.Format, cat.HasIDs)
	}
	b := cat.Rows[1]
	want := Row{ID: b.ID, Line: 3, Label: 1, Path: "img/b.jpg", Split: SplitValidation, IsGallery: true,
		Category: "shoes", Sequence: "s2", HasBox: true, X1: 10, Y1: 5, X2: 50, Y2: 40}
	if b != want {
		t.Errorf("row 2 = %+v, want %+v", b, want)
	}
	if r, ok := b.Box(); !ok || r.Min.X != 10 || r.Min.Y != 5 || r.Max.X != 50 || r.Max.Y != 40 {
		t.Errorf("Box() = %v, %v", r, ok)
	}
	if _, ok := cat.Rows[0].Box(); ok {
		t.Error("row without box has a Box")
	}
	if c := cat.Rows[2]; !c.HasBox || c.X2 != 1 || !c.IsQuery || c.IsGallery {
		t.Errorf("row 3 = %+v", c)
	}
	if e := cat.Rows[4]; e.Split != SplitTrain || e.IsQuery || e.IsGallery {
		t.Errorf("train row = %+v", e)
	}
	got := cat.Counts()
	wantCounts := Counts{Rows: 5, Train: 1, Validation: 4, Queries: 2, Galleries: 3, Labels: 3, ValidationLabels: 2, Boxes: 2}
	if got != wantCounts {
		t.Errorf("Counts() = %+v, want %+v", got, wantCounts)
	}
	if !strings.HasPrefix(cat.Snapshot, "sha256:") || len(cat.Snapshot) != len("sha256:")+64 {
		t.Errorf("Snapshot = %q", cat.Snapshot)
	}
}

func TestParseProblems(t *testing.T) {
	ok := "1,g.jpg,validation,False,True,,,,,,\n" // gallery row for label 1, line 2
	tests := []struct {
		name string
		text string
		kind error
		// where are substrings of the problem messages, one per expected problem.
		where []string
	}{
		{"missing required columns listed together", "path,is_query\nimg/a.jpg,True\n", ErrMissingColumn,
			[]string{`cat.csv line 1, column "label"`, `cat.csv line 1, column "split"`}},
		{"column named twice", "label,path,split,path\n1,a.jpg,train,b.jpg\n", ErrColumn,
			[]string{`line 1, column "path": bad column: column named twice (positions 2 and 4)`}},
		{"partial box columns", "label,path,split,x_1,x_2\n1,a.jpg,train,1,2\n", ErrMissingColumn,
			[]string{`column "y_1"`, `column "y_2"`}},
		{"label not an integer", header + ok + "x1,a.jpg,train,,,,,,,,\n", ErrValue,
			[]string{`line 3, column "label": bad value: want an integer label, got "x1"`}},
		{"label fractional", header + ok + "1.5,a.jpg,train,,,,,,,,\n", ErrValue,
			[]string{`line 3, column "label"`}},
		{"label empty", header + ok + ",a.jpg,train,,,,,,,,\n", ErrValue,
			[]string{`line 3, column "label": bad value: label is required`}},
		{"bad split", header + ok + "1,a.jpg,test,,,,,,,,\n", ErrValue,
			[]string{`line 3, column "split": bad value: want split "train" or "validation", got "test"`}},
		{"bad bool", header + ok + "1,a.jpg,validation,yes,True,,,,,,\n", ErrValue,
			[]string{`line 3, column "is_query": bad value: want a boolean`}},
		{"validation role empty", header + ok + "1,a.jpg,validation,True,,,,,,,\n", ErrValue,
			[]string{`line 3, column "is_gallery": bad value: is_gallery is required for validation rows`}},
		{"neither query nor gallery", header + ok + "1,a.jpg,validation,False,0,,,,,,\n", ErrRole,
			[]string{`line 3: bad query/gallery role: validation row is neither query nor gallery`}},
		{"role columns absent with validation rows", "label,path,split\n1,a.jpg,train\n1,b.jpg,validation\n", ErrMissingColumn,
			[]string{`column "is_query": missing column: required because the catalog has validation rows (first at line 3)`, `column "is_gallery"`}},
		{"partial box", header + ok + "1,a.jpg,train,,,,,1,,2,\n", ErrBox,
			[]string{`line 3, column "x_1": bad bounding box: box partly given (x_1, y_1 set, x_2, y_2 empty)`}},
		{"negative box", header + ok + "1,a.jpg,train,,,,,-1,5,0,5\n", ErrBox,
			[]string{`line 3, column "x_1": bad bounding box: want an integer ≥ 0, got "-1"`}},
		{"box not an integer", header + ok + "1,a.jpg,train,,,,,0,5,0,a\n", ErrBox,
			[]string{`line 3, column "y_2"`}},
		{"box x_1 >= x_2 and y_1 >= y_2", header + ok + "1,a.jpg,train,,,,,5,5,9,3\n", ErrBox,
			[]string{`line 3, column "x_1": bad bounding box: want x_1 < x_2, got x_1=5 x_2=5`, `line 3, column "y_1": bad bounding box: want y_1 < y_2, got y_1=9 y_2=3`}},
		{"query label not in gallery", header + ok + "2,q.jpg,validation,True,False,,,,,,\n2,q2.jpg,validation,True,False,,,,,,\n2,t.jpg,train,,True,,,,,,\n", ErrQueryLabel,
			[]string{`line 3, column "label": query label not in gallery: query label 2 (validation query rows: 2, the first here) never occurs among validation gallery rows`}},
		{"duplicate explicit id", "id,label,path,split\nA,1,a.jpg,train\nB,1,b.jpg,train\nA,2,c.jpg,train\n", ErrDuplicateID,
			[]string{`line 4, column "id": duplicate item id: id "A" is also used at line 2`}},
		{"empty explicit id", "id,label,path,split\n,1,a.jpg,train\n", ErrValue,
			[]string{`line 2, column "id": bad value: the id column is present`}},
		{"duplicate derived id", header + ok + "1,./g.jpg,train,,,,,,,,\n", ErrDuplicateID,
			[]string{`line 3, column "path": duplicate item id: same image and box as line 2`}},
		{"absolute path", header + ok + "1,/etc/passwd,train,,,,,,,,\n", ErrUnsafePath,
			[]string{`line 3, column "path": unsafe image path "/etc/passwd": absolute`}},
		{"escaping path", header + ok + "1,a/../../x.jpg,train,,,,,,,,\n", ErrUnsafePath,
			[]string{`line 3, column "path"`}},
		{"empty path", header + ok + "1,,train,,,,,,,,\n", ErrUnsafePath,
			[]string{`line 3, column "path": unsafe image path "": empty`}},
		{"field count", header + ok + "1,a.jpg,train\n", ErrSyntax,
			[]string{`line 3: malformed file: 3 fields, the header has 11`}},
		{"bare quote", header + ok + "1,a\"b.jpg,train,,,,,,,,\n", ErrSyntax,
			[]string{`line 3: malformed file:`}},
		{"header only", header, ErrNoRows, []string{`cat.csv: no rows`}},
		{"empty file", "", ErrNoRows, []string{`cat.csv: no rows: empty file`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cat, err := parseString(t, tc.text)
			if cat != nil {
				t.Errorf("got a catalog with %d rows despite problems", len(cat.Rows))
			}
			ps := problemsOf(t, err)
			if !errors.Is(err, tc.kind) {
				t.Errorf("errors.Is(err, %v) = false; err:\n%v", tc.kind, err)
			}
			if len(ps) != len(tc.where) {
				t.Errorf("got %d problems, want %d:\n%v", len(ps), len(tc.where), err)
			}
			for _, w := range tc.where {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	text := header +
		"1,g.jpg,validation,False,True,,,,,,\n" + // 2: fine
		"x,a.jpg,train,,,,,,,,\n" + // 3: label
		"1,../a.jpg,validation,maybe,True,,,,,,\n" + // 4: path, is_query
		"1,b.jpg,validation,True,True,,,3,2,,\n" + // 5: partial box
		"\"1\nmore\",c.jpg,train,,,,,,,,\n" + // 6-7: label spans two lines
		"9,d.jpg,validation,True,False,,,0,1,0,1\n" + // 8: query label 9 has no gallery
		"1,g.jpg,train,,,,,,,,\n" // 9: duplicate of line 2
	err := func() error { _, err := parseString(t, text); return err }()
	ps := problemsOf(t, err)
	type loc struct {
		line   int64
		column string
		kind   error
	}
	want := []loc{
		{3, "label", ErrValue},
		{4, "path", ErrUnsafePath},
		{4, "is_query", ErrValue},
		{5, "x_1", ErrBox},
		{6, "label", ErrValue},
		{9, "path", ErrDuplicateID},
		{8, "label", ErrQueryLabel},
	}
	if len(ps) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%v", len(ps), len(want), err)
	}
	for i, w := range want {
		p := ps[i]
		if p.Line != w.line || p.Column != w.column || !errors.Is(p, w.kind) || p.File != "cat.csv" || p.Unit != "line" {
			t.Errorf("problem %d = %s (line %d, column %q), want line %d column %q kind %v", i, p, p.Line, p.Column, w.line, w.column, w.kind)
		}
	}
	if !strings.HasPrefix(err.Error(), "catalog cat.csv: 7 problems\n") {
		t.Errorf("summary line wrong:\n%v", err)
	}
}

func TestParseCapsReportedProblems(t *testing.T) {
	var b strings.Builder
	b.WriteString(header)
	const bad = 1200
	for i := range bad {
		fmt.Fprintf(&b, "x,img/%d.jpg,train,,,,,,,,\n", i)
	}
	_, err := parseString(t, b.String())
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("err = %v", err)
	}
	if ve.Total != bad || len(ve.Problems) != maxKept {
		t.Errorf("Total %d, kept %d; want %d, %d", ve.Total, len(ve.Problems), bad, maxKept)
	}
	msg := err.Error()
	if n := strings.Count(msg, "\n"); n != MaxReported+1 {
		t.Errorf("message has %d lines after the summary, want %d problems + 1 tail", n, MaxReported)
	}
	if !strings.HasSuffix(msg, fmt.Sprintf("... and %d more", bad-MaxReported)) {
		t.Errorf("message tail: %q", msg[len(msg)-40:])
	}
	if !strings.Contains(msg, "line 51,") || strings.Contains(msg, "line 52,") {
		t.Errorf("message should list lines 2..51 only")
	}
}

func TestParseAcceptsVariants(t *testing.T) {
	tests := []struct {
		name, text string
		check      func(t *testing.T, c *Catalog)
	}{
		{"byte order mark and extra columns", "\xEF\xBB\xBF,label,path,split,width\n0,1,a.jpg,train,640\n", func(t *testing.T, c *Catalog) {
			if c.Rows[0].Label != 1 || c.Rows[0].Path != "a.jpg" {
				t.Errorf("row = %+v", c.Rows[0])
			}
		}},
		{"column order does not matter", "split,path,is_gallery,label,is_query\nvalidation,a.jpg,True,7,True\n", func(t *testing.T, c *Catalog) {
			if r := c.Rows[0]; r.Label != 7 || !r.IsQuery || !r.IsGallery || r.Split != SplitValidation {
				t.Errorf("row = %+v", r)
			}
		}},
		{"bools as pandas and others write them", "label,path,split,is_query,is_gallery\n1,a.jpg,validation,TRUE,false\n1,b.jpg,validation,0,1\n1,c.jpg,validation,1.0,0.0\n", func(t *testing.T, c *Catalog) {
			got := fmt.Sprint(c.Rows[0].IsQuery, c.Rows[0].IsGallery, c.Rows[1].IsQuery, c.Rows[1].IsGallery, c.Rows[2].IsQuery, c.Rows[2].IsGallery)
			if got != "true false false true true false" {
				t.Errorf("roles = %s", got)
			}
		}},
		{"NaN box cells and CRLF", "label,path,split,x_1,x_2,y_1,y_2\r\n1,a.jpg,train,NaN,nan,,\r\n", func(t *testing.T, c *Catalog) {
			if c.Rows[0].HasBox {
				t.Errorf("row = %+v", c.Rows[0])
			}
		}},
		{"explicit ids", "id,label,path,split\nsku-1,1,a.jpg,train\nsku-2,1,a.jpg,train\n", func(t *testing.T, c *Catalog) {
			if !c.HasIDs || c.Rows[0].ID != "sku-1" || c.Rows[1].ID != "sku-2" {
				t.Errorf("HasIDs %v, rows %+v", c.HasIDs, c.Rows)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseString(t, tc.text)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}
