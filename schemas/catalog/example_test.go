package catalog_test

import (
	"fmt"
	"strings"

	"github.com/stirpipe/stirpipe/schemas/catalog"
)

func ExampleParse() {
	text := `label,path,split,is_query,is_gallery,category,x_1,x_2,y_1,y_2
7,shoes/1.jpg,validation,True,True,shoes,,,,
7,shoes/2.jpg,validation,True,True,shoes,10,90,0,120
8,bags/1.jpg,train,,,bags,,,,
`
	cat, err := catalog.Parse("products.csv", strings.NewReader(text))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%+v\n", cat.Counts())
	box, _ := cat.Rows[1].Box()
	fmt.Println(cat.Rows[1].ID, box)
	// Output:
	// {Rows:3 Train:1 Validation:2 Queries:2 Galleries:2 Labels:2 ValidationLabels:1 Boxes:1}
	// i1b99c2e98613439c (10,0)-(90,120)
}

func ExampleParse_problems() {
	text := "label,path,split,is_query,is_gallery\n" +
		"7,../1.jpg,validation,True,True\n" +
		"seven,2.jpg,validation,yes,True\n"
	_, err := catalog.Parse("products.csv", strings.NewReader(text))
	fmt.Println(err)
	// Output:
	// catalog products.csv: 3 problems
	// products.csv line 2, column "path": unsafe image path "../1.jpg": ".." leaves the dataset root
	// products.csv line 3, column "label": bad value: want an integer label, got "seven"
	// products.csv line 3, column "is_query": bad value: want a boolean (True/False/1/0), got "yes"
}

func ExampleResolve() {
	for _, p := range []string{"img/a.jpg", "img/../../secret"} {
		full, err := catalog.Resolve("gs://bucket/sop", p)
		fmt.Printf("%q %v\n", full, err)
	}
	// Output:
	// "gs://bucket/sop/img/a.jpg" <nil>
	// "" unsafe image path "img/../../secret": ".." leaves the dataset root
}
