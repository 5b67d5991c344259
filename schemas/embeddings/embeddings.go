// Package embeddings defines the embeddings output of the embed stage: one Parquet file per
// shard (catalog columns, the catalog line and a fixed_size_list<float32>[D] embedding,
// sorted by item id) plus a JSON manifest, _manifest.json, written last.
//
// The embed pipeline groups records into N shards, calls WriteShard once per shard and
// WriteManifest once all shards are written; the presence of the manifest means the output
// is complete. Every file is published atomically and the same records always give the same
// bytes. Provenance (model name and hash, dimension, distance, normalisation, preprocessing,
// catalog snapshot) is stored in each file's key-value metadata under "stir." keys and in
// the manifest, and Open checks that they agree before anything is read.
//
// Each row records what its embedding was computed from, so that a later run can reuse it
// (pipelines' refresh): the image's fingerprint (image_fingerprint, "md5:" and the hex MD5 of
// the file's bytes, which Cloud Storage also keeps in an object's metadata) and its box
// (x_1…y_2); the model's hash and preprocessing, the same for every row, are in the
// provenance. An embedding is reused only when all four match. Files of the first layout
// (FormatV1, no fingerprint column) are still read; their rows are never reused.
//
// Readers other than this package (DuckDB, pyarrow) see the embedding as a list unless they
// use the stored Arrow schema; in DuckDB cast it: embedding::FLOAT[384].
package embeddings

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/stirpipe/stirpipe/schemas/catalog"
	"github.com/stirpipe/stirpipe/schemas/internal/pqfile"
)

// FormatV2 identifies this layout in the manifest and in each file's metadata; FormatV1 is
// the layout before image fingerprints, still read.
const (
	FormatV2 = "stir.embeddings/v2"
	FormatV1 = "stir.embeddings/v1"
)

// Record is one embedded catalog row.
type Record struct {
	// Row is the catalog row the embedding was computed from.
	Row catalog.Row
	// Fingerprint identifies the image bytes the embedding was computed from
	// (imageload.Fingerprint); "" when unknown (FormatV1 files).
	Fingerprint string
	// Embedding has exactly Provenance.Dim finite values.
	Embedding []float32
}

// ShardInfo describes one written shard file, as listed in the manifest.
type ShardInfo = pqfile.Info

// Provenance says where embeddings come from; it is stored in every shard's metadata and in
// the manifest, and must be identical across the shards of one output.
type Provenance struct {
	// ModelName is the model manifest's name, e.g. "vit-tiny-triplet".
	ModelName string `json:"model_name"`
	// ModelSHA256 is the hex SHA-256 of the ONNX file.
	ModelSHA256 string `json:"model_sha256"`
	// Dim is the embedding dimension.
	Dim int `json:"dim"`
	// Normalized says the embeddings are L2-normalised.
	Normalized bool `json:"normalized"`
	// Distance is how embeddings are compared, e.g. "euclidean".
	Distance string `json:"distance"`
	// Preprocess is the JSON of the model manifest's preprocess section.
	Preprocess string `json:"preprocess"`
	// CatalogURI is the catalog the rows came from.
	CatalogURI string `json:"catalog_uri"`
	// CatalogSnapshot identifies the catalog's content (e.g. its SHA-256).
	CatalogSnapshot string `json:"catalog_snapshot"`
	// Producer names the program that wrote the output, e.g. "stir-embed v0.1".
	Producer string `json:"producer"`
}

// Key-value metadata keys of a shard file.
const (
	keyFormat          = "stir.format"
	keyModelName       = "stir.model.name"
	keyModelSHA256     = "stir.model.sha256"
	keyDim             = "stir.model.dim"
	keyNormalized      = "stir.model.normalized"
	keyDistance        = "stir.model.distance"
	keyPreprocess      = "stir.model.preprocess"
	keyCatalogURI      = "stir.catalog.uri"
	keyCatalogSnapshot = "stir.catalog.snapshot"
	keyProducer        = "stir.producer"
)

// Validate reports every problem of p at once.
func (p Provenance) Validate() error {
	var errs []error
	if p.ModelName == "" {
		errs = append(errs, errors.New("provenance: model name is empty"))
	}
	if p.Dim < 1 {
		errs = append(errs, fmt.Errorf("provenance: dim must be ≥ 1, got %d", p.Dim))
	}
	if p.Distance == "" {
		errs = append(errs, errors.New("provenance: distance is empty"))
	}
	return errors.Join(errs...)
}

