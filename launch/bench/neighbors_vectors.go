package main

// The benchmark's data: seeded random unit vectors, their file and the embeddings output made of them.

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/stirpipe/stirpipe/schemas/blob"
	"github.com/stirpipe/stirpipe/schemas/catalog"
	"github.com/stirpipe/stirpipe/schemas/embeddings"
)

// rowIDs returns the item ids of rows 0…n−1: "i%06d", so that id order is row order.
func rowIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = rowID(i)
	}
	return ids
}

func rowID(row int) string { return fmt.Sprintf("i%06d", row) }

// parseRowID inverts rowID.
func parseRowID(id string) (int, error) {
	s, ok := strings.CutPrefix(id, "i")
	n, err := strconv.Atoi(s)
	if !ok || err != nil || n < 0 {
		return 0, fmt.Errorf("item id %q is not i<row>", id)
	}
	return n, nil
}

// vectorsMeta describes X.f32 in its side file, so that a file from other options is not
// reused.
type vectorsMeta struct {
	Rows      int    `json:"rows"`
	Dim       int    `json:"dim"`
	Seed      uint64 `json:"seed"`
	Generator string `json:"generator"`
}

// generatorName names randomVectors' method; change it when the method changes.
const generatorName = "pcg(seed,0x5eed) normal, float64 L2-normalised, rounded to float32"

// randomVectors returns n unit vectors of dimension d, row-major: Gaussian components from a
// PCG seeded with seed, normalised in float64, then rounded to float32.
func randomVectors(n, d int, seed uint64) []float32 {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	x := make([]float32, n*d)
	row := make([]float64, d)
	for i := range n {
		var sq float64
		for j := range row {
			row[j] = rng.NormFloat64()
			sq += row[j] * row[j]
		}
		inv := 1 / math.Sqrt(sq)
		for j, v := range row {
			x[i*d+j] = float32(v * inv)
		}
	}
	return x
}

// encodeF32 returns x as little-endian float32 bytes.
func encodeF32(x []float32) []byte {
	b := make([]byte, 4*len(x))
	for i, v := range x {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

// decodeF32 parses little-endian float32 bytes.
func decodeF32(b []byte) []float32 {
	x := make([]float32, len(b)/4)
	for i := range x {
		x[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return x
}

// prepareVectors returns the benchmark's vectors: WORK/X.f32 when its side file says it was
// generated with these options, else generated and written. It also makes sure the
// embeddings output of the same vectors exists.
func prepareVectors(ctx context.Context, c neighborsConfig, log io.Writer) ([]float32, *dataInfo, error) {
	info := &dataInfo{File: filepath.Join(c.Work, "X.f32"), EmbFiles: c.Files}
	want := vectorsMeta{Rows: c.Rows, Dim: c.Dim, Seed: c.Seed, Generator: generatorName}
	metaPath := info.File + ".json"
	var raw []byte
	if mb, err := os.ReadFile(metaPath); err == nil {
		var got vectorsMeta
		if json.Unmarshal(mb, &got) == nil && got == want {
			if b, err := os.ReadFile(info.File); err == nil && len(b) == 4*c.Rows*c.Dim {
				raw, info.Reused = b, true
			}
		}
	}
	var x []float32
	if raw != nil {
		x = decodeF32(raw)
		fmt.Fprintf(log, "data: reusing %s (%d × %d, seed %d)\n", info.File, c.Rows, c.Dim, c.Seed)
	} else {
		fmt.Fprintf(log, "data: generating %d random unit vectors of dimension %d (seed %d) into %s …\n", c.Rows, c.Dim, c.Seed, info.File)
		x = randomVectors(c.Rows, c.Dim, c.Seed)
		raw = encodeF32(x)
		if err := blob.WriteFile(ctx, info.File, raw); err != nil {
			return nil, nil, fmt.Errorf("writing the vectors: %w", err)
		}
		if err := writeJSON(metaPath, want); err != nil {
			return nil, nil, err
		}
	}
	sum := sha256.Sum256(raw)
	info.SHA256 = hex.EncodeToString(sum[:])
	info.Embeddings = filepath.Join(c.Work, fmt.Sprintf("embeddings-%dx%d-seed%d-%dfiles", c.Rows, c.Dim, c.Seed, c.Files))
	reused, err := prepareEmbeddings(ctx, info.Embeddings, x, c.Dim, c.Files, info.File, info.SHA256)
	if err != nil {
		return nil, nil, err
	}
	info.EmbReused = reused
	if reused {
		fmt.Fprintf(log, "data: reusing the embeddings output %s\n", info.Embeddings)
	} else {
		fmt.Fprintf(log, "data: wrote the embeddings output %s (%d files)\n", info.Embeddings, c.Files)
	}
	return x, info, nil
}

// vectorsProvenance is the embeddings provenance of the benchmark's vectors; the catalog
// snapshot is the SHA-256 of X.f32, so that an output of other vectors is not reused.
func vectorsProvenance(dim int, file, sha string) embeddings.Provenance {
	return embeddings.Provenance{ModelName: "random-unit-vectors", Dim: dim, Normalized: true,
		Distance: "euclidean", CatalogURI: file, CatalogSnapshot: "sha256:" + sha,
		Producer: "stirpipe bench neighbors"}
}

// vectorRecord is row i as an embeddings record: a validation row that is both a query and
// a gallery item (Stanford Online Products style), labelled as products of 5 views.
func vectorRecord(x []float32, dim, i int) embeddings.Record {
	id := rowID(i)
	return embeddings.Record{
		Row: catalog.Row{ID: id, Line: int64(i) + 2, Label: int64(i / 5), Path: "random/" + id + ".jpg",
			Split: catalog.SplitValidation, IsQuery: true, IsGallery: true},
		Embedding: x[i*dim : (i+1)*dim],
	}
}

// prepareEmbeddings writes x as an embeddings output of files shards of consecutive rows
// (so that manifest order, file order and id order are all row order), unless dir already
// holds that output. It reports whether it was reused.
func prepareEmbeddings(ctx context.Context, dir string, x []float32, dim, files int, file, sha string) (bool, error) {
	prov := vectorsProvenance(dim, file, sha)
	n := len(x) / dim
	if m, err := embeddings.ReadManifest(ctx, dir); err == nil &&
		m.Rows == int64(n) && len(m.Shards) == files && m.Provenance == prov {
		return true, nil
	}
	if err := os.RemoveAll(dir); err != nil {
		return false, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, err
	}
	per := (n + files - 1) / files
	var infos []embeddings.ShardInfo
	for s := range files {
		lo, hi := s*per, min((s+1)*per, n)
		recs := make([]embeddings.Record, 0, hi-lo)
		for i := lo; i < hi; i++ {
			recs = append(recs, vectorRecord(x, dim, i))
		}
		info, err := embeddings.WriteShard(ctx, filepath.Join(dir, embeddings.ShardName(s, files)), recs, prov)
		if err != nil {
			return false, err
		}
		infos = append(infos, info)
	}
	return false, embeddings.WriteManifest(ctx, dir, embeddings.NewManifest(prov, infos))
}
