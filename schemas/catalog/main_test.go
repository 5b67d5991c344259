package catalog

import (
	"testing"

	"github.com/stirpipe/stirpipe/schemas/blob/blobtest"
)

const testBucket = "catalog-test"

// TestMain runs the tests against an in-process Cloud Storage emulator for gs:// paths.
func TestMain(m *testing.M) { blobtest.Main(m.Run, testBucket) }
