package lists

import (
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stirpipe/stirpipe/schemas/internal/duckdbtest"
)

// duckFile is what testdata/check_neighbors.mjs prints for one file.
type duckFile struct {
	File    string            `json:"file"`
	Rows    int64             `json:"rows"`
	Columns map[string]string `json:"columns"`
	KV      map[string]string `json:"kv"`
	Records []struct {
		QueryID        string    `json:"query_id"`
		QueryLabel     string    `json:"query_label"` // BIGINT comes as a JSON string
		QueryCategory  *string   `json:"query_category"`
		QuerySequence  *string   `json:"query_sequence"`
		NRelevant      string    `json:"n_relevant"`
		NeighborIDs    []string  `json:"neighbor_ids"`
		NeighborLabels []string  `json:"neighbor_labels"`
		Distances      []float64 `json:"distances"`
		PairScores     []float64 `json:"pair_scores"`
	} `json:"records"`
	Pairs []struct {
		QueryID    string  `json:"query_id"`
		NeighborID string  `json:"neighbor_id"`
		Label      string  `json:"label"`
		Distance   float64 `json:"distance"`
	} `json:"pairs"`
	Lengths []struct {
		QueryID   string `json:"query_id"`
		N         string `json:"n"`
		NRelevant string `json:"n_relevant"`
		Hits      string `json:"hits"`
	} `json:"lengths"`
}

func runDuckDB(t *testing.T, files ...string) []duckFile {
	t.Helper()
	out := duckdbtest.Run(t, filepath.Join("testdata", "check_neighbors.mjs"), files...)
	var got []duckFile
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("decode check_neighbors.mjs output: %v\n%.2000s", err, out)
	}
	if len(got) != len(files) {
		t.Fatalf("check_neighbors.mjs reported %d files, want %d", len(got), len(files))
	}
	return got
}

// floatsEqual compares DuckDB's FLOAT values (exact doubles; JSON loses the sign of −0)
// with float32 values.
func floatsEqual(got []float64, want []float32) bool {
	if len(got) != len(want) {
		return false
	}
	for i, v := range got {
		if v != float64(want[i]) {
			return false
		}
	}
	return true
}

func TestDuckDBReadsListColumns(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	var files []string
	var wants [][]Record
	var provs []Provenance
	for _, stage := range []string{StageNeighbors, StageReranked} {
		prov := testProvenance(stage, 12)
		recs := sorted(makeRecords(40, prov, 21))
		uri := filepath.Join(dir, stage+".parquet")
		if _, err := WriteShard(ctx, uri, recs, prov); err != nil {
			t.Fatal(err)
		}
		files, wants, provs = append(files, uri), append(wants, recs), append(provs, prov)
	}
	for fi, f := range runDuckDB(t, files...) {
		prov, want := provs[fi], wants[fi]
		wantCols := map[string]string{
			"query_id": "VARCHAR", "query_label": "BIGINT", "query_category": "VARCHAR", "query_sequence": "VARCHAR", "n_relevant": "BIGINT",
			"neighbor_ids": "VARCHAR[]", "neighbor_labels": "BIGINT[]", "distances": "FLOAT[]",
		}
		if prov.reranked() {
			wantCols["pair_scores"] = "FLOAT[]"
		}
		if len(f.Columns) != len(wantCols) {
			t.Errorf("%s: DuckDB columns %v, want %v", f.File, f.Columns, wantCols)
		}
		for c, typ := range wantCols {
			if f.Columns[c] != typ {
				t.Errorf("%s: DuckDB column %s is %q, want %q", f.File, c, f.Columns[c], typ)
			}
		}
		keys, values := prov.keyValues()
		for i, k := range keys {
			if f.KV[k] != values[i] {
				t.Errorf("%s: DuckDB sees metadata %s = %q, want %q", f.File, k, f.KV[k], values[i])
			}
		}
		if f.Rows != int64(len(want)) || len(f.Records) != len(want) || len(f.Lengths) != len(want) {
			t.Fatalf("%s: DuckDB %d rows, %d records, %d lengths; want %d", f.File, f.Rows, len(f.Records), len(f.Lengths), len(want))
		}
		var pairs int
		for i, w := range want {
			g := f.Records[i]
			optional := func(p *string) string {
				if p == nil {
					return ""
				}
				return *p
			}
			labels := make([]string, len(w.NeighborLabels))
			for j, l := range w.NeighborLabels {
				labels[j] = strconv.FormatInt(l, 10)
			}
			if g.QueryID != w.QueryID || g.QueryLabel != strconv.FormatInt(w.QueryLabel, 10) ||
				optional(g.QueryCategory) != w.QueryCategory || optional(g.QuerySequence) != w.QuerySequence ||
				g.NRelevant != strconv.FormatInt(w.NRelevant, 10) ||
				(g.QueryCategory != nil && *g.QueryCategory == "") ||
				!slices.Equal(g.NeighborIDs, w.NeighborIDs) || !slices.Equal(g.NeighborLabels, labels) ||
				!floatsEqual(g.Distances, w.Distances) || !floatsEqual(g.PairScores, w.PairScores) {
				t.Fatalf("%s row %d: DuckDB\n %+v\nwant %+v", f.File, i, g, w)
			}
			if f.Lengths[i].QueryID != w.QueryID || f.Lengths[i].N != strconv.Itoa(len(w.NeighborIDs)) {
				t.Errorf("%s: DuckDB len(neighbor_ids) of %s is %s, want %d", f.File, f.Lengths[i].QueryID, f.Lengths[i].N, len(w.NeighborIDs))
			}
			// The hits DuckDB counts in the list are what n_relevant bounds.
			hits := 0
			for _, l := range w.NeighborLabels {
				if l == w.QueryLabel {
					hits++
				}
			}
			nRel, err1 := strconv.ParseInt(f.Lengths[i].NRelevant, 10, 64)
			dHits, err2 := strconv.Atoi(f.Lengths[i].Hits)
			if err1 != nil || err2 != nil || dHits != hits || nRel != w.NRelevant || nRel < int64(dHits) {
				t.Errorf("%s: DuckDB sees %s with n_relevant %s and %s hits, want %d and %d", f.File, w.QueryID, f.Lengths[i].NRelevant, f.Lengths[i].Hits, w.NRelevant, hits)
			}
			pairs += len(w.NeighborIDs)
		}
		// unnest() zips the lists row by row: every (query, neighbour) pair once, with its
		// own label and distance.
		if len(f.Pairs) != pairs {
			t.Fatalf("%s: DuckDB unnest gave %d pairs, want %d", f.File, len(f.Pairs), pairs)
		}
		byQuery := map[string]Record{}
		for _, w := range want {
			byQuery[w.QueryID] = w
		}
		for _, p := range f.Pairs {
			w := byQuery[p.QueryID]
			j := slices.Index(w.NeighborIDs, p.NeighborID)
			if j < 0 || p.Label != strconv.FormatInt(w.NeighborLabels[j], 10) || p.Distance != float64(w.Distances[j]) {
				t.Fatalf("%s: DuckDB pair %+v is not in query %s's list", f.File, p, strings.Join(w.NeighborIDs, ","))
			}
		}
	}
}
