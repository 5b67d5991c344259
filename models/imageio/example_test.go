package imageio_test

import (
	"fmt"
	"os"

	"github.com/stirpipe/stirpipe/models/imageio"
)

func ExampleDecode() {
	// A PNG file named .jpg: the format comes from the content.
	data, err := os.ReadFile("testdata/png_named.jpg")
	if err != nil {
		panic(err)
	}
	img, format, err := imageio.Decode(data, imageio.DefaultLimits())
	fmt.Println(format, img.W, img.H, len(img.Pix), err)

	_, _, err = imageio.Decode([]byte("<html>not found</html>"), imageio.Limits{})
	fmt.Println(imageio.ReasonOf(err))

	_, _, err = imageio.Decode(data, imageio.Limits{MaxPixels: 100})
	fmt.Println(err)
	// Output:
	// png 33 25 2475 <nil>
	// not_image
	// too_large png image: 33x25 = 825 pixels exceed the limit of 100 pixels
}
