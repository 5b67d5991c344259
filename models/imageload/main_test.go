package imageload

import (
	"testing"

	"github.com/stirpipe/stirpipe/schemas/blob/blobtest"
)

const testBucket = "images"

func TestMain(m *testing.M) { blobtest.Main(m.Run, testBucket) }
