package synth

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stirpipe/stirpipe/schemas/catalog"
)

// testOptions is a small, fast catalog exercising every feature.
func testOptions() Options {
	o := DefaultOptions()
	o.Products = 30
	o.ViewsMin, o.ViewsMax = 2, 5
	o.Size = 96
	o.BoxFraction = 0.3
	o.SequenceFraction = 0.5
	o.PNGFraction = 0.3
	o.BadFiles = 4
	o.Seed = 7
	return o
}

// readTree returns every file under dir by slash path.
func readTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		b, err := os.ReadFile(p)
		files[filepath.ToSlash(rel)] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestGenerateIsDeterministic(t *testing.T) {
	o := testOptions()
	o.Workers = 1
	a := t.TempDir()
	if _, err := Generate(a, o); err != nil {
		t.Fatal(err)
	}
	o.Workers = 3
	b := t.TempDir()
	if _, err := Generate(b, o); err != nil {
		t.Fatal(err)
	}
	fa, fb := readTree(t, a), readTree(t, b)
	if len(fa) != len(fb) {
		t.Fatalf("%d files with 1 worker, %d with 3", len(fa), len(fb))
	}
	for name, da := range fa {
		if db, ok := fb[name]; !ok {
			t.Errorf("%s: missing from the second run", name)
		} else if !bytes.Equal(da, db) {
			t.Errorf("%s: differs between runs (%d vs %d bytes)", name, len(da), len(db))
		}
	}
	for name := range fa {
		if strings.Contains(name, ".tmp-") {
			t.Errorf("%s: temporary file left behind", name)
		}
	}

	// Another seed gives another catalog.
	o.Seed++
	c := t.TempDir()
	if _, err := Generate(c, o); err != nil {
		t.Fatal(err)
	}
	fc := readTree(t, c)
	if bytes.Equal(fa[CatalogFile], fc[CatalogFile]) {
		t.Error("seeds 7 and 8 wrote the same catalog")
	}
}

// csvRow is one catalog line as read back from disk.
type csvRow struct {
	line                  int
	label                 int64
	path, split, category string
	query, gallery        string
	box                   [4]string // x_1, x_2, y_1, y_2
	seq                   string
}

func readCatalog(t *testing.T, dir string) []csvRow {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, CatalogFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(recs[0], []string{"label", "path", "split", "is_query", "is_gallery", "category", "x_1", "x_2", "y_1", "y_2", "sequence"}) {
		t.Fatalf("header = %q", recs[0])
	}
	var rows []csvRow
	for i, r := range recs[1:] {
		label, err := strconv.ParseInt(r[0], 10, 64)
		if err != nil {
			t.Fatalf("line %d: label %q: %v", i+2, r[0], err)
		}
		rows = append(rows, csvRow{line: i + 2, label: label, path: r[1], split: r[2], query: r[3], gallery: r[4],
			category: r[5], box: [4]string{r[6], r[7], r[8], r[9]}, seq: r[10]})
	}
	return rows
}

