package synth

import "testing"

// BenchmarkGenerate measures images per second at the benchmark size (~500 px).
func BenchmarkGenerate(b *testing.B) {
	o := DefaultOptions()
	o.Products = 40
	o.ViewsMin, o.ViewsMax = 2, 4
	o.Size = 500
	o.BoxFraction = 0.2
	o.SequenceFraction = 0.2
	var rows int
	for i := 0; i < b.N; i++ {
		s, err := Generate(b.TempDir(), o)
		if err != nil {
			b.Fatal(err)
		}
		rows += s.Rows
	}
	b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "images/s")
}
