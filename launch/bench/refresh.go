package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/stirpipe/stirpipe/models/metrics"
	"github.com/stirpipe/stirpipe/models/synth"
)

// The refresh benchmark: a full `stir run` on a changed catalog against a refresh of it
// from the run on the catalog before the change, side by side, both as child processes
// on prism. A refresh must give the full run's files and cost a small part of its work.
//
//	bench refresh --products 5000 --work out/bench
type refreshConfig struct {
	Products  int     `json:"products"`
	Size      int     `json:"size"`
	Seed      int64   `json:"seed"`
	Reps      int     `json:"reps"`
	K         int     `json:"k"`
	Added     float64 `json:"added_fraction"`
	Replaced  float64 `json:"replaced_fraction"`
	Removed   float64 `json:"removed_fraction"`
	Model     string  `json:"model"`
	PairModel string  `json:"pair_model"`
	Work      string  `json:"-"`
	Stir      string  `json:"-"`
	JSON      string  `json:"-"`
}

// refreshRun is one timed run of the whole job.
type refreshRun struct {
	Kind     string             `json:"kind"` // "full" or "refresh"
	Rep      int                `json:"rep"`
	Embedded int64              `json:"images_embedded"`
	Pairs    int64              `json:"pairs_scored"`
	Searched int64              `json:"queries_searched_in_full"`
	StagesS  map[string]float64 `json:"stage_wall_s"`
	childRun
}

type refreshResult struct {
	Config refreshConfig `json:"config"`
	runInfo
	Rows    int           `json:"rows_before"`
	Changed synth.Changes `json:"changes"`
	RowsNew int           `json:"rows_after"`
	Runs    []refreshRun  `json:"runs"`
	// Identical says every refresh wrote the full run's files (metrics' work counts apart).
	Identical bool `json:"identical"`
	Wall      struct {
		Full, Refresh stat
		Ratio         float64 `json:"ratio_of_medians"`
	} `json:"wall_s"`
	EmbedRatio float64 `json:"embedding_work_ratio"`
	PairsRatio float64 `json:"pair_scoring_work_ratio"`
}

func runRefreshBench(ctx context.Context, args []string) int {
	c := refreshConfig{}
	fs := flag.NewFlagSet("refresh", flag.ContinueOnError)
	fs.IntVar(&c.Products, "products", 5000, "products of the generated catalog (3 to 6 photos each: 5000 gives about 22,000 rows)")
	fs.IntVar(&c.Size, "size", 224, "nominal image side in pixels")
	fs.Int64Var(&c.Seed, "seed", 13, "generator seed")
	fs.IntVar(&c.Reps, "reps", 3, "full runs and refreshes, alternated")
	fs.IntVar(&c.K, "k", 100, "neighbours per query")
	fs.Float64Var(&c.Added, "added", 0.005, "fraction of rows added by the change")
	fs.Float64Var(&c.Replaced, "replaced", 0.0025, "fraction of rows whose image is replaced")
	fs.Float64Var(&c.Removed, "removed", 0.0025, "fraction of rows removed")
	fs.StringVar(&c.Model, "model", "models/zoo/stir-tiny/embedder.json", "embedder")
	fs.StringVar(&c.PairModel, "pair_model", "models/zoo/stir-tiny/pairwise.json", "STIR pairwise model")
	fs.StringVar(&c.Work, "work", "out/bench", "working directory (catalogs and runs)")
	fs.StringVar(&c.Stir, "stir", "", "stir binary; empty: build it into --work")
	fs.StringVar(&c.JSON, "json", "", "results file; empty: WORK/bench-refresh.json")
	return runBench("refresh", fs, args, &c.Work, &c.JSON, func() error {
		if c.Products < 10 || c.Reps < 1 || c.K < 5 {
			return errors.New("--products must be ≥ 10, --reps ≥ 1 and --k ≥ 5 (the STIR head)")
		}
		return nil
	}, func(log io.Writer) (*refreshResult, error) { return measureRefresh(ctx, c, log) }, printRefresh)
}

