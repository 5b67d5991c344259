// Package lists defines the neighbour-list files of the neighbours and rerank stages:
// one row per query (its id, label, category and sequence, and n_relevant, the number of
// gallery items relevant to it) with its ranked neighbours as list columns (ids, labels,
// distances ascending); a reranked file adds the raw STIR pair scores of the reranked head.
// Before and after reranking the columns are the same but for pair_scores, so the evaluate
// stage reads either.
//
// Files are Parquet by default (WriteShard) or Arrow IPC on request (WriteIPCShard), sorted
// by query id, published atomically, and the same records always give the same bytes. A
// complete output is a directory of shards plus _manifest.json, written last; Open reads it.
// Provenance (stage, embeddings and their snapshot, catalog and its snapshot, model, k,
// distance, engine, exclusions, and for reranked files the pair model, top_n and the
// neighbours output they were computed from) is stored under "stir." keys in each file's
// metadata and in the manifest. Every record is validated when written and when read.
//
// The neighbours transform writes one partial file per (query tile, gallery shard) under
// the output's _tmp/ directory (stage "partial", same schema), merges the partials of a
// tile into its final file with MergeFiles, and removes _tmp/ with RemoveTmp at the end. A
// partial's n_relevant counts its gallery shard only; merging sums them.
//
// DuckDB reads the list columns as VARCHAR[], BIGINT[] and FLOAT[]; for example
// SELECT query_id, unnest(neighbor_ids), unnest(distances) FROM 'part-*.parquet'.
package lists

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/stirpipe/stirpipe/schemas/internal/pqfile"
)

// FormatV1 identifies this layout in the manifest and in each file's metadata.
const FormatV1 = "stir.neighbors/v1"

// Stages of a neighbour file.
const (
	// StageNeighbors: exact top-k lists from the neighbours stage.
	StageNeighbors = "neighbors"
	// StageReranked: lists whose head was reranked by the STIR pairwise model.
	StageReranked = "reranked"
	// StagePartial: the top-k of a query tile within one gallery shard (n_relevant counted
	// within that shard too), merged into a StageNeighbors file and never listed in a
	// manifest.
	StagePartial = "partial"
)

// Exclusions that a neighbours stage can apply (method §3); Provenance.Exclusions lists
// those applied, comma-separated, in this order.
const (
	// ExcludeSelf removes the query's own row from its gallery.
	ExcludeSelf = "self"
	// ExcludeSequence removes gallery rows with the query's sequence value.
	ExcludeSequence = "sequence"
)

// File name extensions, which choose the format.
const (
	// ExtParquet marks a Parquet file (the default).
	ExtParquet = ".parquet"
	// ExtArrow marks an Arrow IPC file.
	ExtArrow = ".arrow"
)

// Record is the ranked neighbour list of one query.
type Record struct {
	// QueryID is the query's item id.
	QueryID string
	// QueryLabel is the query's label.
	QueryLabel int64
	// QueryCategory is the query's category ("" when it has none; stored as null).
	QueryCategory string
	// QuerySequence is the query's sequence ("" when it has none; stored as null).
	QuerySequence string
	// NRelevant is the number of gallery items relevant to the query (same label) in the
	// whole searched gallery after the exclusions, not only among the neighbours: the n of
	// the evaluation's precision (method §5). The neighbours stage counts it, reranking keeps
	// it. It is ≥ 0 and ≥ the number of neighbours with the query's label. In a partial file
	// it counts the file's gallery shard only (Merge sums the shards' counts).
	NRelevant int64
	// NeighborIDs are the item ids of the neighbours, best first; at most Provenance.K,
	// possibly none (a query whose gallery is empty after exclusions).
	NeighborIDs []string
	// NeighborLabels are the neighbours' labels, one per id.
	NeighborLabels []int64
	// Distances are the neighbours' distances, one per id, finite and ascending
	// (non-decreasing); ≥ 0 except in reranked files, where OML's rescaling of the head may
	// push it slightly below zero.
	Distances []float32
	// PairScores are set only in reranked files: the raw STIR scores (sigmoid of the pair
	// model's logit, in [0, 1], ascending) of the reranked head, in the new order of the
	// head, so len = min(TopN, len(NeighborIDs)); empty when the reranker kept the query's
	// original list (an image of its head could not be read; see the rerank rejects). Nil in
	// other files.
	PairScores []float32
}

