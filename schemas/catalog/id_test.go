package catalog

import (
	"fmt"
	"image"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestDerivedIDGolden(t *testing.T) {
	// Pinned values (printf 'img/a.jpg' | sha256sum): changing the id scheme breaks every
	// stage file written before, so it must be a deliberate change.
	tests := []struct {
		path string
		box  image.Rectangle
		want string
	}{
		{"img/a.jpg", image.Rectangle{}, "idf9c202adad7831c"},
		{"./img//a.jpg", image.Rectangle{}, "idf9c202adad7831c"},
		{"img/a.jpg", image.Rect(1, 2, 30, 40), "i6cbe18be7b926dc7"},
	}
	for _, tc := range tests {
		if got := DerivedID(tc.path, tc.box); got != tc.want {
			t.Errorf("DerivedID(%q, %v) = %q, want %q", tc.path, tc.box, got, tc.want)
		}
	}
	if DerivedID("img/a.jpg", image.Rect(1, 2, 30, 40)) == DerivedID("img/a.jpg", image.Rect(1, 2, 30, 41)) {
		t.Error("different boxes give the same id")
	}
}

// catalogText writes rows (each a map column -> value) with the given column order.
func catalogText(cols []string, rows []map[string]string) string {
	var b strings.Builder
	b.WriteString(strings.Join(cols, ",") + "\n")
	for _, r := range rows {
		vals := make([]string, len(cols))
		for i, c := range cols {
			vals[i] = r[c]
		}
		b.WriteString(strings.Join(vals, ",") + "\n")
	}
	return b.String()
}

func idsByKey(t *testing.T, text string) map[string]string {
	t.Helper()
	cat, err := Parse("ids.csv", strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	for _, r := range cat.Rows {
		ids[fmt.Sprint(r.Path, r.X1, r.Y1, r.X2, r.Y2)] = r.ID
	}
	return ids
}

func TestIDsStable(t *testing.T) {
	cols := []string{"label", "path", "split", "is_query", "is_gallery", "category", "x_1", "x_2", "y_1", "y_2"}
	var rows []map[string]string
	for i := range 30 {
		r := map[string]string{"label": fmt.Sprint(i / 2), "path": fmt.Sprintf("img/%d.jpg", i/3), "split": "validation",
			"is_query": "True", "is_gallery": "True", "category": "c"}
		if i%3 != 0 { // the same image twice more, with two different boxes
			r["x_1"], r["x_2"], r["y_1"], r["y_2"] = "0", fmt.Sprint(10+i), "0", "20"
		}
		rows = append(rows, r)
	}
	base := idsByKey(t, catalogText(cols, rows))
	if len(base) != len(rows) {
		t.Fatalf("%d distinct rows, want %d", len(base), len(rows))
	}

	// Shuffle rows and columns, edit another row, add a row, add a column.
	rng := rand.New(rand.NewPCG(1, 2))
	edited := make([]map[string]string, len(rows))
	for i, j := range rng.Perm(len(rows)) {
		edited[i] = rows[j]
	}
	edited[3] = map[string]string{"label": "999", "path": edited[3]["path"], "split": "validation", "is_query": "False",
		"is_gallery": "True", "category": "other", "x_1": edited[3]["x_1"], "x_2": edited[3]["x_2"], "y_1": edited[3]["y_1"], "y_2": edited[3]["y_2"]}
	edited = append(edited, map[string]string{"label": "5", "path": "img/new.jpg", "split": "train"})
	shuffled := append([]string{"note"}, cols...)
	rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	again := idsByKey(t, catalogText(shuffled, edited))
	for k, id := range base {
		if again[k] != id {
			t.Errorf("row %s: id %q became %q", k, id, again[k])
		}
	}
}
