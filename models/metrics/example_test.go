package metrics_test

import (
	"fmt"
	"os"

	"github.com/stirpipe/stirpipe/models/metrics"
)

// The worked example of method.md §5: hits at ranks 2 and 4 give map@5 = (1/2 + 2/4)/2.
func ExampleOptions_Evaluate() {
	o := metrics.Options{CMC: []int{1, 5}, Precision: []int{5}, MAP: []int{5}}
	r, err := o.Evaluate(metrics.Query{ID: "q1", Relevant: []bool{false, true, false, true, false}, NRelevant: 2})
	if err != nil {
		panic(err)
	}
	fmt.Println("cmc@1", r.CMC[0], "cmc@5", r.CMC[1], "precision@5", r.Precision[0], "map@5", r.MAP[0])
	// Output: cmc@1 0 cmc@5 1 precision@5 1 map@5 0.5
}

// Accumulators built on different workers merge into one report.
func ExampleAccumulator() {
	o := metrics.Options{CMC: []int{1}, MAP: []int{2}}
	a, _ := metrics.NewAccumulator(o)
	b, _ := metrics.NewAccumulator(o)
	_ = a.Add(metrics.Query{ID: "q1", Category: "bike", Relevant: []bool{true, false}, NRelevant: 1})
	_ = b.Add(metrics.Query{ID: "q2", Category: "lamp", Relevant: []bool{false, true}, NRelevant: 3})
	if err := a.Merge(b); err != nil {
		panic(err)
	}
	if err := metrics.WriteTable(os.Stdout, a.Report()); err != nil {
		panic(err)
	}
	// Output:
	// metric                OVERALL    bike    lamp
	// cmc@1                  0.5000  1.0000  0.0000
	// map@2                  0.7500  1.0000  0.5000
	// queries                     2       1       1
	// no relevant (n=0)           0       0       0
	// empty list                  0       0       0
	// empty, n=0 (all 1.0)        0       0       0
	// precision undefined         0       0       0
	// list < 2                    0       0       0
}
