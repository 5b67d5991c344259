package metrics

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/coder"
)

// TestAccumulatorBeamRowCoder checks that Beam's schema (row) coder, which a runner uses
// for a CombineFn's accumulator, carries an Accumulator without loss.
func TestAccumulatorBeamRowCoder(t *testing.T) {
	acc, err := NewAccumulator(testKs)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range randomQueries(5, 500) {
		if err := acc.Add(q); err != nil {
			t.Fatal(err)
		}
	}
	rt := reflect.TypeOf(Accumulator{})
	enc, err := coder.RowEncoderForStruct(rt)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := coder.RowDecoderForStruct(rt)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := enc(*acc, &buf); err != nil {
		t.Fatal(err)
	}
	v, err := dec(&buf)
	if err != nil {
		t.Fatal(err)
	}
	got := v.(Accumulator)
	if !reflect.DeepEqual(&got, acc) {
		t.Fatalf("row coder round trip changed the accumulator:\n got %+v\nwant %+v", got, *acc)
	}
	// The decoded accumulator keeps working.
	if err := got.Merge(acc); err != nil {
		t.Fatal(err)
	}
	if got.Overall.Counts.Queries != 2*acc.Overall.Counts.Queries {
		t.Errorf("merged %d queries, want %d", got.Overall.Counts.Queries, 2*acc.Overall.Counts.Queries)
	}
}
