// Package synth generates deterministic synthetic product catalogs: product
// photos under dir/images and an OML-format catalog.csv that lists them.
//
// Every product is a procedurally drawn object defined by its label: a shape
// family shared by its category (mug, bottle, box, shoe, lamp, chair, kettle,
// table, sofa, bag, fan, bicycle), two or three colours, a surface pattern and
// a logo-like mark at a product-specific place. Products of one category share
// proportions and pattern preferences, so they are hard negatives of each
// other; each view changes pose, framing, background, light, noise and JPEG
// quality, so retrieval is not trivial but is learnable. Rows sharing a photo
// session (the sequence column) share background and light.
//
// The same Options always give byte-identical files, whatever Options.Workers
// is: every image draws its randomness from its own seeded PCG stream. The demo,
// tests and benchmarks use it as a stand-in for Stanford Online Products (SOP)
// and DeepFashion In-shop; Options.BadFiles adds broken image files for
// robustness tests.
package synth

import (
	"bytes"
	"errors"
	"fmt"
	"image/jpeg"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stirpipe/stirpipe/schemas/catalog"
)

// Layouts of the validation split.
const (
	// LayoutSOP makes every validation row both a query and a gallery item,
	// as in Stanford Online Products.
	LayoutSOP = "sop"
	// LayoutInShop splits each validation product's rows into disjoint query
	// and gallery rows, every query label having at least one gallery row, as in
	// DeepFashion In-shop.
	LayoutInShop = "inshop"
)

// CatalogFile is the catalog's file name inside the output directory.
const CatalogFile = "catalog.csv"

// Options say what to generate. Start from DefaultOptions.
type Options struct {
	// Products is the number of products (labels 0 … Products-1).
	Products int
	// ViewsMin and ViewsMax bound the number of images per product (≥ 2).
	ViewsMin, ViewsMax int
	// Layout is LayoutSOP or LayoutInShop.
	Layout string
	// ValidationFraction is the share of products in the validation split; the
	// split is by product, so no label is in both splits.
	ValidationFraction float64
	// Categories are the category names, assigned to products round-robin
	// (label mod len). Built-in names select their shape family; other names
	// (letters, digits, '_', '-', '.') reuse the families in turn. Empty means
	// BuiltinCategories().
	Categories []string
	// BoxFraction is the share of rows with a bounding box. Such rows show
	// the product smaller, in a wider scene, often next to another product.
	BoxFraction float64
	// SequenceFraction is the share of products (with ≥ 3 views) whose views
	// include one photo session: 2 … views-1 shots with one sequence id, the
	// same background and light. When it is > 0 every row gets a sequence id
	// (unique outside sessions); when 0 the column is empty.
	SequenceFraction float64
	// Size is the nominal image side in pixels; sides vary around it with
	// aspect ratios between 0.75 and 1.33.
	Size int
	// PNGFraction is the share of rows stored as PNG instead of JPEG.
	PNGFraction float64
	// Seed selects the catalog; equal options give byte-identical output.
	Seed int64
	// Workers is the number of goroutines drawing images (0: GOMAXPROCS).
	// It does not change the output.
	Workers int
	// BadFiles adds this many validation rows whose image files are broken,
	// cycling through BadTruncated, BadEmpty, BadNotImage and BadMissing. Each
	// is an extra view of a validation product that keeps ≥ 2 good views, so
	// the catalog stays valid and every query keeps a gallery match when the
	// bad rows are rejected.
	BadFiles int
}

// DefaultOptions returns a small SOP-like catalog: 100 products of the 12
// built-in categories, 2–6 views each, half of them in validation, 256-pixel
// images, 10% PNG.
func DefaultOptions() Options {
	return Options{
		Products:           100,
		ViewsMin:           2,
		ViewsMax:           6,
		Layout:             LayoutSOP,
		ValidationFraction: 0.5,
		Categories:         BuiltinCategories(),
		Size:               256,
		PNGFraction:        0.1,
		Seed:               1,
	}
}

