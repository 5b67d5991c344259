package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/stirpipe/stirpipe/models/synth"
)

func synthFlags(fs *flag.FlagSet) func(context.Context) error {
	d := synth.DefaultOptions()
	o := d
	var out, categories string
	fs.StringVar(&out, "out", "", "directory to write the images and catalog.csv into (required)")
	fs.IntVar(&o.Products, "products", d.Products, "number of products (labels)")
	fs.IntVar(&o.ViewsMin, "views_min", d.ViewsMin, "fewest photos per product (≥ 2)")
	fs.IntVar(&o.ViewsMax, "views_max", d.ViewsMax, "most photos per product")
	fs.StringVar(&o.Layout, "layout", d.Layout, "sop: every validation row is query and gallery; inshop: disjoint query and gallery rows")
	fs.Float64Var(&o.ValidationFraction, "validation_fraction", d.ValidationFraction, "share of products in the validation split (the rest is train)")
	fs.StringVar(&categories, "categories", "", "comma-separated category names; empty: the built-in ones ("+strings.Join(synth.BuiltinCategories(), ",")+")")
	fs.Float64Var(&o.BoxFraction, "box_fraction", d.BoxFraction, "share of rows with a bounding box")
	fs.Float64Var(&o.SequenceFraction, "sequence_fraction", d.SequenceFraction, "share of products photographed in one session (shared sequence id)")
	fs.IntVar(&o.Size, "size", d.Size, "nominal image side in pixels (sizes and aspect ratios vary around it)")
	fs.Float64Var(&o.PNGFraction, "png_fraction", d.PNGFraction, "share of images written as PNG (the rest are JPEG)")
	fs.Int64Var(&o.Seed, "seed", d.Seed, "random seed: the same options give byte-identical files")
	fs.IntVar(&o.Workers, "workers", runtime.NumCPU(), "parallel image writers")
	fs.IntVar(&o.BadFiles, "bad_files", 0, "extra rows whose files are broken (truncated, empty, not an image, missing), to exercise rejects")
	return func(ctx context.Context) error {
		if out == "" {
			return fmt.Errorf("--out is required: the directory for the generated catalog")
		}
		if categories != "" {
			o.Categories = strings.Split(categories, ",")
		}
		sum, err := synth.Generate(out, o)
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stdout, "synth: %d rows (%d products: %d train, %d validation; %d queries, %d gallery), %d JPEG + %d PNG, %.1f MB in %s\n",
			sum.Rows, sum.Products, sum.TrainProducts, sum.ValidationProducts, sum.Queries, sum.Galleries,
			sum.JPEGFiles, sum.PNGFiles, float64(sum.Bytes)/1e6, sum.Elapsed.Round(1e6))
		if len(sum.BadFiles) > 0 {
			fmt.Fprintf(os.Stdout, "synth: %d deliberately broken files (they go to rejects)\n", len(sum.BadFiles))
		}
		fmt.Fprintf(os.Stdout, "synth: catalog %s\n", sum.CatalogPath)
		return nil
	}
}
