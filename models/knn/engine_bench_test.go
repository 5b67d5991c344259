package knn

import (
	"math/rand/v2"
	"testing"

	ortgo "github.com/yalue/onnxruntime_go"

	"github.com/stirpipe/stirpipe/models/ort"
)

// benchData returns n random unit vectors of dimension d (fixed seed).
func benchData(n, d int) []float32 {
	return randomVectors(rand.New(rand.NewPCG(1234, 1)), n, d, true, 1)
}

// BenchmarkSearch times a query tile of 1,024 against a gallery shard of 20,000 rows at
// D = 384, K = 100 (SOP-like unit vectors, self excluded), with the default blocking.
func BenchmarkSearch(b *testing.B) {
	const nq, ng, d = 1024, 20000, 384
	v := benchData(ng, d)
	id := ids("b", ng)
	ix, err := NewIndex(Gallery{IDs: id, Vectors: v, Dim: d})
	if err != nil {
		b.Fatal(err)
	}
	q := Query{IDs: id[:nq], Vectors: v[:nq*d], Dim: d}
	e := newEngine(b, Options{K: 100, Normalized: true, ExcludeSelf: true, Threads: 2})
	b.ResetTimer()
	for range b.N {
		if _, err := e.SearchIndex(q, ix); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(2*nq*ng*d*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

// BenchmarkScanUnit times the selection alone over a score block of 256 queries × 2,048
// gallery rows (inner products of random unit vectors at D = 384), K = 100.
func BenchmarkScanUnit(b *testing.B) {
	const rows, width, d, k = 256, 2048, 384, 100
	r := rand.New(rand.NewPCG(1, 2))
	scores := make([]float32, rows*width)
	for i := range scores {
		scores[i] = float32(r.NormFloat64() / 20) // ip of random unit vectors at D = 384: σ ≈ 1/√384
	}
	gseq := make([]int32, 1<<20)
	sel := make([]selector, rows)
	b.ResetTimer()
	for it := range b.N {
		// Successive chunks of one long gallery: the thresholds tighten as in a search.
		base := int32(it%400) * width
		if base == 0 {
			for i := range sel {
				sel[i].reset(k+extraCandidates, -1, -1, 1)
			}
		}
		for i := range sel {
			sel[i].scanUnit(scores[i*width:(i+1)*width], base, gseq)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/(rows*width), "ns/score")
}

// BenchmarkTopKGraph is the alternative engine: ONNX Runtime computes the scores and
// selects the top K' in the graph (graphs/topk.onnx: Gemm → TopK) on 2 intra-op threads,
// for the same tile and shard as BenchmarkSearch (K' = K + 1 for the self match; no
// exclusions, no exact tie resolution).
func BenchmarkTopKGraph(b *testing.B) {
	const nq, ng, d, k = 1024, 20000, 384, 101
	v := benchData(ng, d)
	so, _, err := ort.NewSessionOptions(ort.Options{IntraOpThreads: 2, InterOpThreads: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer so.Destroy()
	s, err := ortgo.NewDynamicAdvancedSession("graphs/topk.onnx", []string{"queries", "gallery", "k"}, []string{"values", "indices"}, so)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Destroy()
	qt, _ := ortgo.NewTensor(ortgo.NewShape(nq, d), v[:nq*d])
	gt, _ := ortgo.NewTensor(ortgo.NewShape(ng, d), v)
	kt, _ := ortgo.NewTensor(ortgo.NewShape(1), []int64{k})
	vt, _ := ortgo.NewEmptyTensor[float32](ortgo.NewShape(nq, k))
	it, _ := ortgo.NewEmptyTensor[int64](ortgo.NewShape(nq, k))
	for _, t := range []ortgo.Value{qt, gt, kt, vt, it} {
		defer t.Destroy()
	}
	b.ResetTimer()
	for range b.N {
		if err := s.Run([]ortgo.Value{qt, gt, kt}, []ortgo.Value{vt, it}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(2*nq*ng*d*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

// BenchmarkSqDist times the exact distance of one pair at D = 384.
func BenchmarkSqDist(b *testing.B) {
	v := benchData(2, 384)
	s := 0.0
	for range b.N {
		s += sqDist(v[:384], v[384:])
	}
	if s < 0 {
		b.Fatal(s)
	}
}

// BenchmarkExactDistances times the exact distances of 108 candidate rows scattered in a
// gallery of 60,000 rows (D = 384): the memory-bound step of finish.
func BenchmarkExactDistances(b *testing.B) {
	const n, d = 60000, 384
	v := benchData(n, d)
	ix, err := NewIndex(Gallery{IDs: ids("e", n), Vectors: v, Dim: d})
	if err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(3, 3))
	h := make([]entry, 108)
	b.ResetTimer()
	for it := range b.N {
		for i := range h {
			h[i].idx = int32(r.IntN(n))
		}
		exactDistances(v[(it%n)*d:(it%n+1)*d], ix, h)
	}
}
