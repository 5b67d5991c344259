package embed

import (
	"context"
	"fmt"
	"image"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/passert"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"

	"github.com/stirpipe/stirpipe/models/imageio"
	"github.com/stirpipe/stirpipe/models/imageload"
	"github.com/stirpipe/stirpipe/models/imagemodel"
	"github.com/stirpipe/stirpipe/models/manifest"
	"github.com/stirpipe/stirpipe/models/ort"
	"github.com/stirpipe/stirpipe/models/preprocess"
	"github.com/stirpipe/stirpipe/models/synth"
	"github.com/stirpipe/stirpipe/models/zoo"
	"github.com/stirpipe/stirpipe/schemas/catalog"
	"github.com/stirpipe/stirpipe/schemas/embeddings"
	"github.com/stirpipe/stirpipe/schemas/rejects"
	"github.com/stirpipe/stirpipe/transforms/imagework"
)

func TestMain(m *testing.M) { ptest.Main(m) }

func init() {
	register.DoFn2x0[embeddings.Record, func(string)](&matchFn{})
	register.Function1x1[rejects.Record, string](rejectKey)
	register.Emitter1[string]()
}

// matchFn checks each pipeline embedding against the one computed directly, image by
// image, and emits "id ok" or a description of the mismatch.
type matchFn struct {
	Want map[string][]float32
}

func (fn *matchFn) ProcessElement(r embeddings.Record, emit func(string)) {
	want, ok := fn.Want[r.Row.ID]
	if !ok {
		emit(r.Row.ID + " unexpected")
		return
	}
	var dot, nw, ng float64
	for i := range want {
		dot += float64(want[i]) * float64(r.Embedding[i])
		nw += float64(want[i]) * float64(want[i])
		ng += float64(r.Embedding[i]) * float64(r.Embedding[i])
	}
	if cos := dot / math.Sqrt(nw*ng); len(want) != len(r.Embedding) || cos < 0.99999 {
		emit(fmt.Sprintf("%s mismatch (cosine %.6f)", r.Row.ID, cos))
		return
	}
	emit(r.Row.ID + " ok")
}

func rejectKey(r rejects.Record) string { return r.Path + " " + r.Stage + "/" + r.Reason }

// TestEmbedOnPrism runs the transform on a generated catalog with broken files: every good
// image's embedding equals the model's output for that image alone, and every broken file
// is rejected with its reason.
func TestEmbedOnPrism(t *testing.T) {
	dir := t.TempDir()
	opt := synth.DefaultOptions()
	opt.Products, opt.ViewsMin, opt.ViewsMax, opt.Size, opt.BadFiles = 5, 2, 3, 96, 4
	sum, err := synth.Generate(dir, opt)
	if err != nil {
		t.Fatal(err)
	}
	cat, err := catalog.Load(context.Background(), sum.CatalogPath, catalog.Options{Root: dir})
	if err != nil {
		t.Fatal(err)
	}
	model := filepath.Join(zoo.Dir(), zoo.TinyEmbedderName, "embedder.json")
	want := directEmbeddings(t, model, dir, cat.Rows)

	// What each kind of broken file must be rejected as.
	reasons := map[synth.BadKind]string{
		synth.BadTruncated: imageload.StageDecode + "/" + imageio.ReasonCorrupt,
		synth.BadEmpty:     imageload.StageDecode + "/" + imageio.ReasonEmpty,
		synth.BadNotImage:  imageload.StageDecode + "/" + imageio.ReasonNotImage,
		synth.BadMissing:   imageload.StageRead + "/" + imageio.ReasonMissing,
	}
	bad := map[string]bool{}
	var wantRejects []any
	for _, b := range sum.BadFiles {
		bad[b.Path] = true
		wantRejects = append(wantRejects, b.Path+" "+reasons[b.Kind])
	}
	var wantOK []any
	for _, r := range cat.Rows {
		if _, isBad := bad[r.Path]; !isBad {
			wantOK = append(wantOK, r.ID+" ok")
		}
	}
	if len(wantOK) != len(want) {
		t.Fatalf("direct embedding produced %d embeddings, want %d", len(want), len(wantOK))
	}

	p, s := beam.NewPipelineWithRoot()
	rows := beam.CreateList(s, cat.Rows)
	embs, rejs := Embed(s, rows, Config{BatchSize: 3, Config: imagework.Config{Model: model, Root: dir,
		Runtime: ort.Options{IntraOpThreads: 2, GraphOptLevel: "all"}, Limits: imageio.DefaultLimits()}})
	passert.Equals(s, beam.ParDo(s, &matchFn{Want: want}, embs), wantOK...)
	passert.Equals(s, beam.ParDo(s, rejectKey, rejs), wantRejects...)
	ptest.RunAndValidate(t, p)
}

// directEmbeddings embeds every readable image of rows one at a time, outside Beam.
func directEmbeddings(t *testing.T, model, root string, rows []catalog.Row) map[string][]float32 {
	t.Helper()
	if err := ort.Init(""); err != nil {
		t.Fatal(err)
	}
	m, err := manifest.Load(model)
	if err != nil {
		t.Fatal(err)
	}
	e, err := imagemodel.OpenEmbedder(m, ort.Options{IntraOpThreads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	pp, err := preprocess.New(m.Preprocess)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]float32{}
	x := make([]float32, pp.TensorLen())
	for _, r := range rows {
		img, _, err := imageio.DecodeFile(filepath.Join(root, r.Path), imageio.DefaultLimits())
		if err != nil {
			continue
		}
		var box *image.Rectangle
		if b, ok := r.Box(); ok {
			box = &b
		}
		if err := pp.Tensor(img, box, x); err != nil {
			t.Fatalf("%s: %v", r.Path, err)
		}
		v, err := e.Embed(x, 1)
		if err != nil {
			t.Fatal(err)
		}
		out[r.ID] = v[0]
	}
	return out
}

func TestConfigValidate(t *testing.T) {
	good := Config{Config: imagework.Config{Model: "m.json", Root: "/data"}, BatchSize: 8}
	if err := good.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	bad := Config{BatchSize: 0, Config: imagework.Config{Runtime: ort.Options{Provider: "tpu"}}}
	err := bad.Validate()
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"no model", "no dataset root", "batch size", "tpu"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}