// keyValues returns p as ordered file metadata of the given format.
func (p Provenance) keyValues(format string) (keys, values []string) {
	keys = []string{keyFormat, keyModelName, keyModelSHA256, keyDim, keyNormalized, keyDistance,
		keyPreprocess, keyCatalogURI, keyCatalogSnapshot, keyProducer}
	values = []string{format, p.ModelName, p.ModelSHA256, strconv.Itoa(p.Dim),
		strconv.FormatBool(p.Normalized), p.Distance, p.Preprocess, p.CatalogURI,
		p.CatalogSnapshot, p.Producer}
	return keys, values
}

// provenanceFromKV parses file metadata written by keyValues.
func provenanceFromKV(kv map[string]string) (Provenance, error) {
	md := pqfile.NewMetadata(kv)
	var errFormat error
	if f := md.String(keyFormat); f != FormatV2 && f != FormatV1 && f != "" {
		errFormat = fmt.Errorf("metadata %s is %q, want %q (or the older %q)", keyFormat, f, FormatV2, FormatV1)
	}
	p := Provenance{
		ModelName:       md.String(keyModelName),
		ModelSHA256:     md.String(keyModelSHA256),
		Distance:        md.String(keyDistance),
		Preprocess:      md.String(keyPreprocess),
		CatalogURI:      md.String(keyCatalogURI),
		CatalogSnapshot: md.String(keyCatalogSnapshot),
		Producer:        md.String(keyProducer),
		Dim:             md.Int(keyDim),
		Normalized:      md.Bool(keyNormalized),
	}
	return p, errors.Join(errFormat, md.Err())
}

// Column names.
const (
	colItemID      = "item_id"
	colLabel       = "label"
	colPath        = "path"
	colSplit       = "split"
	colIsQuery     = "is_query"
	colIsGallery   = "is_gallery"
	colCategory    = "category"
	colSequence    = "sequence"
	colX1          = "x_1"
	colY1          = "y_1"
	colX2          = "x_2"
	colY2          = "y_2"
	colLine        = "line"
	colFingerprint = "image_fingerprint"
	colEmbedding   = "embedding"
)

// Schema returns the Arrow schema of a shard with dim-wide embeddings and meta as its
// key-value metadata. category and sequence are null when empty; x_1, y_1, x_2, y_2 are
// null when the row has no box; image_fingerprint is null when unknown.
func Schema(dim int, meta Provenance) *arrow.Schema { return schemaOf(FormatV2, dim, meta) }

// schemaOf is the schema of a shard of the given format.
func schemaOf(format string, dim int, meta Provenance) *arrow.Schema {
	keys, values := meta.keyValues(format)
	md := arrow.NewMetadata(keys, values)
	fields := []arrow.Field{
		{Name: colItemID, Type: arrow.BinaryTypes.String},
		{Name: colLabel, Type: arrow.PrimitiveTypes.Int64},
		{Name: colPath, Type: arrow.BinaryTypes.String},
		{Name: colSplit, Type: arrow.BinaryTypes.String},
		{Name: colIsQuery, Type: arrow.FixedWidthTypes.Boolean},
		{Name: colIsGallery, Type: arrow.FixedWidthTypes.Boolean},
		{Name: colCategory, Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: colSequence, Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: colX1, Type: arrow.PrimitiveTypes.Int64, Nullable: true},
		{Name: colY1, Type: arrow.PrimitiveTypes.Int64, Nullable: true},
		{Name: colX2, Type: arrow.PrimitiveTypes.Int64, Nullable: true},
		{Name: colY2, Type: arrow.PrimitiveTypes.Int64, Nullable: true},
		{Name: colLine, Type: arrow.PrimitiveTypes.Int64},
	}
	if format != FormatV1 {
		fields = append(fields, arrow.Field{Name: colFingerprint, Type: arrow.BinaryTypes.String, Nullable: true})
	}
	return arrow.NewSchema(append(fields,
		// "element" is the name Parquet gives list elements; using it here makes the schema
		// read back identical to the one written.
		arrow.Field{Name: colEmbedding, Type: arrow.FixedSizeListOfField(int32(dim),
			arrow.Field{Name: "element", Type: arrow.PrimitiveTypes.Float32})}), &md)
}
