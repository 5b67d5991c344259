package preprocess_test

import (
	"fmt"
	"image"

	"github.com/stirpipe/stirpipe/models/imageio"
	"github.com/stirpipe/stirpipe/models/manifest"
	"github.com/stirpipe/stirpipe/models/preprocess"
)

func ExamplePreprocessor_Tensor() {
	pp, err := preprocess.New(manifest.ImageNet())
	if err != nil {
		panic(err)
	}
	img := imageio.NewRGB(640, 480) // black
	dst := make([]float32, pp.TensorLen())

	box := image.Rect(100, 50, 400, 300) // x1, y1, x2, y2
	err = pp.Tensor(img, &box, dst)
	fmt.Printf("%d values, first %.4f, err %v\n", len(dst), dst[0], err)

	outside := image.Rect(700, 0, 800, 10)
	err = pp.Tensor(img, &outside, dst)
	fmt.Println(imageio.ReasonOf(err))
	// Output:
	// 150528 values, first -2.1179, err <nil>
	// bad_box
}
