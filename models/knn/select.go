package knn

import (
	"math"
	"slices"
	"sync/atomic"
)

// extraCandidates is how many candidates beyond K each query keeps, so that the K-th
// place can be settled exactly (see finish).
const extraCandidates = 8

// gemmErrorFactor bounds the error of a float32 GEMM inner product: |ip − ip̃| ≤
// (D+2)·2⁻²⁴·|q|·|g| whatever the summation order (first order, FMA or not), so the error
// of an approximate d² is at most gemmErrorFactor·(D+2)·|q|·|g|.
const gemmErrorFactor = 2.0 / (1 << 24)

// entry is a candidate row: while selecting, v is its key (larger = closer: the inner
// product for unit vectors, else 2·ip − |g|² rounded to float32); after finish, v is its
// exact distance.
type entry struct {
	v   float32
	idx int32
}

// selector collects the candidates of one query. Rows whose key passes the threshold are
// appended to a buffer; when it is full, a quickselect keeps the k largest keys (k = K +
// extraCandidates) and raises the threshold to the smallest kept key. Candidates may
// come in any order. Invariants: every row offered and not in buf has key ≤ thr; once
// thr > −Inf, buf holds at least k keys ≥ thr, or thr came from pub and the selector that
// published it does (merge restores the invariant).
type selector struct {
	buf  []entry
	k    int     // kept at each compaction
	lim  int     // buffer length that triggers a compaction (2k)
	thr  float32 // keys ≤ thr cannot enter; −Inf until the first compaction
	self int32   // gallery row excluded as the query itself, −1 for none
	seq  int32   // sequence code excluded, −1 for none
	qn   float64 // |q|²
	// pub, when set, is a threshold shared by the selectors of this query in other
	// threads (float32 bits): the largest key for which one of them holds k keys ≥ it.
	// Its candidates are merged at the end, so a key at or below it cannot enter either.
	pub *atomic.Uint32
}

// reset prepares s for a new query.
func (s *selector) reset(k int, self, seq int32, qn float64) {
	if cap(s.buf) < 2*k {
		s.buf = make([]entry, 0, 2*k)
	}
	s.buf, s.k, s.lim = s.buf[:0], k, 2*k
	s.thr = float32(math.Inf(-1))
	s.self, s.seq, s.qn, s.pub = self, seq, qn, nil
}

// excluded reports whether gallery row idx is left out for this query.
func (s *selector) excluded(idx int32, gseq []int32) bool {
	return idx == s.self || (s.seq >= 0 && gseq[idx] == s.seq)
}

// add appends row idx with a key above the threshold unless it is excluded.
func (s *selector) add(key float32, idx int32, gseq []int32) {
	if s.pub != nil {
		if t := math.Float32frombits(s.pub.Load()); t > s.thr {
			s.thr = t
			if key <= t {
				return
			}
		}
	}
	if s.excluded(idx, gseq) {
		return
	}
	s.buf = append(s.buf, entry{key, idx})
	if len(s.buf) >= s.lim {
		s.compact()
	}
}

// compact keeps the k largest keys and raises the threshold to the smallest of them.
func (s *selector) compact() {
	if len(s.buf) <= s.k {
		return
	}
	selectLargest(s.buf, s.k)
	s.buf = s.buf[:s.k]
	low := s.buf[0].v
	for _, e := range s.buf[1:] {
		low = min(low, e.v)
	}
	s.thr = max(s.thr, low)
	if s.pub != nil {
		publishMax(s.pub, low)
	}
}

// publishMax raises the shared threshold p to t.
func publishMax(p *atomic.Uint32, t float32) {
	for {
		old := p.Load()
		if math.Float32frombits(old) >= t || p.CompareAndSwap(old, math.Float32bits(t)) {
			return
		}
	}
}

// merge adds the candidates of o, a selector of the same query that saw other rows.
// Candidates equal to the threshold are kept: after a compaction the buffer holds at
// least k keys ≥ thr, and this must stay true whichever threshold wins.
func (s *selector) merge(o *selector) {
	s.thr = max(s.thr, o.thr)
	for _, e := range o.buf {
		if e.v >= s.thr {
			s.buf = append(s.buf, e)
			if len(s.buf) >= s.lim {
				s.compact()
			}
		}
	}
}

