package pipelines

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"

	"github.com/stirpipe/stirpipe/models/imageio"
	"github.com/stirpipe/stirpipe/models/metrics"
	"github.com/stirpipe/stirpipe/models/ort"
	"github.com/stirpipe/stirpipe/models/synth"
	"github.com/stirpipe/stirpipe/models/zoo"
	"github.com/stirpipe/stirpipe/schemas/embeddings"
)

// refreshJob is the whole job on a catalog with the shipped stir-tiny models, cut into
// several embeddings files, gallery shards and query tiles.
func refreshJob(catalogURI, out, previous string) Job {
	shared := Shared{Output: out, Runtime: ort.Options{IntraOpThreads: 2, InterOpThreads: 1, GraphOptLevel: "all"}, Limits: imageio.DefaultLimits()}
	dir := filepath.Join(zoo.Dir(), stirDir)
	return Job{
		Embed: EmbedOptions{Shared: shared, Catalog: catalogURI, Model: filepath.Join(dir, "embedder.json"), BatchSize: 4,
			EmbeddingShards: 2, CatalogShards: 2, Previous: previous},
		Neighbors: NeighborsOptions{K: 10, ShardSize: 40, TileSize: 30, Format: "parquet", Threads: 2},
		Rerank:    RerankOptions{Model: filepath.Join(dir, "pairwise.json"), TopN: 3, BatchPairs: 7, CacheImages: 16},
		Evaluate:  EvaluateOptions{KS: metrics.Options{CMC: []int{1, 5}, Precision: []int{5}, MAP: []int{5}}},
	}
}

// runJob runs a job on prism and returns its summaries by stage.
func runJob(t *testing.T, j Job) map[string]*Summary {
	t.Helper()
	sums := map[string]*Summary{}
	err := j.Run(context.Background(), func(_ context.Context, p *beam.Pipeline) (beam.PipelineResult, error) {
		return ptest.RunWithMetrics(p)
	}, func(Stage) {}, func(s *Summary) { sums[s.Stage] = s })
	if err != nil {
		t.Fatal(err)
	}
	return sums
}

// count returns a summary's count of a label (-1 when it has no such line).
func count(s *Summary, label string) int64 {
	for _, l := range s.Lines {
		if l.Label == label {
			return l.Count
		}
	}
	return -1
}

// sameFiles reports every file that differs between two run directories (ignoring the
// refresh's own record of changes).
func sameFiles(t *testing.T, want, got string) {
	t.Helper()
	files := map[string]bool{}
	for _, dir := range []string{want, got} {
		filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				rel, _ := filepath.Rel(dir, p)
				files[rel] = true
			}
			return nil
		})
	}
	if len(files) < 10 {
		t.Fatalf("%s and %s hold %d files, want every stage's", want, got, len(files))
	}
	for rel := range files {
		if strings.HasPrefix(rel, "refresh"+string(filepath.Separator)) {
			continue
		}
		a, errA := os.ReadFile(filepath.Join(want, rel))
		b, errB := os.ReadFile(filepath.Join(got, rel))
		switch {
		case errA != nil || errB != nil:
			t.Errorf("%s: only in one run (%v, %v)", rel, errA, errB)
		case rel == MetricsFile:
			if !bytes.Equal(withoutRefresh(t, a), withoutRefresh(t, b)) {
				t.Errorf("%s differs:\n%s\n%s", rel, a, b)
			}
		case !bytes.Equal(a, b):
			t.Errorf("%s differs from the full run's", rel)
		}
	}
}

// TestRefreshEqualsFullRun: a refresh of a changed catalog from the previous run gives the
// same files as a full run on it, for every kind of change at once, and does only the
// work the changes ask for; a refresh with nothing changed embeds and scores nothing.
func TestRefreshEqualsFullRun(t *testing.T) {
	base, sum := generateCatalog(t, 30)
	prev := filepath.Join(t.TempDir(), "prev")
	runJob(t, refreshJob(sum.CatalogPath, prev, ""))

	changed := t.TempDir()
	ch := synth.Changes{Added: 6, Removed: 3, Replaced: 3, Boxed: 2, Relabelled: 2, Resequenced: 2, GalleryOnly: 2, Seed: 7}
	if _, err := synth.Change(base, changed, ch); err != nil {
		t.Fatal(err)
	}
	cat := filepath.Join(changed, "catalog.csv")
	out := filepath.Join(t.TempDir(), "run")
	fullSums := runJob(t, refreshJob(cat, out, ""))
	full := filepath.Join(t.TempDir(), "full")
	if err := os.Rename(out, full); err != nil {
		t.Fatal(err)
	}
	sums := runJob(t, refreshJob(cat, out, prev))
	sameFiles(t, full, out)

	e, n, r := sums["embed"], sums["neighbors"], sums["rerank"]
	t.Logf("refresh: embed %v, neighbors %v, rerank %v", e.Work, n.Work, r.Work)
	if got, want := count(e, "embedded"), int64(ch.Added+ch.Replaced+ch.Boxed); got != want {
		t.Errorf("refresh embedded %d images, want %d (added, replaced, re-boxed)", got, want)
	}
	if got := count(e, "removed"); got != int64(ch.Removed) {
		t.Errorf("refresh removed %d rows, want %d", got, ch.Removed)
	}
	if count(n, "reused") <= 0 || count(n, "searched") <= 0 {
		t.Errorf("neighbours: %d lists reused, %d searched in full: want both > 0", count(n, "reused"), count(n, "searched"))
	}
	if all := count(fullSums["rerank"], "pairs"); count(r, "pairs")+count(r, "pairs reused") != all {
		t.Errorf("rerank: %d pairs scored + %d reused, the full run scored %d", count(r, "pairs"), count(r, "pairs reused"), all)
	}
	if count(e, "reused")+count(e, "embedded") != count(e, "embeddings") {
		t.Errorf("embed: %d reused + %d embedded, %d embeddings", count(e, "reused"), count(e, "embedded"), count(e, "embeddings"))
	}
	if count(r, "pairs reused") <= 0 || count(r, "pairs") >= count(r, "lists")*3 {
		t.Errorf("rerank: %d pairs reused, %d scored of %d lists: want reuse and fewer pairs than a full run", count(r, "pairs reused"), count(r, "pairs"), count(r, "lists"))
	}

	// Nothing changed: nothing is embedded or scored, and the files stay the same.
	again := filepath.Join(t.TempDir(), "again")
	sums = runJob(t, refreshJob(cat, again, out))
	if count(sums["embed"], "embedded") != 0 || count(sums["rerank"], "pairs") != 0 {
		t.Errorf("unchanged catalog: embedded %d, scored %d pairs, want 0 and 0", count(sums["embed"], "embedded"), count(sums["rerank"], "pairs"))
	}
	if count(sums["neighbors"], "searched") != 0 {
		t.Errorf("unchanged catalog: %d queries searched in full, want 0", count(sums["neighbors"], "searched"))
	}
}

