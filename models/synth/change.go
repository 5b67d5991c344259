package synth

import (
	"context"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/stirpipe/stirpipe/schemas/catalog"
)

// Changes are the edits Change makes to a catalog: how many rows of each kind. Rows are
// drawn by Seed, each for one kind of change only; the label, sequence and role changes
// take validation rows, where retrieval sees them.
type Changes struct {
	// Added rows are new products' photos, drawn like Generate's with Generator's options
	// (DefaultOptions when zero), so that they split like the catalog's own.
	Added     int
	Generator Options
	// Removed rows leave the catalog.
	Removed int
	// Replaced rows keep their id and path, and get a different image (mirrored).
	Replaced int
	// Boxed rows get a different box (a box when they had none).
	Boxed int
	// Relabelled rows move to another product.
	Relabelled int
	// Resequenced rows get a sequence of their own.
	Resequenced int
	// GalleryOnly rows stop being queries (they stay in the gallery).
	GalleryOnly int
	// Seed draws the rows and the added products.
	Seed int64
}

// Change writes a changed copy of the catalog in src (catalog.csv and its images) to dst:
// the images of rows it keeps as they were are hard links (copies across file systems),
// the changed ones new files, and catalog.csv carries an id column so that every kept row
// keeps its id whatever changed. It returns the changed catalog's rows.
func Change(src, dst string, c Changes) ([]catalog.Row, error) {
	cat, err := catalog.Load(context.Background(), filepath.Join(src, "catalog.csv"), catalog.Options{})
	if err != nil {
		return nil, err
	}
	rows := slices.Clone(cat.Rows)
	rng := rand.New(rand.NewPCG(uint64(c.Seed), 0x5eed))
	var all, val []int // rows not yet drawn; validation rows among them
	for i, r := range rows {
		if _, err := os.Stat(filepath.Join(src, r.Path)); err == nil {
			all = append(all, i)
		}
	}
	rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	for _, i := range all {
		if rows[i].IsValidation() {
			val = append(val, i)
		}
	}
	used := map[int]bool{}
	draw := func(n int, from []int) ([]int, error) {
		var out []int
		for _, i := range from {
			if len(out) == n {
				break
			}
			if !used[i] {
				used[i] = true
				out = append(out, i)
			}
		}
		if len(out) < n {
			return nil, fmt.Errorf("synth change: %d rows wanted, %d left to draw", n, len(out))
		}
		return out, nil
	}
	replaced := map[int]bool{}
	kinds := []struct {
		n    int
		from []int
		edit func(i int) error
	}{
		{c.Relabelled, val, func(i int) error { rows[i].Label = rows[val[(slices.Index(val, i)+1)%len(val)]].Label; return nil }},
		{c.Resequenced, val, func(i int) error { rows[i].Sequence = "changed-" + rows[i].ID; return nil }},
		{c.GalleryOnly, queriesOf(rows, val), func(i int) error { rows[i].IsQuery, rows[i].IsGallery = false, true; return nil }},
		{c.Boxed, all, func(i int) error { return rebox(&rows[i], filepath.Join(src, rows[i].Path)) }},
		{c.Replaced, all, func(i int) error { replaced[i] = true; return nil }},
		{c.Removed, all, func(i int) error { rows[i].Path = ""; return nil }},
	}
	for _, k := range kinds {
		picked, err := draw(k.n, k.from)
		if err != nil {
			return nil, err
		}
		for _, i := range picked {
			if err := k.edit(i); err != nil {
				return nil, err
			}
		}
	}
	var out []catalog.Row
	for i, r := range rows {
		if r.Path == "" {
			continue
		}
		dstPath := filepath.Join(dst, r.Path)
		if err := os.MkdirAll(filepath.Dir(dstPath), 0o755); err != nil {
			return nil, err
		}
		if replaced[i] {
			err = mirror(filepath.Join(src, r.Path), dstPath)
		} else {
			err = link(filepath.Join(src, r.Path), dstPath)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	if c.Added > 0 {
		added, err := addProducts(dst, c, rows)
		if err != nil {
			return nil, err
		}
		out = append(out, added...)
	}
	f, err := os.Create(filepath.Join(dst, "catalog.csv"))
	if err != nil {
		return nil, err
	}
	if err := catalog.WriteCSV(f, out, true); err != nil {
		f.Close()
		return nil, err
	}
	return out, f.Close()
}

// queriesOf keeps the query rows of rows at idx.
func queriesOf(rows []catalog.Row, idx []int) []int {
	var out []int
	for _, i := range idx {
		if rows[i].Queries() {
			out = append(out, i)
		}
	}
	return out
}

// addProducts generates new products' photos under dst/added and returns their rows, with
// labels after the catalog's and ids of their own.
func addProducts(dst string, c Changes, rows []catalog.Row) ([]catalog.Row, error) {
	o := c.Generator
	if o.Products == 0 {
		o = DefaultOptions()
	}
	o.Products, o.ViewsMin, o.ViewsMax = max(1, (c.Added+3)/4), 4, 4
	o.Seed, o.Workers, o.BadFiles = c.Seed+1, 2, 0
	sum, err := Generate(filepath.Join(dst, "added"), o)
	if err != nil {
		return nil, err
	}
	var top int64
	for _, r := range rows {
		top = max(top, r.Label)
	}
	added := sum.Catalog[:min(c.Added, len(sum.Catalog))]
	for i := range added {
		r := &added[i]
		r.Path = "added/" + r.Path
		box, _ := r.Box()
		r.ID = catalog.DerivedID(r.Path, box)
		r.Label += top + 1
	}
	return added, nil
}

// rebox gives a row a different box inside its image.
func rebox(r *catalog.Row, file string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	cfg, _, err := image.DecodeConfig(f)
	if err != nil {
		return fmt.Errorf("synth change: %s: %w", file, err)
	}
	if r.HasBox && r.X2-r.X1 > 4 && r.Y2-r.Y1 > 4 {
		r.X1, r.Y1, r.X2, r.Y2 = r.X1+1, r.Y1+1, r.X2-1, r.Y2-1
		return nil
	}
	w, h := int64(cfg.Width), int64(cfg.Height)
	r.HasBox, r.X1, r.Y1, r.X2, r.Y2 = true, w/10, h/10, w-w/10, h-h/10
	return nil
}

// mirror writes the left-right mirror image of src to dst, in src's format.
func mirror(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	img, format, err := image.Decode(in)
	if err != nil {
		return fmt.Errorf("synth change: %s: %w", src, err)
	}
	b := img.Bounds()
	out := image.NewRGBA(b)
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			out.Set(b.Max.X-1-(x-b.Min.X), y, img.At(x, y))
		}
	}
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	if strings.EqualFold(format, "png") {
		err = png.Encode(f, out)
	} else {
		err = jpeg.Encode(f, out, &jpeg.Options{Quality: 90})
	}
	if err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// link hard-links src at dst, or copies it where links cannot be made.
func link(src, dst string) error {
	if err := os.Link(src, dst); err == nil || os.IsExist(err) {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