// selectLargest reorders a so that a[:k] holds its k largest keys (0 < k < len(a)):
// quickselect with a median-of-three pivot.
func selectLargest(a []entry, k int) {
	lo, hi := 0, len(a)-1
	for lo < hi {
		mid := lo + (hi-lo)/2
		// Order a[lo] ≥ a[mid] ≥ a[hi] by key, then use a[mid] as the pivot.
		if a[mid].v > a[lo].v {
			a[mid], a[lo] = a[lo], a[mid]
		}
		if a[hi].v > a[lo].v {
			a[hi], a[lo] = a[lo], a[hi]
		}
		if a[hi].v > a[mid].v {
			a[hi], a[mid] = a[mid], a[hi]
		}
		p := a[mid].v
		i, j := lo, hi
		for i <= j {
			for a[i].v > p {
				i++
			}
			for a[j].v < p {
				j--
			}
			if i <= j {
				a[i], a[j] = a[j], a[i]
				i++
				j--
			}
		}
		// Now a[lo..j] ≥ p ≥ a[i..hi], and a[j+1..i-1] == p.
		switch {
		case k-1 <= j:
			hi = j
		case k-1 >= i:
			lo = i
		default:
			return
		}
	}
}

// scanUnit offers the inner products of gallery rows base, base+1, … (unit vectors).
func (s *selector) scanUnit(scores []float32, base int32, gseq []int32) {
	thr := s.thr
	for j, v := range scores {
		if v > thr {
			s.add(v, base+int32(j), gseq)
			thr = s.thr
		}
	}
}

// scanGeneral offers the inner products of gallery rows base, base+1, … whose squared
// norms are gn (any vectors: key = 2·ip − |g|²).
func (s *selector) scanGeneral(scores []float32, gn []float64, base int32, gseq []int32) {
	gn = gn[:len(scores)]
	thr := s.thr
	for j, v := range scores {
		if key := float32(2*float64(v) - gn[j]); key > thr {
			s.add(key, base+int32(j), gseq)
			thr = s.thr
		}
	}
}

// scanUnitBoth offers one row of a symmetric block in both directions (unit vectors):
// scores[j] = ⟨a_i, b_{base+j}⟩ goes to row's selector as candidate base+j (gallery codes
// bseq) and to cols[j], the selector of b_{base+j}, as candidate ai (gallery codes aseq).
func scanUnitBoth(scores []float32, row *selector, base int32, bseq []int32,
	cols []selector, ai int32, aseq []int32) {
	cols = cols[:len(scores)]
	thr := row.thr
	for j, v := range scores {
		if v > thr {
			row.add(v, base+int32(j), bseq)
			thr = row.thr
		}
		if c := &cols[j]; v > c.thr {
			c.add(v, ai, aseq)
		}
	}
}

// scanGeneralBoth is scanUnitBoth for any vectors: bn are the squared norms of the b rows,
// an that of a_i.
func scanGeneralBoth(scores []float32, row *selector, bn []float64, base int32, bseq []int32,
	cols []selector, an float64, ai int32, aseq []int32) {
	cols, bn = cols[:len(scores)], bn[:len(scores)]
	thr := row.thr
	for j, v := range scores {
		ip2 := 2 * float64(v)
		if key := float32(ip2 - bn[j]); key > thr {
			row.add(key, base+int32(j), bseq)
			thr = row.thr
		}
		if c, key := &cols[j], float32(ip2-an); key > c.thr {
			c.add(key, ai, aseq)
		}
	}
}

// finish settles the candidates of one query (see exactBatch and settle).
func (s *selector) finish(q []float32, ix *Index, unit bool, outK int, out []Neighbor) []Neighbor {
	s.compact()
	exactDistances(q, ix, s.buf)
	return s.settle(q, ix, unit, outK, out)
}