// ShardInfo describes one written file, as listed in the manifest.
type ShardInfo = pqfile.Info

// Provenance says how neighbour lists were made; it is stored in every file's metadata and
// in the manifest, and must be identical across the shards of one output.
type Provenance struct {
	// Stage is StageNeighbors, StageReranked or StagePartial.
	Stage string `json:"stage"`
	// EmbeddingsURI is the embeddings output the lists were computed from.
	EmbeddingsURI string `json:"embeddings_uri"`
	// EmbeddingsSnapshot is the hex SHA-256 of that output's _manifest.json bytes.
	EmbeddingsSnapshot string `json:"embeddings_snapshot"`
	// CatalogURI is the catalog the embeddings came from, copied from their provenance, so
	// that the evaluation can check the catalog it is given.
	CatalogURI string `json:"catalog_uri"`
	// CatalogSnapshot identifies that catalog's content, copied from the embeddings'
	// provenance.
	CatalogSnapshot string `json:"catalog_snapshot"`
	// ModelName is the embedding model's name.
	ModelName string `json:"model_name"`
	// ModelSHA256 is the hex SHA-256 of the embedding model's ONNX file.
	ModelSHA256 string `json:"model_sha256"`
	// K is the most neighbours kept per query.
	K int `json:"k"`
	// Distance is how embeddings were compared, e.g. "euclidean".
	Distance string `json:"distance"`
	// Engine names the search implementation, e.g. "exact".
	Engine string `json:"engine"`
	// ShardSize is the number of gallery items per gallery shard (0: not sharded).
	ShardSize int `json:"shard_size"`
	// Exclusions lists the exclusions applied, e.g. "self,sequence" ("" for none).
	Exclusions string `json:"exclusions"`
	// PairModelName is the STIR pairwise model's name (reranked files only).
	PairModelName string `json:"pair_model_name"`
	// PairModelSHA256 is the hex SHA-256 of the pairwise model's ONNX file (reranked only).
	PairModelSHA256 string `json:"pair_model_sha256"`
	// TopN is the number of head neighbours reranked per query (reranked files only, ≥ 1).
	TopN int `json:"top_n"`
	// InputURI is the neighbours output a reranked file was computed from (reranked files
	// only, required there).
	InputURI string `json:"input_uri"`
	// InputSnapshot is the hex SHA-256 of that output's _manifest.json bytes (ManifestSHA256;
	// reranked files only, required there).
	InputSnapshot string `json:"input_snapshot"`
	// Producer names the program that wrote the output.
	Producer string `json:"producer"`
}

// Key-value metadata keys of a file.
const (
	keyFormat             = "stir.format"
	keyStage              = "stir.stage"
	keyEmbeddingsURI      = "stir.embeddings.uri"
	keyEmbeddingsSnapshot = "stir.embeddings.snapshot"
	keyCatalogURI         = "stir.catalog.uri"
	keyCatalogSnapshot    = "stir.catalog.snapshot"
	keyModelName          = "stir.model.name"
	keyModelSHA256        = "stir.model.sha256"
	keyK                  = "stir.neighbors.k"
	keyDistance           = "stir.neighbors.distance"
	keyEngine             = "stir.neighbors.engine"
	keyShardSize          = "stir.neighbors.shard_size"
	keyExclusions         = "stir.neighbors.exclusions"
	keyPairModelName      = "stir.pair_model.name"
	keyPairModelSHA256    = "stir.pair_model.sha256"
	keyTopN               = "stir.rerank.top_n"
	keyInputURI           = "stir.input.uri"
	keyInputSnapshot      = "stir.input.snapshot"
	keyProducer           = "stir.producer"
)

