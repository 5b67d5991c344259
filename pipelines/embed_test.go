package pipelines

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"

	"github.com/stirpipe/stirpipe/models/imageio"
	"github.com/stirpipe/stirpipe/models/ort"
	"github.com/stirpipe/stirpipe/models/synth"
	"github.com/stirpipe/stirpipe/models/zoo"
	"github.com/stirpipe/stirpipe/schemas/blob"
	"github.com/stirpipe/stirpipe/schemas/blob/blobtest"
	"github.com/stirpipe/stirpipe/schemas/embeddings"
	"github.com/stirpipe/stirpipe/schemas/rejects"
)

func TestMain(m *testing.M) { blobtest.Main(func() int { return ptest.MainRet(m) }, "bucket") }

// runOnPrism starts a stage, builds its pipeline and runs it on prism.
func runOnPrism(st Stage) error {
	if s, ok := st.(interface{ Start(context.Context) error }); ok {
		if err := s.Start(context.Background()); err != nil {
			return err
		}
	}
	p, s := beam.NewPipelineWithRoot()
	st.Build(s)
	return ptest.Run(p)
}

// generate writes a small catalog with broken files into a fresh directory.
func generate(t *testing.T) (string, *synth.Summary) {
	t.Helper()
	dir := t.TempDir()
	opt := synth.DefaultOptions()
	opt.Products, opt.ViewsMin, opt.ViewsMax, opt.Size, opt.BadFiles = 8, 2, 3, 96, 4
	opt.BoxFraction, opt.SequenceFraction = 0.3, 0.3
	sum, err := synth.Generate(dir, opt)
	if err != nil {
		t.Fatal(err)
	}
	return dir, sum
}

func options(catalogURI, output string) EmbedOptions {
	return EmbedOptions{
		Shared: Shared{
			Output:  output,
			Runtime: ort.Options{IntraOpThreads: 2, InterOpThreads: 1, GraphOptLevel: "all"},
			Limits:  imageio.DefaultLimits(),
		},
		Catalog:         catalogURI,
		Model:           filepath.Join(zoo.Dir(), zoo.TinyEmbedderName, "embedder.json"),
		BatchSize:       4,
		EmbeddingShards: 3,
		CatalogShards:   2,
	}
}

