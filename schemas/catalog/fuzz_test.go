package catalog

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// FuzzParseCSV checks that Parse never panics, that every failure is a located
// *ValidationError, and that every accepted catalog satisfies the invariants later stages
// rely on and survives being written out and parsed again.
//
//	go test ./schemas/catalog -run '^$' -fuzz FuzzParseCSV -fuzztime 30s
func FuzzParseCSV(f *testing.F) {
	seeds := []string{
		header + "1,a.jpg,validation,True,True,shoes,s1,,,,\n2,b.jpg,validation,False,True,,,1,5,2,9\n2,c.jpg,validation,True,False,,,,,,\n",
		"id,label,path,split\nA,1,a.jpg,train\nB,2,b.jpg,train\n",
		"\xEF\xBB\xBF,label,path,split,is_query,is_gallery\n0,1,\"a,b.jpg\",validation,1,1\n",
		header + "x,../a.jpg,test,maybe,,,,-1,2,,\n",
		header + "1,a\"b.jpg,train\n\"unterminated",
		"label,path,split,x_1,x_2\n1,a.jpg,train,1,2\n",
		"label,path,split\r\n1,a.jpg,train\r\n1,a.jpg,train\r\n",
		"label,label\n",
		"",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cat, err := Parse("fuzz.csv", bytes.NewReader(data))
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Total < 1 || len(ve.Problems) < 1 {
				t.Fatalf("error is not a non-empty *ValidationError: %v", err)
			}
			for _, p := range ve.Problems {
				if p.File != "fuzz.csv" || p.Err == nil {
					t.Fatalf("unlocated problem %+v", p)
				}
			}
			return
		}
		checkInvariants(t, cat)
		again, err := Parse("again.csv", strings.NewReader(writeCSV(t, cat)))
		if err != nil {
			t.Fatalf("re-parsing the accepted catalog failed: %v", err)
		}
		if len(again.Rows) != len(cat.Rows) {
			t.Fatalf("round trip: %d rows, want %d", len(again.Rows), len(cat.Rows))
		}
		for i, r := range cat.Rows {
			a := again.Rows[i]
			a.Line, r.Line = 0, 0
			if strings.ContainsRune(r.Category+r.Sequence+r.ID, '\r') {
				continue // CSV turns \r\n inside quotes into \n
			}
			if a != r {
				t.Fatalf("round trip changed row %d:\n%+v\n%+v", i, r, a)
			}
		}
	})
}

func checkInvariants(t *testing.T, cat *Catalog) {
	t.Helper()
	if len(cat.Rows) == 0 {
		t.Fatal("accepted a catalog without rows")
	}
	ids := map[string]bool{}
	galleries := map[int64]bool{}
	prev := int64(1)
	for _, r := range cat.Rows {
		if r.Line <= prev {
			t.Fatalf("line %d after %d", r.Line, prev)
		}
		prev = r.Line
		if r.ID == "" || ids[r.ID] {
			t.Fatalf("empty or duplicate id %q", r.ID)
		}
		ids[r.ID] = true
		for _, root := range []string{"/data", "gs://b/p"} {
			full, err := Resolve(root, r.Path)
			if err != nil || !strings.HasPrefix(full, root+"/") {
				t.Fatalf("accepted path %q resolves to %q, %v", r.Path, full, err)
			}
		}
		switch r.Split {
		case SplitTrain:
		case SplitValidation:
			if !r.IsQuery && !r.IsGallery {
				t.Fatalf("validation row without a role: %+v", r)
			}
			if r.IsGallery {
				galleries[r.Label] = true
			}
		default:
			t.Fatalf("split %q", r.Split)
		}
		if r.HasBox && (r.X1 < 0 || r.Y1 < 0 || r.X1 >= r.X2 || r.Y1 >= r.Y2) {
			t.Fatalf("bad box accepted: %+v", r)
		}
	}
	for _, r := range cat.Rows {
		if r.IsValidation() && r.IsQuery && !galleries[r.Label] {
			t.Fatalf("query label %d has no gallery row", r.Label)
		}
	}
}

// writeCSV writes a catalog back in OML's CSV form.
func writeCSV(t *testing.T, cat *Catalog) string {
	var b bytes.Buffer
	if err := WriteCSV(&b, cat.Rows, cat.HasIDs); err != nil {
		t.Fatal(err)
	}
	return b.String()
}
