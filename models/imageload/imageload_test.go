package imageload

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/stirpipe/stirpipe/models/imageio"
	"github.com/stirpipe/stirpipe/models/manifest"
	"github.com/stirpipe/stirpipe/schemas/catalog"
)

// TestLoadBatch loads a batch of good and bad rows on every core and checks each slot
// against Load of the same row alone.
func TestLoadBatch(t *testing.T) {
	ctx := context.Background()
	l, err := New("../imageio/testdata", imageio.Limits{}, manifest.ImageNet())
	if err != nil {
		t.Fatal(err)
	}
	rows := []catalog.Row{
		{ID: "a", Path: "jpeg_baseline_420.jpg"},
		{ID: "b", Path: "bad_truncated.jpg"},
		{ID: "c", Path: "png_palette.png"},
		{ID: "d", Path: "missing.jpg"},
		{ID: "e", Path: "../../../../etc/passwd"},
		{ID: "f", Path: "webp_lossy.webp"},
		{ID: "g", Path: "jpeg_progressive.jpg", HasBox: true, X1: 2, Y1: 3, X2: 40, Y2: 30},
		{ID: "h", Path: "bad_text.jpg"},
		{ID: "i", Path: "gif_anim.gif"},
	}
	wantReasons := []string{"", imageio.ReasonCorrupt, "", imageio.ReasonMissing, ReasonUnsafePath, "", "", imageio.ReasonNotImage, ""}
	slot := l.TensorLen()
	dst := make([][]float32, len(rows))
	for i := range dst {
		dst[i] = make([]float32, slot)
	}
	errs := make([]error, len(rows))
	l.LoadBatch(ctx, rows, dst, errs)
	one := make([]float32, slot)
	for i, row := range rows {
		err := l.Load(ctx, row, one)
		var le *Error
		switch {
		case wantReasons[i] == "" && errs[i] != nil:
			t.Errorf("%s: LoadBatch failed: %v", row.Path, errs[i])
		case wantReasons[i] == "":
			if !slices.Equal(dst[i], one) {
				t.Errorf("%s: LoadBatch's tensor differs from Load's", row.Path)
			}
		case !errors.As(errs[i], &le) || le.Reason != wantReasons[i]:
			t.Errorf("%s: LoadBatch error %v, want reason %s", row.Path, errs[i], wantReasons[i])
		case err == nil || err.Error() != errs[i].Error():
			t.Errorf("%s: LoadBatch error %q, Load error %v", row.Path, errs[i], err)
		}
	}
}