// Validate reports every problem of p at once.
func (p Provenance) Validate() error {
	var errs []error
	switch p.Stage {
	case StageNeighbors, StagePartial:
		if p.PairModelName != "" || p.PairModelSHA256 != "" || p.TopN != 0 {
			errs = append(errs, fmt.Errorf("provenance: stage %q has no pair model or top_n, got %q, %q, %d (only %q files do)",
				p.Stage, p.PairModelName, p.PairModelSHA256, p.TopN, StageReranked))
		}
		if p.InputURI != "" || p.InputSnapshot != "" {
			errs = append(errs, fmt.Errorf("provenance: stage %q has no input neighbours output, got input_uri %q and input_snapshot %q (only %q files do)",
				p.Stage, p.InputURI, p.InputSnapshot, StageReranked))
		}
	case StageReranked:
		if p.PairModelName == "" {
			errs = append(errs, errors.New("provenance: reranked file without a pair model name"))
		}
		if p.TopN < 1 {
			errs = append(errs, fmt.Errorf("provenance: top_n must be ≥ 1 in a reranked file, got %d", p.TopN))
		}
		if p.InputURI == "" {
			errs = append(errs, errors.New("provenance: reranked file without the URI of the neighbours output it reranks"))
		}
		if b, err := hex.DecodeString(p.InputSnapshot); err != nil || len(b) != sha256.Size {
			errs = append(errs, fmt.Errorf("provenance: input snapshot %q of a reranked file is not 64 hex digits (the SHA-256 of the neighbours output's %s)",
				p.InputSnapshot, ManifestFile))
		}
	default:
		errs = append(errs, fmt.Errorf("provenance: stage is %q, want %q, %q or %q", p.Stage, StageNeighbors, StageReranked, StagePartial))
	}
	if p.ModelName == "" {
		errs = append(errs, errors.New("provenance: model name is empty"))
	}
	if p.K < 1 {
		errs = append(errs, fmt.Errorf("provenance: k must be ≥ 1, got %d", p.K))
	}
	if p.Distance == "" {
		errs = append(errs, errors.New("provenance: distance is empty"))
	}
	if p.ShardSize < 0 {
		errs = append(errs, fmt.Errorf("provenance: shard size must be ≥ 0, got %d", p.ShardSize))
	}
	if _, _, err := parseExclusions(p.Exclusions); err != nil {
		errs = append(errs, fmt.Errorf("provenance: %w", err))
	}
	return errors.Join(errs...)
}

// parseExclusions parses "", "self", "sequence" or "self,sequence".
func parseExclusions(s string) (self, sequence bool, err error) {
	switch s {
	case "":
	case ExcludeSelf:
		self = true
	case ExcludeSequence:
		sequence = true
	case ExcludeSelf + "," + ExcludeSequence:
		self, sequence = true, true
	default:
		err = fmt.Errorf("exclusions %q: want a comma-separated subset of %s,%s in that order, or empty", s, ExcludeSelf, ExcludeSequence)
	}
	return self, sequence, err
}

// reranked reports whether files of p have the pair_scores column.
func (p Provenance) reranked() bool { return p.Stage == StageReranked }

// keyValues returns p as ordered file metadata.
func (p Provenance) keyValues() (keys, values []string) {
	keys = []string{keyFormat, keyStage, keyEmbeddingsURI, keyEmbeddingsSnapshot,
		keyCatalogURI, keyCatalogSnapshot, keyModelName, keyModelSHA256, keyK, keyDistance,
		keyEngine, keyShardSize, keyExclusions, keyPairModelName, keyPairModelSHA256, keyTopN,
		keyInputURI, keyInputSnapshot, keyProducer}
	values = []string{FormatV1, p.Stage, p.EmbeddingsURI, p.EmbeddingsSnapshot,
		p.CatalogURI, p.CatalogSnapshot, p.ModelName, p.ModelSHA256, strconv.Itoa(p.K), p.Distance,
		p.Engine, strconv.Itoa(p.ShardSize), p.Exclusions, p.PairModelName, p.PairModelSHA256, strconv.Itoa(p.TopN),
		p.InputURI, p.InputSnapshot, p.Producer}
	return keys, values
}