func decodeConfig(t *testing.T, path string) (image.Config, string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cfg, format, err := image.DecodeConfig(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return cfg, format
}

func TestLayoutInvariants(t *testing.T) {
	pathRE := regexp.MustCompile(`^images/([A-Za-z0-9_.-]+)/(\d+)_(\d+)\.(jpg|png)$`)
	for _, tc := range []struct {
		name string
		edit func(*Options)
	}{
		{"sop", func(o *Options) {}},
		{"inshop", func(o *Options) { o.Layout = LayoutInShop; o.ValidationFraction = 0.6 }},
		{"custom categories", func(o *Options) {
			o.Categories = []string{"mug", "sneaker", "lamp-2"}
			o.SequenceFraction, o.BoxFraction = 0, 0
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := testOptions()
			tc.edit(&o)
			dir := t.TempDir()
			sum, err := Generate(dir, o)
			if err != nil {
				t.Fatal(err)
			}
			rows := readCatalog(t, dir)
			if len(rows) != sum.Rows || len(sum.Catalog) != sum.Rows {
				t.Fatalf("catalog has %d rows, summary says %d (%d listed)", len(rows), sum.Rows, len(sum.Catalog))
			}
			bad := map[string]BadFile{}
			for _, b := range sum.BadFiles {
				bad[b.Path] = b
			}
			if len(bad) != o.BadFiles {
				t.Errorf("%d bad files listed, want %d", len(bad), o.BadFiles)
			}

			splitOf := map[int64]string{}
			catOf := map[int64]string{}
			goodViews := map[int64]int{}
			gallery := map[int64][]csvRow{}
			var queries []csvRow
			var boxes, queriesN, galleriesN int
			seqLabel := map[string]int64{}
			for _, r := range rows {
				where := fmt.Sprintf("line %d (%s)", r.line, r.path)
				m := pathRE.FindStringSubmatch(r.path)
				if m == nil {
					t.Errorf("%s: path does not match %v", where, pathRE)
					continue
				}
				if m[1] != r.category || m[2] != strconv.FormatInt(r.label, 10) {
					t.Errorf("%s: path does not match category %q and label %d", where, r.category, r.label)
				}
				if !slices.Contains(o.Categories, r.category) {
					t.Errorf("%s: category %q not among %q", where, r.category, o.Categories)
				}
				if c, ok := catOf[r.label]; ok && c != r.category {
					t.Errorf("%s: label %d in categories %q and %q", where, r.label, c, r.category)
				}
				catOf[r.label] = r.category
				if s, ok := splitOf[r.label]; ok && s != r.split {
					t.Errorf("%s: label %d in splits %q and %q (split must be by product)", where, r.label, s, r.split)
				}
				splitOf[r.label] = r.split

				switch r.split {
				case "train":
					if r.query != "" || r.gallery != "" {
						t.Errorf("%s: train row has is_query=%q is_gallery=%q, want empty", where, r.query, r.gallery)
					}
				case "validation":
					if (r.query != "True" && r.query != "False") || (r.gallery != "True" && r.gallery != "False") {
						t.Errorf("%s: is_query=%q is_gallery=%q, want True/False", where, r.query, r.gallery)
					}
					switch o.Layout {
					case LayoutSOP:
						if r.query != "True" || r.gallery != "True" {
							t.Errorf("%s: SOP validation row must be query and gallery", where)
						}
					case LayoutInShop:
						if (r.query == "True") == (r.gallery == "True") {
							t.Errorf("%s: in-shop row must be exactly one of query and gallery", where)
						}
					}
				default:
					t.Errorf("%s: split %q", where, r.split)
				}
				if r.seq != "" {
					if l, ok := seqLabel[r.seq]; ok && l != r.label {
						t.Errorf("%s: sequence %q shared by labels %d and %d", where, r.seq, l, r.label)
					}
					seqLabel[r.seq] = r.label
				} else if o.SequenceFraction > 0 {
					t.Errorf("%s: empty sequence with SequenceFraction %v", where, o.SequenceFraction)
				}

				if b, isBad := bad[r.path]; isBad {
					if r.split != "validation" || r.label != b.Label || r.box != [4]string{} {
						t.Errorf("%s: bad row must be an unboxed validation row of label %d", where, b.Label)
					}
					if r.query == "True" {
						queriesN++
					}
					if r.gallery == "True" {
						galleriesN++
					}
					continue
				}
				goodViews[r.label]++
				if r.query == "True" {
					queries = append(queries, r)
					queriesN++
				}
				if r.gallery == "True" {
					gallery[r.label] = append(gallery[r.label], r)
					galleriesN++
				}

				cfg, format := decodeConfig(t, filepath.Join(dir, filepath.FromSlash(r.path)))
				if want := map[string]string{"jpg": "jpeg", "png": "png"}[m[4]]; format != want {
					t.Errorf("%s: decodes as %s, want %s", where, format, want)
				}
				if r.box == [4]string{} {
					continue
				}
				boxes++
				var v [4]int
				for i, s := range r.box {
					if v[i], err = strconv.Atoi(s); err != nil {
						t.Fatalf("%s: box %q: %v", where, r.box, err)
					}
				}
				x1, x2, y1, y2 := v[0], v[1], v[2], v[3]
				if x1 < 0 || y1 < 0 || x1 >= x2 || y1 >= y2 || x2 > cfg.Width || y2 > cfg.Height {
					t.Errorf("%s: box x %d-%d y %d-%d not inside the %dx%d image", where, x1, x2, y1, y2, cfg.Width, cfg.Height)
				}
				if area := (x2 - x1) * (y2 - y1); area*10 > cfg.Width*cfg.Height*8 || area*100 < cfg.Width*cfg.Height {
					t.Errorf("%s: box covers %d of %d pixels: not a product box", where, area, cfg.Width*cfg.Height)
				}
			}

			if len(splitOf) != o.Products {
				t.Errorf("%d labels, want %d", len(splitOf), o.Products)
			}
			nVal := 0
			for _, s := range splitOf {
				if s == "validation" {
					nVal++
				}
			}
			if want := int(math.Round(o.ValidationFraction * float64(o.Products))); nVal != want || sum.ValidationProducts != want {
				t.Errorf("%d validation products (summary %d), want %d", nVal, sum.ValidationProducts, want)
			}
			for label, n := range goodViews {
				if n < o.ViewsMin || n > o.ViewsMax {
					t.Errorf("label %d has %d good views, want %d-%d", label, n, o.ViewsMin, o.ViewsMax)
				}
			}
			// Without the bad rows, every query still has a gallery match
			// that is not itself and not in its own sequence.
			for _, q := range queries {
				ok := false
				for _, g := range gallery[q.label] {
					if g.path != q.path && (g.seq == "" || g.seq != q.seq) {
						ok = true
					}
				}
				if !ok {
					t.Errorf("query %s (label %d, sequence %q) has no usable gallery row", q.path, q.label, q.seq)
				}
			}
			if queriesN != sum.Queries || galleriesN != sum.Galleries || boxes != sum.BoxRows {
				t.Errorf("counted %d queries, %d galleries, %d boxes; summary %d, %d, %d",
					queriesN, galleriesN, boxes, sum.Queries, sum.Galleries, sum.BoxRows)
			}
			if o.BoxFraction > 0 && (boxes == 0 || boxes == len(rows)-len(bad)) {
				t.Errorf("%d of %d rows have a box with BoxFraction %v", boxes, len(rows), o.BoxFraction)
			}
			if o.SequenceFraction > 0 && sum.SequenceProducts == 0 {
				t.Error("no photo session with SequenceFraction > 0")
			}
		})
	}
}

func TestImagesDecodeWithVariedSizes(t *testing.T) {
	o := testOptions()
	o.BadFiles = 0
	dir := t.TempDir()
	sum, err := Generate(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	sizes := map[image.Point]int{}
	var jpegs, pngs int
	var bytesTotal int64
	for _, r := range sum.Catalog {
		data, err := os.ReadFile(filepath.Join(dir, r.Path))
		if err != nil {
			t.Fatal(err)
		}
		bytesTotal += int64(len(data))
		img, format, err := image.Decode(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("%s: %v", r.Path, err)
		}
		if format == "png" {
			pngs++
		} else {
			jpegs++
		}
		b := img.Bounds()
		sizes[b.Size()]++
		lo, hi := float64(o.Size)*0.8, float64(o.Size)*1.3
		if side := math.Sqrt(float64(b.Dx() * b.Dy())); side < lo || side > hi {
			t.Errorf("%s: %dx%d, want sides around %d", r.Path, b.Dx(), b.Dy(), o.Size)
		}
		if ar := float64(b.Dx()) / float64(b.Dy()); ar < 0.74 || ar > 1.34 {
			t.Errorf("%s: aspect ratio %.2f outside 0.75-1.33", r.Path, ar)
		}
		// A product photo is not flat: its pixels spread over a real range.
		var lo8, hi8 uint32 = 0xffff, 0
		for y := b.Min.Y; y < b.Max.Y; y += 3 {
			for x := b.Min.X; x < b.Max.X; x += 3 {
				r, g, bb, _ := img.At(x, y).RGBA()
				l := (r + g + bb) / 3
				lo8, hi8 = min(lo8, l), max(hi8, l)
			}
		}
		if hi8-lo8 < 0x2000 {
			t.Errorf("%s: almost flat image (luma range %d)", r.Path, (hi8-lo8)>>8)
		}
	}
	if jpegs != sum.JPEGFiles || pngs != sum.PNGFiles || bytesTotal != sum.Bytes {
		t.Errorf("found %d JPEG, %d PNG, %d bytes; summary %d, %d, %d", jpegs, pngs, bytesTotal, sum.JPEGFiles, sum.PNGFiles, sum.Bytes)
	}
	if pngs == 0 || jpegs == 0 {
		t.Errorf("%d JPEG and %d PNG files with PNGFraction %v", jpegs, pngs, o.PNGFraction)
	}
	if len(sizes) < sum.Rows/2 {
		t.Errorf("only %d distinct sizes among %d images", len(sizes), sum.Rows)
	}
}

func TestBadFilesAreBrokenAsListed(t *testing.T) {
	for _, layout := range []string{LayoutSOP, LayoutInShop} {
		t.Run(layout, func(t *testing.T) {
			o := testOptions()
			o.Layout = layout
			o.BadFiles = 8
			dir := t.TempDir()
			sum, err := Generate(dir, o)
			if err != nil {
				t.Fatal(err)
			}
			kinds := map[BadKind]int{}
			for _, b := range sum.BadFiles {
				kinds[b.Kind]++
				if b.Reason == "" {
					t.Errorf("%s: empty reason", b.Path)
				}
				data, err := os.ReadFile(filepath.Join(dir, b.Path))
				if b.Kind == BadMissing {
					if !errors.Is(err, fs.ErrNotExist) {
						t.Errorf("%s: want a missing file, got err %v", b.Path, err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("%s: %v", b.Path, err)
				}
				_, _, derr := image.Decode(bytes.NewReader(data))
				if derr == nil {
					t.Errorf("%s (%s): decodes", b.Path, b.Kind)
				}
				switch b.Kind {
				case BadEmpty:
					if len(data) != 0 {
						t.Errorf("%s: %d bytes, want 0", b.Path, len(data))
					}
				case BadNotImage:
					if !errors.Is(derr, image.ErrFormat) {
						t.Errorf("%s: error %v, want image.ErrFormat", b.Path, derr)
					}
				case BadTruncated:
					// The header is intact: the format is recognised, the data ends early.
					if _, format, err := image.DecodeConfig(bytes.NewReader(data)); err != nil || format != "jpeg" {
						t.Errorf("%s: DecodeConfig = %q, %v; want a JPEG header", b.Path, format, err)
					}
					if _, err := jpeg.Decode(bytes.NewReader(data)); err == nil {
						t.Errorf("%s: truncated JPEG decodes", b.Path)
					}
				}
			}
			for _, k := range badKinds {
				if kinds[k] != 2 {
					t.Errorf("%d files of kind %s, want 2", kinds[k], k)
				}
			}
		})
	}
}

func TestOptionsValidate(t *testing.T) {
	if err := DefaultOptions().Validate(); err != nil {
		t.Fatalf("DefaultOptions: %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(*Options)
		want []string
	}{
		{"no products", func(o *Options) { o.Products = 0 }, []string{"Products"}},
		{"one view", func(o *Options) { o.ViewsMin, o.ViewsMax = 1, 1 }, []string{"ViewsMin"}},
		{"views reversed", func(o *Options) { o.ViewsMin, o.ViewsMax = 4, 3 }, []string{"ViewsMax"}},
		{"layout", func(o *Options) { o.Layout = "cub" }, []string{"Layout"}},
		{"fractions", func(o *Options) { o.BoxFraction, o.PNGFraction = -0.1, math.NaN() }, []string{"BoxFraction", "PNGFraction"}},
		{"size", func(o *Options) { o.Size = 8 }, []string{"Size"}},
		{"category names", func(o *Options) { o.Categories = []string{"mug", "a/b", "mug", ".."} }, []string{`"a/b"`, "duplicate", `".."`}},
		{"bad files without validation", func(o *Options) { o.BadFiles, o.ValidationFraction = 2, 0 }, []string{"BadFiles"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := DefaultOptions()
			tc.edit(&o)
			err := o.Validate()
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %s", err, w)
				}
			}
			if _, gerr := Generate(t.TempDir(), o); gerr == nil {
				t.Error("Generate accepted invalid options")
			}
		})
	}
}

func TestCatalogCSVWriter(t *testing.T) {
	o := testOptions()
	dir := t.TempDir()
	sum, err := Generate(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := catalog.WriteCSV(&buf, sum.Catalog, false); err != nil {
		t.Fatal(err)
	}
	onDisk, err := os.ReadFile(sum.CatalogPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), onDisk) {
		t.Error("catalog.WriteCSV(Summary.Catalog) differs from catalog.csv")
	}
	// Each summary row says what its CSV line says.
	rows := readCatalog(t, dir)
	for i, r := range sum.Catalog {
		c := rows[i]
		box := [4]string{}
		if r.HasBox {
			box = [4]string{fmt.Sprint(r.X1), fmt.Sprint(r.X2), fmt.Sprint(r.Y1), fmt.Sprint(r.Y2)}
		}
		if int(r.Line) != c.line || r.Label != c.label || r.Path != c.path || r.Split != c.split ||
			r.Category != c.category || r.Sequence != c.seq || box != c.box {
			t.Errorf("summary row %+v, CSV line %+v", r, c)
		}
	}
}

// TestViewsAreRecognisable checks that retrieval on this data is learnable
// but not trivial: a crude colour-histogram descriptor finds another view of
// the same product far more often than chance, yet far from always.
func TestViewsAreRecognisable(t *testing.T) {
	o := DefaultOptions()
	o.Products = 48
	o.ViewsMin, o.ViewsMax = 3, 3
	o.ValidationFraction = 1
	o.Size = 64
	o.PNGFraction = 1 // lossless, faster to decode here
	dir := t.TempDir()
	sum, err := Generate(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	const bins = 6
	desc := make([][]float64, len(sum.Catalog))
	for i, r := range sum.Catalog {
		f, err := os.Open(filepath.Join(dir, r.Path))
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		h := make([]float64, bins*bins*bins)
		b := img.Bounds()
		var n float64
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				cr, cg, cb, _ := img.At(x, y).RGBA()
				// Skip near-white and near-grey background-like pixels.
				mx, mn := max(cr, cg, cb), min(cr, cg, cb)
				if mx-mn < 0x1000 {
					continue
				}
				h[int(cr)*bins/0x10000*bins*bins+int(cg)*bins/0x10000*bins+int(cb)*bins/0x10000]++
				n++
			}
		}
		for j := range h {
			h[j] /= max(n, 1)
		}
		desc[i] = h
	}
	hits := 0
	for i, q := range desc {
		best, bestD := -1, math.Inf(1)
		for j, g := range desc {
			if i == j {
				continue
			}
			var d float64
			for k := range q {
				d += math.Abs(q[k] - g[k])
			}
			if d < bestD {
				best, bestD = j, d
			}
		}
		if sum.Catalog[best].Label == sum.Catalog[i].Label {
			hits++
		}
	}
	recall := float64(hits) / float64(len(desc))
	chance := 2.0 / float64(len(desc)-1)
	t.Logf("colour-histogram recall@1 = %.2f (chance %.3f)", recall, chance)
	if recall < 10*chance || recall > 0.95 {
		t.Errorf("recall@1 = %.2f: want learnable (≥ %.2f) but not trivial (≤ 0.95)", recall, 10*chance)
	}
}

func TestCategoryNames(t *testing.T) {
	names := CategoryNames(14)
	if want := append(BuiltinCategories(), "mug_2", "bottle_2"); !slices.Equal(names, want) {
		t.Fatalf("CategoryNames(14) = %q, want %q", names, want)
	}
	for i, name := range names {
		if f, want := familyFor(name, i), family(i%int(numFamilies)); f != want {
			t.Errorf("%s: family %d, want %d", name, f, want)
		}
	}
	// Unknown names take the families in turn; repeats get their own traits.
	if a, b := newCategory(1, "mug", 0), newCategory(1, "mug_2", 12); a.fam != b.fam || a.prop == b.prop {
		t.Errorf("mug and mug_2: families %d, %d; want equal families and different traits", a.fam, b.fam)
	}
	if f := familyFor("gadget", 4); f != famLamp {
		t.Errorf("gadget at index 4: family %d, want %d (lamp)", f, famLamp)
	}
}