// Validate reports every invalid option at once.
func (o Options) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if o.Products < 1 {
		bad("Products = %d: need at least 1", o.Products)
	}
	if o.ViewsMin < 2 {
		bad("ViewsMin = %d: need at least 2 views per product", o.ViewsMin)
	}
	if o.ViewsMax < o.ViewsMin {
		bad("ViewsMax = %d is below ViewsMin = %d", o.ViewsMax, o.ViewsMin)
	}
	if o.Layout != LayoutSOP && o.Layout != LayoutInShop {
		bad("Layout = %q: want %q or %q", o.Layout, LayoutSOP, LayoutInShop)
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"ValidationFraction", o.ValidationFraction}, {"BoxFraction", o.BoxFraction}, {"SequenceFraction", o.SequenceFraction}, {"PNGFraction", o.PNGFraction}} {
		if !(f.v >= 0 && f.v <= 1) {
			bad("%s = %v: want a value in [0, 1]", f.name, f.v)
		}
	}
	if o.Size < 32 || o.Size > 4096 {
		bad("Size = %d: want 32 … 4096 pixels", o.Size)
	}
	seen := map[string]bool{}
	for i, c := range o.Categories {
		if !validCategory(c) {
			bad("Categories[%d] = %q: want a non-empty name of letters, digits, '_', '-' or '.' (not . or ..)", i, c)
		}
		if seen[c] {
			bad("Categories[%d] = %q: duplicate name", i, c)
		}
		seen[c] = true
	}
	if o.Workers < 0 {
		bad("Workers = %d: want ≥ 0", o.Workers)
	}
	if o.BadFiles < 0 {
		bad("BadFiles = %d: want ≥ 0", o.BadFiles)
	}
	if o.BadFiles > 0 && o.ValidationFraction == 0 {
		bad("BadFiles = %d needs validation products: ValidationFraction is 0", o.BadFiles)
	}
	if len(errs) > 0 {
		return fmt.Errorf("synth: invalid options: %w", errors.Join(errs...))
	}
	return nil
}