// provenanceFromKV parses and validates file metadata written by keyValues.
func provenanceFromKV(kv map[string]string) (Provenance, error) {
	if f, ok := kv[keyFormat]; !ok || f != FormatV1 {
		return Provenance{}, fmt.Errorf("metadata %s is %q, want %q (not a neighbour file)", keyFormat, f, FormatV1)
	}
	md := pqfile.NewMetadata(kv)
	p := Provenance{
		Stage:              md.String(keyStage),
		EmbeddingsURI:      md.String(keyEmbeddingsURI),
		EmbeddingsSnapshot: md.String(keyEmbeddingsSnapshot),
		CatalogURI:         md.String(keyCatalogURI),
		CatalogSnapshot:    md.String(keyCatalogSnapshot),
		ModelName:          md.String(keyModelName),
		ModelSHA256:        md.String(keyModelSHA256),
		K:                  md.Int(keyK),
		Distance:           md.String(keyDistance),
		Engine:             md.String(keyEngine),
		ShardSize:          md.Int(keyShardSize),
		Exclusions:         md.String(keyExclusions),
		PairModelName:      md.String(keyPairModelName),
		PairModelSHA256:    md.String(keyPairModelSHA256),
		TopN:               md.Int(keyTopN),
		InputURI:           md.String(keyInputURI),
		InputSnapshot:      md.String(keyInputSnapshot),
		Producer:           md.String(keyProducer),
	}
	if err := md.Err(); err != nil {
		return p, err
	}
	return p, p.Validate()
}

// diffProvenance lists the metadata keys whose values differ between got and want.
func diffProvenance(got, want Provenance) error {
	var errs []error
	keys, g := got.keyValues()
	_, w := want.keyValues()
	for i, k := range keys {
		if g[i] != w[i] {
			errs = append(errs, fmt.Errorf("metadata %s is %q, want %q", k, g[i], w[i]))
		}
	}
	return errors.Join(errs...)
}

// Column names.
const (
	colQueryID        = "query_id"
	colQueryLabel     = "query_label"
	colQueryCategory  = "query_category"
	colQuerySequence  = "query_sequence"
	colNRelevant      = "n_relevant"
	colNeighborIDs    = "neighbor_ids"
	colNeighborLabels = "neighbor_labels"
	colDistances      = "distances"
	colPairScores     = "pair_scores"
)

// listOf is a list of non-null elements named "element", the name Parquet gives list
// elements, so that the schema reads back as written.
func listOf(t arrow.DataType) arrow.DataType {
	return arrow.ListOfField(arrow.Field{Name: "element", Type: t})
}

// Schema returns the Arrow schema of a file with prov as its key-value metadata. The
// pair_scores column is present only when prov.Stage is StageReranked.
func Schema(prov Provenance) *arrow.Schema {
	keys, values := prov.keyValues()
	md := arrow.NewMetadata(keys, values)
	fields := []arrow.Field{
		{Name: colQueryID, Type: arrow.BinaryTypes.String},
		{Name: colQueryLabel, Type: arrow.PrimitiveTypes.Int64},
		{Name: colQueryCategory, Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: colQuerySequence, Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: colNRelevant, Type: arrow.PrimitiveTypes.Int64},
		{Name: colNeighborIDs, Type: listOf(arrow.BinaryTypes.String)},
		{Name: colNeighborLabels, Type: listOf(arrow.PrimitiveTypes.Int64)},
		{Name: colDistances, Type: listOf(arrow.PrimitiveTypes.Float32)},
	}
	if prov.reranked() {
		fields = append(fields, arrow.Field{Name: colPairScores, Type: listOf(arrow.PrimitiveTypes.Float32)})
	}
	return arrow.NewSchema(fields, &md)
}

// checker validates records against one provenance; it reuses its scratch map.
type checker struct {
	prov          Provenance
	excludeSelf   bool
	seenNeighbors map[string]int
}