// run prepares and runs the embed pipeline on prism.
func run(t *testing.T, o EmbedOptions) *EmbedPlan {
	t.Helper()
	ctx := context.Background()
	plan, err := PrepareEmbed(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := runOnPrism(plan); err != nil {
		t.Fatal(err)
	}
	return plan
}

// outputs reads back a run's embeddings and rejects.
func outputs(t *testing.T, out string) (embeddings.Manifest, []embeddings.Record, []rejects.Record) {
	t.Helper()
	ctx := context.Background()
	r, err := embeddings.Open(ctx, blob.Join(out, EmbeddingsDir))
	if err != nil {
		t.Fatal(err)
	}
	recs, err := r.ReadAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rejs, err := rejects.ReadAll(ctx, RejectsFile(out, "embed"))
	if err != nil {
		t.Fatal(err)
	}
	return r.Manifest(), recs, rejs
}

// TestEmbedPipeline: every catalog row comes out once, as an embedding or a reject with the
// right reason; the output files are byte-identical across runs; a rerun into the same
// directory with fewer shards leaves no stale shard behind.
func TestEmbedPipeline(t *testing.T) {
	_, sum := generate(t)
	out1, out2 := t.TempDir(), t.TempDir()
	plan := run(t, options(sum.CatalogPath, out1))
	run(t, options(sum.CatalogPath, out2))

	m, recs, rejs := outputs(t, out1)
	if got, want := len(recs)+len(rejs), int(plan.Catalog.Rows); got != want {
		t.Fatalf("%d embeddings + %d rejects, want %d catalog rows", len(recs), len(rejs), want)
	}
	if len(rejs) != len(sum.BadFiles) {
		t.Fatalf("%d rejects, want %d (the broken files): %+v", len(rejs), len(sum.BadFiles), rejs)
	}
	badPaths := map[string]bool{}
	for _, b := range sum.BadFiles {
		badPaths[b.Path] = true
	}
	for _, r := range rejs {
		if !badPaths[r.Path] || r.Reason == "" || r.ItemID == "" || r.Detail == "" {
			t.Errorf("unexpected reject %+v", r)
		}
	}
	if m.Provenance.Dim != 64 || m.Provenance.ModelSHA256 == "" || m.Provenance.CatalogSnapshot != plan.Catalog.Snapshot {
		t.Errorf("provenance %+v does not describe the run", m.Provenance)
	}
	for _, r := range recs {
		if badPaths[r.Row.Path] || len(r.Embedding) != 64 {
			t.Errorf("bad embedding record for %s", r.Row.Path)
		}
	}

	// Determinism: same inputs, same bytes.
	for _, rel := range files(t, out1) {
		a, _ := os.ReadFile(filepath.Join(out1, rel))
		b, err := os.ReadFile(filepath.Join(out2, rel))
		if err != nil || string(a) != string(b) {
			t.Errorf("%s differs between two runs of the same inputs", rel)
		}
	}
	if !reflect.DeepEqual(files(t, out1), files(t, out2)) {
		t.Errorf("runs wrote different files: %v vs %v", files(t, out1), files(t, out2))
	}

	// Rerun with one shard into the first directory: the three old shards disappear.
	o := options(sum.CatalogPath, out1)
	o.EmbeddingShards = 1
	run(t, o)
	m1, recs1, _ := outputs(t, out1)
	if len(m1.Shards) != 1 || len(recs1) != len(recs) {
		t.Fatalf("rerun with 1 shard: %d shards, %d records", len(m1.Shards), len(recs1))
	}
	for _, f := range files(t, out1) {
		if strings.Contains(f, "-of-00003") {
			t.Errorf("stale shard %s left behind", f)
		}
	}
}

// TestEmbedPipelineGCS runs the same job with the catalog, the images, the model and the
// outputs in a Cloud Storage emulator, and compares the records with a local run.
func TestEmbedPipelineGCS(t *testing.T) {
	ctx := context.Background()
	t.Setenv("STIR_CACHE_DIR", t.TempDir()) // where the workers copy the gs:// model
	dir, sum := generate(t)
	modelDir := filepath.Dir(options("", "").Model)
	for _, name := range []string{"embedder.json", "embedder.onnx"} {
		data, err := os.ReadFile(filepath.Join(modelDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := blob.WriteFile(ctx, "gs://bucket/models/"+name, data); err != nil {
			t.Fatal(err)
		}
	}
	for _, rel := range files(t, dir) {
		data, err := os.ReadFile(filepath.Join(dir, rel))
		if err != nil {
			t.Fatal(err)
		}
		if err := blob.WriteFile(ctx, "gs://bucket/data/"+filepath.ToSlash(rel), data); err != nil {
			t.Fatal(err)
		}
	}
	local := t.TempDir()
	run(t, options(sum.CatalogPath, local))
	remote := options("gs://bucket/data/"+synth.CatalogFile, "gs://bucket/out")
	remote.Model = "gs://bucket/models/embedder.json"
	run(t, remote)

	wantM, want, wantRej := outputs(t, local)
	m, got, gotRej := outputs(t, "gs://bucket/out")
	if m.Provenance.CatalogURI != "gs://bucket/data/"+synth.CatalogFile {
		t.Errorf("provenance catalog = %q", m.Provenance.CatalogURI)
	}
	if m.Provenance.ModelSHA256 != wantM.Provenance.ModelSHA256 || m.Provenance.ModelName != wantM.Provenance.ModelName {
		t.Errorf("provenance model %s %s, local run %s %s", m.Provenance.ModelName, m.Provenance.ModelSHA256, wantM.Provenance.ModelName, wantM.Provenance.ModelSHA256)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("gs:// run gave %d records differing from the local run's %d", len(got), len(want))
	}
	for i := range gotRej {
		gotRej[i].Detail, wantRej[i].Detail = "", "" // details name the file where it was
	}
	if !reflect.DeepEqual(gotRej, wantRej) {
		t.Errorf("gs:// rejects %+v, local %+v", gotRej, wantRej)
	}
}

// TestWorkersRefuseAnotherModel: a worker whose model file is not the one hashed at launch
// (as when the file is replaced mid-job) stops the job instead of mixing two models.
func TestWorkersRefuseAnotherModel(t *testing.T) {
	_, sum := generate(t)
	plan, err := PrepareEmbed(context.Background(), options(sum.CatalogPath, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	plan.Provenance.ModelSHA256 = strings.Repeat("0", 64)
	if err := runOnPrism(plan); err == nil || !strings.Contains(err.Error(), "changed since the job was launched") {
		t.Fatalf("run with another model's hash: %v, want a refusal", err)
	}
}

// TestPrepareEmbedStopsBadInput: a bad flag, catalog, model or library stops the job
// before the pipeline runs, with a message naming the problem.
func TestPrepareEmbedStopsBadInput(t *testing.T) {
	_, sum := generate(t)
	badCatalog := filepath.Join(t.TempDir(), "bad.csv")
	if err := os.WriteFile(badCatalog, []byte("label,path,split\nx,a.jpg,train\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	notModel := filepath.Join(t.TempDir(), "m.json")
	if err := os.WriteFile(notModel, []byte(`{"name":"x"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		edit func(*EmbedOptions)
		want string
	}{
		{"no catalog", func(o *EmbedOptions) { o.Catalog = "" }, "--catalog is required"},
		{"batch size", func(o *EmbedOptions) { o.BatchSize = 0 }, "--batch_size"},
		{"bad catalog", func(o *EmbedOptions) { o.Catalog = badCatalog }, `line 2, column "label"`},
		{"missing catalog", func(o *EmbedOptions) { o.Catalog = "/nonexistent/c.csv" }, "/nonexistent/c.csv"},
		{"bad manifest", func(o *EmbedOptions) { o.Model = notModel }, "kind"},
		{"bad provider", func(o *EmbedOptions) { o.Runtime.Provider = "tpu" }, "tpu"},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := options(sum.CatalogPath, t.TempDir())
			c.edit(&o)
			_, err := PrepareEmbed(context.Background(), o)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("PrepareEmbed = %v, want an error mentioning %q", err, c.want)
			}
		})
	}
}

// files lists the regular files under dir, relative to it.
func files(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out = append(out, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
