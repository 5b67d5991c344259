package imageload

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stirpipe/stirpipe/models/imageio"
	"github.com/stirpipe/stirpipe/models/manifest"
	"github.com/stirpipe/stirpipe/schemas/blob/blobtest"
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

// TestFingerprints: the fingerprint LoadBatchPrinted records is the MD5 of the file's
// bytes, FingerprintOf gives the same without decoding, from the stored MD5 on gs://, and a
// file that cannot be read has none.
func TestFingerprints(t *testing.T) {
	ctx := context.Background()
	const dir = "../imageio/testdata"
	rows := []catalog.Row{{ID: "a", Path: "jpeg_baseline_420.jpg"}, {ID: "b", Path: "png_palette.png"}, {ID: "c", Path: "missing.jpg"}}
	if err := blobtest.Upload(ctx, dir, "gs://"+testBucket+"/images"); err != nil {
		t.Fatal(err)
	}
	for _, root := range []string{dir, "gs://" + testBucket + "/images"} {
		l, err := New(root, imageio.Limits{}, manifest.ImageNet())
		if err != nil {
			t.Fatal(err)
		}
		dst := [][]float32{make([]float32, l.TensorLen()), make([]float32, l.TensorLen()), make([]float32, l.TensorLen())}
		errs, prints := make([]error, 3), make([]string, 3)
		l.LoadBatchPrinted(ctx, rows, dst, errs, prints)
		for i, row := range rows[:2] {
			data, err := os.ReadFile(filepath.Join(dir, row.Path))
			if err != nil {
				t.Fatal(err)
			}
			of, err := l.FingerprintOf(ctx, row)
			if want := Fingerprint(data); prints[i] != want || of != want || err != nil || !strings.HasPrefix(want, "md5:") {
				t.Errorf("%s %s: loaded with fingerprint %q, FingerprintOf %q (%v), want %q", root, row.Path, prints[i], of, err, want)
			}
		}
		if _, err := l.FingerprintOf(ctx, rows[2]); prints[2] != "" || err == nil {
			t.Errorf("%s: a missing file: fingerprint %q, FingerprintOf error %v", root, prints[2], err)
		}
	}
}