func newChecker(prov Provenance) *checker {
	self, _, _ := parseExclusions(prov.Exclusions)
	return &checker{prov: prov, excludeSelf: self, seenNeighbors: map[string]int{}}
}

func finite(v float32) bool { return !math.IsNaN(float64(v)) && !math.IsInf(float64(v), 0) }

// check returns every problem of r (the record at index i of its file or slice).
func (c *checker) check(i int, r *Record) []error {
	if r.QueryID == "" {
		return []error{fmt.Errorf("record %d: empty query id", i)}
	}
	q := r.QueryID
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("query %q: "+format, append([]any{q}, args...)...))
	}
	n := len(r.NeighborIDs)
	if len(r.NeighborLabels) != n || len(r.Distances) != n {
		add("%d neighbor ids, %d labels and %d distances, want equal lengths", n, len(r.NeighborLabels), len(r.Distances))
		return errs
	}
	if n > c.prov.K {
		add("%d neighbours, more than k = %d", n, c.prov.K)
	}
	var hits int64
	for _, l := range r.NeighborLabels {
		if l == r.QueryLabel {
			hits++
		}
	}
	if r.NRelevant < 0 || r.NRelevant < hits {
		add("n_relevant is %d, want ≥ 0 and ≥ the %d neighbours with the query's label %d", r.NRelevant, hits, r.QueryLabel)
	}
	for j, d := range r.Distances {
		if !finite(d) {
			add("distances[%d] is %v, want a finite number", j, d)
			break
		}
		if d < 0 && !c.prov.reranked() {
			add("distances[%d] is %v, want ≥ 0", j, d)
			break
		}
		if j > 0 && d < r.Distances[j-1] {
			add("distances[%d] = %v is less than distances[%d] = %v, want ascending distances", j, d, j-1, r.Distances[j-1])
			break
		}
	}
	clear(c.seenNeighbors)
	for j, id := range r.NeighborIDs {
		if id == "" {
			add("neighbor_ids[%d] is empty", j)
			continue
		}
		if prev, dup := c.seenNeighbors[id]; dup {
			add("neighbour %q appears twice, at ranks %d and %d", id, prev, j)
		}
		c.seenNeighbors[id] = j
		if id == q && c.excludeSelf {
			add("the query is its own neighbour at rank %d, but exclusions %q remove it", j, c.prov.Exclusions)
		}
	}
	if !c.prov.reranked() {
		if len(r.PairScores) != 0 {
			add("%d pair scores in a %q file (only %q files have them)", len(r.PairScores), c.prov.Stage, StageReranked)
		}
		return errs
	}
	if want := min(c.prov.TopN, n); len(r.PairScores) != want && len(r.PairScores) != 0 {
		add("%d pair scores, want min(top_n %d, %d neighbours) = %d", len(r.PairScores), c.prov.TopN, n, want)
	}
	for j, s := range r.PairScores {
		if !finite(s) || s < 0 || s > 1 {
			add("pair_scores[%d] is %v, want a score in [0, 1]", j, s)
			break
		}
		if j > 0 && s < r.PairScores[j-1] {
			add("pair_scores[%d] = %v is less than pair_scores[%d] = %v, want the head in ascending score order", j, s, j-1, r.PairScores[j-1])
			break
		}
	}
	return errs
}

// checkRecords validates recs and their query ids' uniqueness.
func checkRecords(recs []Record, prov Provenance) error {
	c := newChecker(prov)
	var errs []error
	seen := make(map[string]int, len(recs))
	for i := range recs {
		r := &recs[i]
		errs = append(errs, c.check(i, r)...)
		if r.QueryID == "" {
			continue
		}
		if prev, dup := seen[r.QueryID]; dup {
			errs = append(errs, fmt.Errorf("query %q: duplicate query id (records %d and %d)", r.QueryID, prev, i))
		}
		seen[r.QueryID] = i
	}
	return pqfile.JoinLimited(errs, maxProblems)
}

// maxProblems caps how many problems one error lists.
const maxProblems = 20

// compare orders records by query id.
func compare(a, b *Record) int { return strings.Compare(a.QueryID, b.QueryID) }
