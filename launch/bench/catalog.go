package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/stirpipe/stirpipe/models/synth"
)

// viewsPerProduct fixes the views of every generated product, so the catalog has exactly
// 4·⌈images/4⌉ rows and its first half is whole products.
const viewsPerProduct = 4

// benchCatalog is a generated benchmark catalog: the full one and its first half.
type benchCatalog struct {
	Dir      string `json:"dir"`
	Full     string `json:"full"`
	Half     string `json:"half"`
	Reused   bool   `json:"reused"`
	FullRows int    `json:"full_rows"`
	HalfRows int    `json:"half_rows"`
}

// synthOptions are the generator options of a benchmark catalog: only JPEGs, no bad files,
// no boxes, every row embedded (the embed stage embeds train and validation rows alike).
func synthOptions(images, size int, seed int64) synth.Options {
	o := synth.DefaultOptions()
	o.Products = (images + viewsPerProduct - 1) / viewsPerProduct
	o.ViewsMin, o.ViewsMax = viewsPerProduct, viewsPerProduct
	o.Layout = synth.LayoutSOP
	o.ValidationFraction = 0.5
	o.BoxFraction = 0
	o.SequenceFraction = 0
	o.PNGFraction = 0
	o.BadFiles = 0
	o.Size = size
	o.Seed = seed
	return o
}

// stampFile records the options a catalog directory was generated with.
const stampFile = "bench-synth.json"

// prepareCatalog generates the catalog under work (or reuses one generated with the same
// options) and writes catalog-half.csv beside it, listing the first half of its products.
func prepareCatalog(work string, images, size int, seed int64, log io.Writer) (*benchCatalog, error) {
	o := synthOptions(images, size, seed)
	dir := filepath.Join(work, fmt.Sprintf("catalog-%dimg-%dpx-seed%d", images, size, seed))
	stamp, err := json.Marshal(o)
	if err != nil {
		return nil, err
	}
	bc := &benchCatalog{Dir: dir, Full: filepath.Join(dir, synth.CatalogFile), Half: filepath.Join(dir, "catalog-half.csv")}
	old, _ := os.ReadFile(filepath.Join(dir, stampFile))
	if _, err := os.Stat(bc.Full); err == nil && bytes.Equal(old, stamp) {
		bc.Reused = true
		fmt.Fprintf(log, "catalog: reusing %s\n", bc.Full)
	} else {
		if err := os.RemoveAll(dir); err != nil {
			return nil, fmt.Errorf("removing the stale catalog %s: %w", dir, err)
		}
		fmt.Fprintf(log, "catalog: generating %d products × %d JPEG views of ~%d px into %s …\n", o.Products, viewsPerProduct, size, dir)
		sum, err := synth.Generate(dir, o)
		if err != nil {
			return nil, fmt.Errorf("generating the benchmark catalog: %w", err)
		}
		if sum.PNGFiles != 0 || len(sum.BadFiles) != 0 {
			return nil, fmt.Errorf("generated catalog %s has %d PNG and %d bad files, want only JPEGs", bc.Full, sum.PNGFiles, len(sum.BadFiles))
		}
		fmt.Fprintf(log, "catalog: %d JPEGs, %.1f MB in %s\n", sum.JPEGFiles, float64(sum.Bytes)/1e6, sum.Elapsed.Round(1e6))
		if err := os.WriteFile(filepath.Join(dir, stampFile), stamp, 0o644); err != nil {
			return nil, err
		}
	}
	full, half, err := writeHalf(bc.Full, bc.Half, o.Products/2)
	if err != nil {
		return nil, err
	}
	bc.FullRows, bc.HalfRows = full, half
	return bc, nil
}

// writeHalf copies the header and the rows whose label is below products of the CSV
// catalog src into dst; it returns the row counts of both.
func writeHalf(src, dst string, products int) (full, half int, err error) {
	f, err := os.Open(src)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	r := csv.NewReader(f)
	recs, err := r.ReadAll()
	if err != nil {
		return 0, 0, fmt.Errorf("reading %s: %w", src, err)
	}
	if len(recs) < 2 {
		return 0, 0, fmt.Errorf("%s: no rows", src)
	}
	col := -1
	for i, name := range recs[0] {
		if name == "label" {
			col = i
		}
	}
	if col < 0 {
		return 0, 0, fmt.Errorf("%s line 1: no label column in the header %q", src, recs[0])
	}
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	_ = w.Write(recs[0])
	for i, rec := range recs[1:] {
		label, err := strconv.Atoi(rec[col])
		if err != nil {
			return 0, 0, fmt.Errorf("%s line %d, column label: %q is not an integer: %w", src, i+2, rec[col], err)
		}
		if label < products {
			_ = w.Write(rec)
			half++
		}
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return 0, 0, err
	}
	if half == 0 {
		return 0, 0, fmt.Errorf("%s: no rows with a label below %d for the half catalog", src, products)
	}
	if err := os.WriteFile(dst, buf.Bytes(), 0o644); err != nil {
		return 0, 0, err
	}
	return len(recs) - 1, half, nil
}