// settle appends the best outK candidates, ascending by (distance, row), to out; s.buf
// must hold exactly the k best keys (compact) with their exact distances in v
// (exactDistances or exactBatch). Exact distances (Σ(q−g)² in float64 rounded to
// float32) make a pair's distance the same whatever block, shard or formula found it:
// exact duplicates tie exactly and go by row. Rows not kept have keys ≤ thr; when the
// error bound of their approximate distances leaves any of them a chance to reach the
// K-th place, the query is searched again exactly in Go (exactScan).
func (s *selector) settle(q []float32, ix *Index, unit bool, outK int, out []Neighbor) []Neighbor {
	h := s.buf
	slices.SortFunc(h, compareEntries)
	if dropped := !math.IsInf(float64(s.thr), -1); dropped && len(h) > outK {
		d := float64(len(q))
		qNorm := math.Sqrt(s.qn)
		err := gemmErrorFactor * (d + 2) * qNorm * ix.maxNorm
		var lo2 float64
		if unit {
			// 2 − 2·ip differs from |q−g|² by (|q|² − 1) + (|g|² − 1).
			lo2 = 2 - 2*float64(s.thr)
			err += math.Abs(s.qn-1) + ix.maxNorm2Dev
		} else {
			// Keys were rounded to float32: |key| ≤ 2·|q|·|g| + |g|².
			lo2 = s.qn - float64(s.thr)
			err += 0x1p-24 * (2*qNorm*ix.maxNorm + ix.maxNorm*ix.maxNorm)
		}
		// Rows not kept have exact d² ≥ lo2 − err, so distances ≥ bound.
		bound := float32(math.Sqrt(max(0, lo2-err)))
		if !(bound > h[outK-1].v) {
			return s.exactScan(q, ix, outK, out)
		}
	}
	for _, e := range h[:min(len(h), outK)] {
		out = append(out, Neighbor{Index: int(e.idx), Dist: e.v})
	}
	return out
}

// exactBucketRows is the gallery span of one exactBatch bucket: 4,096 rows of D = 384 are
// 6 MB, which stay in the L3 cache while their candidates are computed.
const exactBucketRows = 4096

// exactBatch compacts the selectors of queries and sets the exact distances of all their
// candidates, bucketed by gallery region so that the rows come from cache rather than
// memory. query(i) is the vector of sels[i]'s query.
func exactBatch(sels []selector, query func(i int) []float32, ix *Index, b *batchScratch) {
	nb := (ix.n + exactBucketRows - 1) / exactBucketRows
	if cap(b.buckets) < nb {
		b.buckets = make([][]candRef, nb)
	}
	b.buckets = b.buckets[:nb]
	for i := range b.buckets {
		b.buckets[i] = b.buckets[i][:0]
	}
	for i := range sels {
		sels[i].compact()
		for p, e := range sels[i].buf {
			k := int(e.idx) / exactBucketRows
			b.buckets[k] = append(b.buckets[k], candRef{int32(i), int32(p)})
		}
	}
	for _, refs := range b.buckets {
		j := 0
		for ; j+3 < len(refs); j += 4 {
			r0, r1, r2, r3 := refs[j], refs[j+1], refs[j+2], refs[j+3]
			e0, e1 := &sels[r0.sel].buf[r0.pos], &sels[r1.sel].buf[r1.pos]
			e2, e3 := &sels[r2.sel].buf[r2.pos], &sels[r3.sel].buf[r3.pos]
			d0, d1, d2, d3 := sqDistPairs(query(int(r0.sel)), ix.row(int(e0.idx)), query(int(r1.sel)), ix.row(int(e1.idx)),
				query(int(r2.sel)), ix.row(int(e2.idx)), query(int(r3.sel)), ix.row(int(e3.idx)))
			e0.v, e1.v = float32(math.Sqrt(d0)), float32(math.Sqrt(d1))
			e2.v, e3.v = float32(math.Sqrt(d2)), float32(math.Sqrt(d3))
		}
		for ; j < len(refs); j++ {
			e := &sels[refs[j].sel].buf[refs[j].pos]
			e.v = float32(math.Sqrt(sqDist(query(int(refs[j].sel)), ix.row(int(e.idx)))))
		}
	}
}

// candRef points at candidate pos of selector sel.
type candRef struct{ sel, pos int32 }

// batchScratch is exactBatch's reusable memory.
type batchScratch struct{ buckets [][]candRef }

// exactScan computes the exact Euclidean distance of every gallery row that is not excluded and
// appends the best outK to out. It is the fallback for near-ties that straddle the kept
// candidates (many exact duplicates at the K-th place).
func (s *selector) exactScan(q []float32, ix *Index, outK int, out []Neighbor) []Neighbor {
	all := make([]entry, 0, ix.n)
	for j := range ix.n {
		if s.excluded(int32(j), ix.seq) {
			continue
		}
		all = append(all, entry{v: float32(math.Sqrt(sqDist(q, ix.row(j)))), idx: int32(j)})
	}
	slices.SortFunc(all, compareEntries)
	for _, e := range all[:min(len(all), outK)] {
		out = append(out, Neighbor{Index: int(e.idx), Dist: e.v})
	}
	return out
}

