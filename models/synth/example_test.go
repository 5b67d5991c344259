package synth_test

import (
	"fmt"
	"log"
	"os"

	"github.com/stirpipe/stirpipe/models/synth"
)

func ExampleGenerate() {
	dir, err := os.MkdirTemp("", "synth-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	o := synth.DefaultOptions()
	o.Products = 8
	o.Size = 64
	o.Layout = synth.LayoutInShop
	o.BoxFraction = 0.5
	o.BadFiles = 2
	sum, err := synth.Generate(dir, o)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d products (%d train, %d validation), %d rows\n", sum.Products, sum.TrainProducts, sum.ValidationProducts, sum.Rows)
	fmt.Printf("%d queries, %d gallery rows, %d boxes\n", sum.Queries, sum.Galleries, sum.BoxRows)
	for _, b := range sum.BadFiles {
		fmt.Println(b.Kind, b.Path)
	}
	fmt.Println(sum.Catalog[0].Path, sum.Catalog[0].Category)
	// Output:
	// 8 products (4 train, 4 validation), 43 rows
	// 12 queries, 12 gallery rows, 14 boxes
	// truncated images/bottle/1_4.jpg
	// empty images/shoe/3_6.jpg
	// images/mug/0_0.jpg mug
}
