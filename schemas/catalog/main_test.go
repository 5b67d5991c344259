package catalog

import (
	"fmt"
	"os"
	"testing"

	"github.com/stirpipe/stirpipe/schemas/blob/blobtest"
)

const testBucket = "catalog-test"

// TestMain runs the tests against an in-process Cloud Storage emulator for gs:// paths.
func TestMain(m *testing.M) {
	emu, err := blobtest.Start(testBucket)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	emu.Stop()
	os.Exit(code)
}