// compareEntries orders settled entries by (distance, row).
func compareEntries(a, b entry) int {
	if a.v != b.v {
		if a.v < b.v {
			return -1
		}
		return 1
	}
	return int(a.idx) - int(b.idx)
}

// exactDistances sets h[i].v to the exact distance between q and gallery row h[i].idx.
// Rows go four at a time, so that their cache misses overlap.
func exactDistances(q []float32, ix *Index, h []entry) {
	i := 0
	for ; i+3 < len(h); i += 4 {
		d0, d1, d2, d3 := sqDistPairs(q, ix.row(int(h[i].idx)), q, ix.row(int(h[i+1].idx)),
			q, ix.row(int(h[i+2].idx)), q, ix.row(int(h[i+3].idx)))
		h[i].v, h[i+1].v = float32(math.Sqrt(d0)), float32(math.Sqrt(d1))
		h[i+2].v, h[i+3].v = float32(math.Sqrt(d2)), float32(math.Sqrt(d3))
	}
	for ; i < len(h); i++ {
		h[i].v = float32(math.Sqrt(sqDist(q, ix.row(int(h[i].idx)))))
	}
}

// sqDistPairs is sqDist of four pairs at once, so that their memory accesses overlap;
// each sum is formed in the same order as sqDist's, so results are identical.
func sqDistPairs(p, a, q, b, r, c, s, d []float32) (sa, sb, sc, sd float64) {
	n := len(p)
	a, q, b, r, c, s, d = a[:n], q[:n], b[:n], r[:n], c[:n], s[:n], d[:n]
	var a0, a1, a2, a3, b0, b1, b2, b3, c0, c1, c2, c3, d0, d1, d2, d3 float64
	i := 0
	for ; i+3 < n; i += 4 {
		x0, x1, x2, x3 := float64(p[i])-float64(a[i]), float64(p[i+1])-float64(a[i+1]), float64(p[i+2])-float64(a[i+2]), float64(p[i+3])-float64(a[i+3])
		a0, a1, a2, a3 = a0+x0*x0, a1+x1*x1, a2+x2*x2, a3+x3*x3
		x0, x1, x2, x3 = float64(q[i])-float64(b[i]), float64(q[i+1])-float64(b[i+1]), float64(q[i+2])-float64(b[i+2]), float64(q[i+3])-float64(b[i+3])
		b0, b1, b2, b3 = b0+x0*x0, b1+x1*x1, b2+x2*x2, b3+x3*x3
		x0, x1, x2, x3 = float64(r[i])-float64(c[i]), float64(r[i+1])-float64(c[i+1]), float64(r[i+2])-float64(c[i+2]), float64(r[i+3])-float64(c[i+3])
		c0, c1, c2, c3 = c0+x0*x0, c1+x1*x1, c2+x2*x2, c3+x3*x3
		x0, x1, x2, x3 = float64(s[i])-float64(d[i]), float64(s[i+1])-float64(d[i+1]), float64(s[i+2])-float64(d[i+2]), float64(s[i+3])-float64(d[i+3])
		d0, d1, d2, d3 = d0+x0*x0, d1+x1*x1, d2+x2*x2, d3+x3*x3
	}
	for ; i < n; i++ {
		x := float64(p[i]) - float64(a[i])
		a0 += x * x
		x = float64(q[i]) - float64(b[i])
		b0 += x * x
		x = float64(r[i]) - float64(c[i])
		c0 += x * x
		x = float64(s[i]) - float64(d[i])
		d0 += x * x
	}
	return (a0 + a1) + (a2 + a3), (b0 + b1) + (b2 + b3), (c0 + c1) + (c2 + c3), (d0 + d1) + (d2 + d3)
}

// sqDist is Σ(a−b)² in float64 (exact differences and squares of float32 values; four
// partial sums).
func sqDist(a, b []float32) float64 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+3 < len(a); i += 4 {
		d0 := float64(a[i]) - float64(b[i])
		d1 := float64(a[i+1]) - float64(b[i+1])
		d2 := float64(a[i+2]) - float64(b[i+2])
		d3 := float64(a[i+3]) - float64(b[i+3])
		s0 += d0 * d0
		s1 += d1 * d1
		s2 += d2 * d2
		s3 += d3 * d3
	}
	for ; i < len(a); i++ {
		d := float64(a[i]) - float64(b[i])
		s0 += d * d
	}
	return (s0 + s1) + (s2 + s3)
}