// generateCatalog writes a catalog of n products (no broken files) into a fresh directory.
func generateCatalog(t *testing.T, products int) (string, *synth.Summary) {
	t.Helper()
	dir := t.TempDir()
	opt := synth.DefaultOptions()
	opt.Products, opt.ViewsMin, opt.ViewsMax, opt.Size = products, 3, 5, 96
	opt.BoxFraction, opt.SequenceFraction, opt.ValidationFraction = 0.3, 0.3, 0.6
	sum, err := synth.Generate(dir, opt)
	if err != nil {
		t.Fatal(err)
	}
	return dir, sum
}

// withoutRefresh drops a metrics document's work counts, which differ between a refresh
// and a full run by design.
func withoutRefresh(t *testing.T, data []byte) []byte {
	t.Helper()
	out, err := metrics.WithoutWork(data)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRefreshFromUnusablePrevious: a previous run that cannot be trusted (incomplete,
// corrupt, from another model) gives a full embed that says why; one that is not there
// stops the job before any work.
func TestRefreshFromUnusablePrevious(t *testing.T) {
	ctx := context.Background()
	_, sum := generate(t)
	prev := t.TempDir()
	run(t, options(sum.CatalogPath, prev)) // the vit-tiny embedder
	stirTiny := filepath.Join(zoo.Dir(), stirDir, "embedder.json")

	copyRun := func(t *testing.T, spoil func(dir string)) string {
		dir := t.TempDir()
		if err := os.CopyFS(dir, os.DirFS(prev)); err != nil {
			t.Fatal(err)
		}
		spoil(filepath.Join(dir, EmbeddingsDir))
		return dir
	}
	cases := []struct {
		name, why string
		previous  func(t *testing.T) string
		model     string
	}{
		{"incomplete", "_manifest.json is missing", func(t *testing.T) string {
			return copyRun(t, func(d string) { os.Remove(filepath.Join(d, "_manifest.json")) })
		}, ""},
		{"corrupt manifest", "manifest", func(t *testing.T) string {
			return copyRun(t, func(d string) { os.WriteFile(filepath.Join(d, "_manifest.json"), []byte("{not json"), 0o644) })
		}, ""},
		{"truncated shard", "not a readable Parquet file", func(t *testing.T) string {
			return copyRun(t, func(d string) { os.Truncate(filepath.Join(d, embeddings.ShardName(0, 3)), 100) })
		}, ""},
		{"another model", "model sha256", func(*testing.T) string { return prev }, stirTiny},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := options(sum.CatalogPath, t.TempDir())
			o.Previous = c.previous(t)
			if c.model != "" {
				o.Model = c.model
			}
			p, err := PrepareEmbed(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Earlier.Previous) != 0 || len(p.Notes) != 1 || !strings.Contains(p.Notes[0], "full embed") || !strings.Contains(p.Notes[0], c.why) {
				t.Fatalf("notes %q, %d previous files: want one note of a full embed saying %q", p.Notes, len(p.Earlier.Previous), c.why)
			}
			s, err := RunStage(ctx, p, func(_ context.Context, pl *beam.Pipeline) (beam.PipelineResult, error) {
				return ptest.RunWithMetrics(pl)
			}, func(Stage) {})
			if err != nil {
				t.Fatal(err)
			}
			if s.Work["reused"] != 0 || s.Work["embedded"] != count(s, "embeddings") {
				t.Errorf("work %v, want nothing reused and all %d embedded", s.Work, count(s, "embeddings"))
			}
		})
	}

	o := options(sum.CatalogPath, t.TempDir())
	o.Previous = filepath.Join(t.TempDir(), "no-such-run")
	if _, err := PrepareEmbed(ctx, o); err == nil || !strings.Contains(err.Error(), o.Previous) {
		t.Errorf("a previous run that is not there: %v, want an error naming it", err)
	}
}