func validCategory(s string) bool {
	if s == "" || s == "." || s == ".." || len(s) > 100 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// BadKind is how a deliberately broken image file is broken.
type BadKind string

// Kinds of broken files.
const (
	// BadTruncated is a JPEG cut to about 45% of its bytes: valid header,
	// missing scan data.
	BadTruncated BadKind = "truncated"
	// BadEmpty is a zero-byte file.
	BadEmpty BadKind = "empty"
	// BadNotImage is a plain-text file with a .jpg name.
	BadNotImage BadKind = "not_image"
	// BadMissing is a catalog row whose file does not exist.
	BadMissing BadKind = "missing"
)

var badKinds = []BadKind{BadTruncated, BadEmpty, BadNotImage, BadMissing}

// BadFile is a catalog row whose image must be rejected.
type BadFile struct {
	// Path is the catalog path, relative to the output directory.
	Path string
	// Label is the row's label.
	Label int64
	// Kind says how the file is broken.
	Kind BadKind
	// Reason describes what a reader should report.
	Reason string
}

// Summary describes a generated catalog.
type Summary struct {
	// Dir is the output directory; CatalogPath is Dir/catalog.csv.
	Dir, CatalogPath string
	// Rows counts catalog rows, bad rows included.
	Rows int
	// Products, TrainProducts and ValidationProducts count labels.
	Products, TrainProducts, ValidationProducts int
	// TrainRows and ValidationRows count rows per split.
	TrainRows, ValidationRows int
	// Queries and Galleries count validation rows with is_query / is_gallery.
	Queries, Galleries int
	// BoxRows counts rows with a bounding box.
	BoxRows int
	// SequenceProducts counts products with a photo session.
	SequenceProducts int
	// Categories are the category names in use.
	Categories []string
	// JPEGFiles and PNGFiles count good image files by format.
	JPEGFiles, PNGFiles int
	// Bytes is the total size of the image files written (bad ones included).
	Bytes int64
	// BadFiles lists the deliberately broken rows, in catalog order.
	BadFiles []BadFile
	// Catalog holds the catalog rows as written (Line is the CSV line, ID is
	// empty).
	Catalog []catalog.Row
	// Elapsed is the wall time Generate took.
	Elapsed time.Duration
}

// plannedRow is one catalog row before its image is drawn.
type plannedRow struct {
	label   int64
	view    int
	cat     int
	split   string
	query   bool
	gallery bool
	png     bool
	box     bool
	session bool
	seq     string
	bad     BadKind
	path    string
}

// plan decides every row: views, splits, roles, sessions, formats, boxes.
func plan(o Options, cats []string) (rows []plannedRow, seqProducts int) {
	n := o.Products
	nVal := int(math.Round(o.ValidationFraction * float64(n)))
	if o.ValidationFraction > 0 && nVal == 0 {
		nVal = 1
	}
	isVal := make([]bool, n)
	for _, i := range newRand(o.Seed, streamPlan).Perm(n)[:nVal] {
		isVal[i] = true
	}
	perProduct := make([][]plannedRow, n)
	for p := 0; p < n; p++ {
		label := int64(p)
		r := newRand(o.Seed, streamPlan, uint64(label))
		v := o.ViewsMin + r.IntN(o.ViewsMax-o.ViewsMin+1)
		views := make([]plannedRow, v)
		order := r.Perm(v)
		nq := 0
		if isVal[p] && o.Layout == LayoutInShop {
			nq = max(1, min(v-1, int(math.Round(float64(v)*uniform(r, 0.35, 0.65)))))
		}
		for i := range views {
			row := &views[i]
			row.label, row.view, row.cat = label, i, p%len(cats)
			row.split = "train"
			if isVal[p] {
				row.split = "validation"
				row.query, row.gallery = true, true
				if o.Layout == LayoutInShop {
					row.gallery = false
				}
			}
			row.png = r.Float64() < o.PNGFraction
			row.box = r.Float64() < o.BoxFraction
		}
		if isVal[p] && o.Layout == LayoutInShop {
			for k, i := range order {
				views[i].query, views[i].gallery = k < nq, k >= nq
			}
		}
		// A photo session leaves out at least one view, a gallery one, so
		// every query keeps a positive outside its own sequence.
		if u := r.Float64(); u < o.SequenceFraction && v >= 3 {
			anchor := order[len(order)-1] // in-shop: always a gallery view
			rest := make([]int, 0, v-1)
			for _, i := range order {
				if i != anchor {
					rest = append(rest, i)
				}
			}
			k := 2 + r.IntN(v-2)
			r.Shuffle(len(rest), func(a, b int) { rest[a], rest[b] = rest[b], rest[a] })
			for _, i := range rest[:k] {
				views[i].session = true
			}
			seqProducts++
		}
		perProduct[p] = views
	}
	if o.BadFiles > 0 {
		var val []int
		for p := range isVal {
			if isVal[p] {
				val = append(val, p)
			}
		}
		for i := 0; i < o.BadFiles; i++ {
			p := val[i%len(val)]
			views := perProduct[p]
			row := plannedRow{label: int64(p), view: len(views), cat: p % len(cats), split: "validation",
				query: true, gallery: true, bad: badKinds[i%len(badKinds)]}
			if o.Layout == LayoutInShop {
				row.query, row.gallery = i%2 == 0, i%2 == 1
			}
			perProduct[p] = append(views, row)
		}
	}
	for _, views := range perProduct {
		for _, row := range views {
			ext := ".jpg"
			if row.png && row.bad == "" {
				ext = ".png"
			}
			row.path = fmt.Sprintf("images/%s/%d_%d%s", cats[row.cat], row.label, row.view, ext)
			if o.SequenceFraction > 0 {
				if row.session {
					row.seq = fmt.Sprintf("p%d-s", row.label)
				} else {
					row.seq = fmt.Sprintf("p%d-v%d", row.label, row.view)
				}
			}
			rows = append(rows, row)
		}
	}
	return rows, seqProducts
}

// generator holds what every worker shares.
type generator struct {
	dir      string
	opt      Options
	cats     []string
	products []*product
	rows     []plannedRow
}

type result struct {
	x1, y1, x2, y2 int64
	bytes          int64
}

const notImageText = "This is not an image: synthetic bad file for robustness tests.\n"

// produce draws and writes the file of row i.
func (g *generator) produce(i int) (result, error) {
	row := &g.rows[i]
	full := filepath.Join(g.dir, filepath.FromSlash(row.path))
	switch row.bad {
	case BadMissing:
		if err := os.Remove(full); err != nil && !errors.Is(err, os.ErrNotExist) {
			return result{}, fmt.Errorf("removing %s so that it is missing: %w", full, err)
		}
		return result{}, nil
	case BadEmpty:
		return result{}, writeFileAtomic(full, nil, false)
	case BadNotImage:
		return result{bytes: int64(len(notImageText))}, writeFileAtomic(full, []byte(notImageText), false)
	}
	var s scene
	if row.session {
		s = newScene(newRand(g.opt.Seed, streamSession, uint64(row.label)), g.opt.Size)
		s.jitter(newRand(g.opt.Seed, streamView, uint64(row.label), uint64(row.view)))
	} else {
		s = newScene(newRand(g.opt.Seed, streamView, uint64(row.label), uint64(row.view)), g.opt.Size)
	}
	var distractor *product
	if row.box && s.distractor && len(g.products) > 1 {
		d := int64(s.distractorPick * float64(len(g.products)-1))
		if d >= row.label {
			d++
		}
		distractor = g.products[d]
	}
	img, box := render(g.products[row.label], &s, row.box, distractor)
	var buf bytes.Buffer
	var err error
	if row.png && row.bad == "" {
		err = (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(&buf, img)
	} else {
		err = jpeg.Encode(&buf, img, &jpeg.Options{Quality: s.quality})
	}
	if err != nil {
		return result{}, fmt.Errorf("encoding %s: %w", row.path, err)
	}
	data := buf.Bytes()
	if row.bad == BadTruncated {
		data = data[:len(data)*45/100]
	}
	if err := writeFileAtomic(full, data, false); err != nil {
		return result{}, err
	}
	res := result{bytes: int64(len(data))}
	if row.box {
		res.x1, res.y1, res.x2, res.y2 = int64(box.Min.X), int64(box.Min.Y), int64(box.Max.X), int64(box.Max.Y)
	}
	return res, nil
}

// writeFileAtomic writes data to a temporary file next to path and renames it
// into place, so that a killed run never leaves a partial file at path.
func writeFileAtomic(path string, data []byte, sync bool) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil && sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o644)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// Generate writes a synthetic catalog into dir: images under
// dir/images/<category>/<label>_<view>.jpg|png and dir/catalog.csv. Existing
// files with the same names are replaced; other files are left alone, so use
// an empty directory or the same options as before.
func Generate(dir string, opt Options) (*Summary, error) {
	start := time.Now()
	if len(opt.Categories) == 0 {
		opt.Categories = BuiltinCategories()
	}
	if err := opt.Validate(); err != nil {
		return nil, err
	}
	cats := opt.Categories
	g := &generator{dir: dir, opt: opt, cats: cats}
	var seqProducts int
	g.rows, seqProducts = plan(opt, cats)
	traits := make([]*categoryTraits, len(cats))
	for i, name := range cats {
		traits[i] = newCategory(opt.Seed, name, i)
	}
	g.products = make([]*product, opt.Products)
	for p := range g.products {
		g.products[p] = newProduct(opt.Seed, int64(p), traits[p%len(cats)])
	}
	used := cats[:min(len(cats), opt.Products)]
	for _, c := range used {
		if err := os.MkdirAll(filepath.Join(dir, "images", c), 0o755); err != nil {
			return nil, fmt.Errorf("synth: creating the image directory: %w", err)
		}
	}

	workers := opt.Workers
	if workers == 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	results := make([]result, len(g.rows))
	errs := make([]error, len(g.rows))
	var next atomic.Int64
	var failed atomic.Bool
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !failed.Load() {
				i := int(next.Add(1) - 1)
				if i >= len(g.rows) {
					return
				}
				res, err := g.produce(i)
				if err != nil {
					errs[i] = err
					failed.Store(true)
					return
				}
				results[i] = res
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("synth: generating images in %s: %w", dir, err)
	}

	sum := &Summary{Dir: dir, CatalogPath: filepath.Join(dir, CatalogFile), Rows: len(g.rows),
		Products: opt.Products, SequenceProducts: seqProducts, Categories: append([]string(nil), used...)}
	valProducts := map[int64]bool{}
	for i := range g.rows {
		row, res := &g.rows[i], &results[i]
		cr := catalog.Row{Line: int64(i + 2), Label: row.label, Path: row.path, Split: row.split,
			IsQuery: row.query, IsGallery: row.gallery, Category: cats[row.cat], Sequence: row.seq}
		if row.box && row.bad == "" {
			cr.HasBox, cr.X1, cr.Y1, cr.X2, cr.Y2 = true, res.x1, res.y1, res.x2, res.y2
			sum.BoxRows++
		}
		sum.Catalog = append(sum.Catalog, cr)
		sum.Bytes += res.bytes
		if row.split == "validation" {
			sum.ValidationRows++
			valProducts[row.label] = true
			sum.Queries += boolInt(row.query)
			sum.Galleries += boolInt(row.gallery)
		} else {
			sum.TrainRows++
		}
		switch {
		case row.bad != "":
			sum.BadFiles = append(sum.BadFiles, BadFile{Path: row.path, Label: row.label, Kind: row.bad, Reason: badReason(row.bad)})
		case row.png:
			sum.PNGFiles++
		default:
			sum.JPEGFiles++
		}
	}
	sum.ValidationProducts = len(valProducts)
	sum.TrainProducts = opt.Products - sum.ValidationProducts

	var buf bytes.Buffer
	if err := catalog.WriteCSV(&buf, sum.Catalog, false); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(sum.CatalogPath, buf.Bytes(), true); err != nil {
		return nil, fmt.Errorf("synth: %w", err)
	}
	sum.Elapsed = time.Since(start)
	return sum, nil
}

func badReason(k BadKind) string {
	switch k {
	case BadTruncated:
		return "truncated JPEG: the header is valid but the scan data ends early"
	case BadEmpty:
		return "empty file: no image data"
	case BadNotImage:
		return "not an image: plain text with a .jpg name (unknown format)"
	default:
		return "missing file: the path does not exist"
	}
}