func measureRefresh(ctx context.Context, c refreshConfig, log io.Writer) (*refreshResult, error) {
	res := &refreshResult{Config: c, runInfo: startRun()}
	defer res.finish()
	work := filepath.Join(c.Work, "refresh")
	bin, err := childStir(ctx, c.Stir, true, c.Work, log)
	if err != nil {
		return nil, err
	}
	before, after := filepath.Join(work, "catalog-before"), filepath.Join(work, "catalog-after")
	o := synth.DefaultOptions()
	o.Products, o.ViewsMin, o.ViewsMax, o.Size, o.Seed = c.Products, 3, 6, c.Size, c.Seed
	stamp, _ := json.Marshal(o)
	if old, _ := os.ReadFile(filepath.Join(before, stampFile)); !bytes.Equal(old, stamp) {
		fmt.Fprintf(log, "refresh: generating %d products into %s\n", c.Products, before)
		os.RemoveAll(work)
		if _, err := synth.Generate(before, o); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(before, stampFile), stamp, 0o644); err != nil {
			return nil, err
		}
	}
	rows, err := countRows(filepath.Join(before, synth.CatalogFile))
	if err != nil {
		return nil, err
	}
	res.Rows = rows
	frac := func(f float64) int { return max(1, int(f*float64(rows)+0.5)) }
	res.Changed = synth.Changes{Added: frac(c.Added), Replaced: frac(c.Replaced), Removed: frac(c.Removed), Seed: c.Seed, Generator: o}
	os.RemoveAll(after)
	changed, err := synth.Change(before, after, res.Changed)
	if err != nil {
		return nil, err
	}
	res.RowsNew = len(changed)
	job := func(catalog, out string, extra ...string) []string {
		return append([]string{"run", "--catalog", catalog, "--output", out, "--model", c.Model, "--pair_model", c.PairModel,
			"--k", strconv.Itoa(c.K), "--progress=false", "--latest", "none"}, extra...)
	}
	prev := filepath.Join(work, "run-before")
	if _, err := os.Stat(filepath.Join(prev, "metrics.json")); err != nil {
		fmt.Fprintf(log, "refresh: the run before the change, %s\n", prev)
		os.RemoveAll(prev)
		if _, err := runChild(ctx, bin, job(filepath.Join(before, synth.CatalogFile), prev), "embed: ", filepath.Join(work, "run-before.log")); err != nil {
			return nil, err
		}
	}
	out, full := filepath.Join(work, "run"), filepath.Join(work, "run-full")
	res.Identical = true
	for rep := range c.Reps {
		for _, kind := range []string{"full", "refresh"} {
			var extra []string
			if kind == "refresh" {
				extra = []string{"--previous", prev}
			}
			os.RemoveAll(out)
			fmt.Fprintf(log, "refresh: rep %d, %s run\n", rep+1, kind)
			run, err := runChild(ctx, bin, job(filepath.Join(after, synth.CatalogFile), out, extra...), "embed: ",
				filepath.Join(work, fmt.Sprintf("%s-%d.log", kind, rep+1)))
			if err != nil {
				return res, err
			}
			res.Runs = append(res.Runs, parseRefreshRun(kind, rep+1, run))
			if kind == "full" {
				os.RemoveAll(full)
				if err := os.Rename(out, full); err != nil {
					return res, err
				}
			} else if diff := differingFiles(full, out); len(diff) > 0 {
				res.Identical = false
				fmt.Fprintf(log, "refresh: rep %d: files differ from the full run's: %s\n", rep+1, strings.Join(diff, ", "))
			}
		}
	}
	var walls [2][]float64
	var emb, pairs [2]int64
	for _, r := range res.Runs {
		i := 0
		if r.Kind == "refresh" {
			i = 1
		}
		walls[i] = append(walls[i], r.WallS)
		emb[i] += r.Embedded
		pairs[i] += r.Pairs
	}
	res.Wall.Full, res.Wall.Refresh = newStat(walls[0]), newStat(walls[1])
	res.Wall.Ratio = div(res.Wall.Refresh.Median, res.Wall.Full.Median)
	res.EmbedRatio, res.PairsRatio = div(float64(emb[1]), float64(emb[0])), div(float64(pairs[1]), float64(pairs[0]))
	return res, nil
}

