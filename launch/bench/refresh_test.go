package main

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
)

func TestBenchRefreshEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the stir program")
	}
	work := t.TempDir()
	var log bytes.Buffer
	c := refreshConfig{Products: 40, Size: 64, Seed: 3, Reps: 1, K: 20, Added: 0.02, Replaced: 0.02, Removed: 0.02,
		Model: tinyEmbedModel, PairModel: tinyPairModel, Work: work}
	res, err := measureRefresh(context.Background(), c, &log)
	if err != nil {
		t.Fatalf("%v\nlog:\n%s", err, log.String())
	}
	if !res.Identical || len(res.Runs) != 2 || res.Runs[0].Kind != "full" || res.Runs[1].Kind != "refresh" {
		t.Fatalf("identical %t, runs %+v: want a full run and a refresh with the same files", res.Identical, res.Runs)
	}
	full, ref := res.Runs[0], res.Runs[1]
	if full.Embedded != int64(res.RowsNew) || ref.Embedded != int64(res.Changed.Added+res.Changed.Replaced) {
		t.Errorf("embedded %d (full) and %d (refresh), want %d and %d", full.Embedded, ref.Embedded, res.RowsNew, res.Changed.Added+res.Changed.Replaced)
	}
	if full.Pairs <= 0 || ref.Pairs >= full.Pairs || res.PairsRatio <= 0 || res.PairsRatio >= 1 || res.EmbedRatio >= 1 {
		t.Errorf("pairs %d (full) and %d (refresh), ratios %.3f and %.3f: want less work in the refresh", full.Pairs, ref.Pairs, res.EmbedRatio, res.PairsRatio)
	}
	if full.StagesS["rerank"] <= 0 || ref.StagesS["embed"] <= 0 {
		t.Errorf("stage times %v and %v", full.StagesS, ref.StagesS)
	}
	var out bytes.Buffer
	printRefresh(&out, res)
	checkReport(t, out.String(), "wall: full", "work: embedding", "files identical to the full run's: true")
	if back := jsonRoundTrip(t, filepath.Join(work, "r.json"), res); back.Wall.Ratio != res.Wall.Ratio || len(back.Runs) != 2 {
		t.Errorf("results JSON round trip lost data")
	}
}
