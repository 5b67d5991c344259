package pqfile

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
)

func TestJoinLimited(t *testing.T) {
	var errs []error
	for i := range 25 {
		errs = append(errs, fmt.Errorf("problem %d", i))
	}
	for _, tc := range []struct {
		n, limit  int
		wantLines int
		wantTail  string
	}{
		{0, 20, 0, ""},
		{3, 20, 3, "problem 2"},
		{20, 20, 20, "problem 19"},
		{25, 20, 21, "… and 5 more problems"},
	} {
		err := JoinLimited(errs[:tc.n], tc.limit)
		if tc.n == 0 {
			if err != nil {
				t.Errorf("JoinLimited(no errors) = %v", err)
			}
			continue
		}
		lines := strings.Split(err.Error(), "\n")
		if len(lines) != tc.wantLines || lines[len(lines)-1] != tc.wantTail || !errors.Is(err, errs[0]) {
			t.Errorf("JoinLimited(%d errors, %d): %d lines ending %q, want %d ending %q",
				tc.n, tc.limit, len(lines), lines[len(lines)-1], tc.wantLines, tc.wantTail)
		}
	}
}

func TestCheckFields(t *testing.T) {
	want := arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.BinaryTypes.String},
		{Name: "n", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
	}, nil)
	for _, tc := range []struct {
		name   string
		fields []arrow.Field
		errHas string
	}{
		{"same", want.Fields(), ""},
		{"renamed", []arrow.Field{want.Field(0), {Name: "m", Type: arrow.PrimitiveTypes.Int64, Nullable: true}}, "column 1 is m int64"},
		{"retyped", []arrow.Field{want.Field(0), {Name: "n", Type: arrow.PrimitiveTypes.Int32, Nullable: true}}, "column 1 is n int32"},
		{"nullability", []arrow.Field{{Name: "id", Type: arrow.BinaryTypes.String, Nullable: true}, want.Field(1)}, "nullable=true"},
		{"missing", want.Fields()[:1], "1 columns, want 2"},
	} {
		err := CheckFields("f.parquet", arrow.NewSchema(tc.fields, nil), want)
		if (err == nil) != (tc.errHas == "") || (err != nil && !strings.Contains(err.Error(), tc.errHas)) {
			t.Errorf("%s: CheckFields = %v, want error containing %q", tc.name, err, tc.errHas)
		}
	}
}