var (
	stageDone     = regexp.MustCompile(`(?m)^(\w+): done in (\S+)$`)
	embeddedLine  = regexp.MustCompile(`(?m)^\s+embedded\s+(\d+)`)
	embeddingLine = regexp.MustCompile(`(?m)^\s+embeddings\s+(\d+)`)
	pairsLine     = regexp.MustCompile(`(?m)^\s+pairs\s+(\d+)\s+scored`)
	searchedLine  = regexp.MustCompile(`(?m)^\s+(?:searched|queries)\s+(\d+)`)
)

// parseRefreshRun reads a run's work and stage times from its summary.
func parseRefreshRun(kind string, rep int, run childRun) refreshRun {
	r := refreshRun{Kind: kind, Rep: rep, childRun: run, StagesS: map[string]float64{}}
	num := func(re *regexp.Regexp) int64 {
		if m := re.FindStringSubmatch(run.Stdout); m != nil {
			n, _ := strconv.ParseInt(m[1], 10, 64)
			return n
		}
		return 0
	}
	if r.Embedded = num(embeddedLine); kind == "full" {
		r.Embedded = num(embeddingLine)
	}
	r.Pairs = num(pairsLine)
	if kind == "refresh" {
		r.Searched = num(regexp.MustCompile(`(?m)^\s+searched\s+(\d+)`))
	} else {
		r.Searched = num(searchedLine)
	}
	for _, m := range stageDone.FindAllStringSubmatch(run.Stdout, -1) {
		if d, err := parseDuration(m[2]); err == nil {
			r.StagesS[m[1]] = d
		}
	}
	return r
}

// differingFiles lists the files that differ between two run directories (metrics.json
// apart from its work counts).
func differingFiles(a, b string) []string {
	var out []string
	seen := map[string]bool{}
	filepath.WalkDir(a, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(a, p)
		seen[rel] = true
		x, _ := os.ReadFile(p)
		y, err := os.ReadFile(filepath.Join(b, rel))
		if err == nil && rel == "metrics.json" {
			x, y = withoutWork(x), withoutWork(y)
		}
		if err != nil || !bytes.Equal(x, y) {
			out = append(out, rel)
		}
		return nil
	})
	filepath.WalkDir(b, func(p string, d os.DirEntry, err error) error {
		if rel, _ := filepath.Rel(b, p); err == nil && !d.IsDir() && !seen[rel] && !strings.HasPrefix(rel, "refresh") {
			out = append(out, rel+" (refresh only)")
		}
		return nil
	})
	return out
}

func withoutWork(data []byte) []byte {
	if out, err := metrics.WithoutWork(data); err == nil {
		return out
	}
	return data
}

func printRefresh(w io.Writer, r *refreshResult) {
	fmt.Fprintf(w, "refresh: %d rows → %d (added %d, replaced %d, removed %d), %d rep(s), load %s → %s\n",
		r.Rows, r.RowsNew, r.Changed.Added, r.Changed.Replaced, r.Changed.Removed, len(r.Runs)/2, loadString(r.LoadStart), loadString(r.LoadEnd))
	fmt.Fprintf(w, "  %-8s %8s %10s %10s %10s  %s\n", "run", "wall s", "embedded", "pairs", "searched", "stages (s)")
	for _, run := range r.Runs {
		var st []string
		for _, s := range []string{"embed", "neighbors", "rerank"} {
			st = append(st, fmt.Sprintf("%s %.1f", s, run.StagesS[s]))
		}
		fmt.Fprintf(w, "  %-8s %8.1f %10d %10d %10d  %s\n", run.Kind, run.WallS, run.Embedded, run.Pairs, run.Searched, strings.Join(st, ", "))
	}
	fmt.Fprintf(w, "  wall: full %.1f s, refresh %.1f s (medians): ratio %.3f\n", r.Wall.Full.Median, r.Wall.Refresh.Median, r.Wall.Ratio)
	fmt.Fprintf(w, "  work: embedding %.4f, pair scoring %.4f of the full run's\n", r.EmbedRatio, r.PairsRatio)
	fmt.Fprintf(w, "  files identical to the full run's: %t\n", r.Identical)
}

// parseDuration reads a summary's duration ("1.5s", "263ms").
func parseDuration(s string) (float64, error) {
	d, err := time.ParseDuration(s)
	return d.Seconds(), err
}

// countRows counts a CSV catalog's rows.
func countRows(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		return 0, err
	}
	return len(recs) - 1, nil
}
