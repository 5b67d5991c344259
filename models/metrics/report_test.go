package metrics

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
)

// tableQueries: a1 and a2 in category a, b1 (n = 0) and b2 (empty, n = 0) in b.
var tableQueries = []Query{
	{ID: "a1", Category: "a", Relevant: rel(1, 0), NRelevant: 1},
	{ID: "a2", Category: "a", Relevant: rel(0, 1), NRelevant: 2},
	{ID: "b1", Category: "b", Relevant: rel(0), NRelevant: 0},
	{ID: "b2", Category: "b", Relevant: nil, NRelevant: 0},
}

var tableKs = Options{CMC: []int{1, 2}, Precision: []int{2}, MAP: []int{2}}

func TestWriteTable(t *testing.T) {
	_, r, err := Compute(tableQueries, tableKs)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteTable(&buf, r); err != nil {
		t.Fatal(err)
	}
	// Means by hand: cmc@1 (1+0+0+1)/4, cmc@2 (1+1+0+1)/4, precision@2 (1+1/2+1)/3 with b1
	// left out, map@2 (1+1/2+0+1)/4.
	want := strings.Join([]string{
		"metric                OVERALL       a       b",
		"cmc@1                  0.5000  0.5000  0.5000",
		"cmc@2                  0.7500  1.0000  0.5000",
		"precision@2            0.8333  0.7500  1.0000",
		"map@2                  0.6250  0.7500  0.5000",
		"queries                     4       2       2",
		"no relevant (n=0)           2       0       2",
		"empty list                  1       0       1",
		"empty, n=0 (all 1.0)        1       0       1",
		"precision undefined         1       0       1",
		"list < 2                    2       0       2",
		"",
	}, "\n")
	if got := buf.String(); got != want {
		t.Fatalf("table:\n%s\nwant:\n%s", got, want)
	}

	// Undefined means print as n/a; no categories means one value column.
	_, r, err = Compute([]Query{{ID: "x", Relevant: rel(0), NRelevant: 0}}, Options{Precision: []int{1}})
	if err != nil {
		t.Fatal(err)
	}
	buf.Reset()
	if err := WriteTable(&buf, r); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(buf.String(), "\n")
	if h := strings.Fields(lines[0]); !reflect.DeepEqual(h, []string{"metric", "OVERALL"}) {
		t.Errorf("header %q, want metric and OVERALL only", lines[0])
	}
	if f := strings.Fields(lines[1]); !reflect.DeepEqual(f, []string{"precision@1", "n/a"}) {
		t.Errorf("row %q, want precision@1 n/a", lines[1])
	}
}

func TestDocumentRoundTrip(t *testing.T) {
	_, r, err := Compute(tableQueries, tableKs)
	if err != nil {
		t.Fatal(err)
	}
	prov := map[string]string{"embedder": "vit-tiny", "catalog": "synth"}
	d := NewDocument(r, prov)
	var buf bytes.Buffer
	if err := WriteDocument(&buf, d); err != nil {
		t.Fatal(err)
	}

	// The single report sits at the top level; the comparison slots are absent.
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(buf.Bytes(), &raw); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range raw {
		keys = append(keys, k)
	}
	for _, k := range []string{"format", "ks", "provenance", "overall", "categories"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("metrics.json lacks %q (keys %v)", k, keys)
		}
	}
	if len(raw) != 5 {
		t.Errorf("metrics.json keys %v, want exactly format, ks, provenance, overall, categories", keys)
	}
	if !strings.Contains(buf.String(), `"format": "stir.metrics/v1"`) || !strings.Contains(buf.String(), `"precision@2": 0.8333333333333334`) {
		t.Errorf("unexpected document:\n%s", buf.String())
	}

	got, err := ReadDocument(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, d) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, d)
	}

	// A before/after comparison uses the same report shape.
	cmp := Document{Format: Format, KS: r.KS, Before: &r, After: &r, Delta: &Report{KS: r.KS, Overall: Scope{Metrics: map[string]float64{"cmc@1": 0}}}}
	buf.Reset()
	if err := WriteDocument(&buf, cmp); err != nil {
		t.Fatal(err)
	}
	got, err = ReadDocument(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if got.Report != nil || !reflect.DeepEqual(*got.Before, r) || !reflect.DeepEqual(*got.After, r) || got.Delta.Overall.Metrics["cmc@1"] != 0 {
		t.Fatalf("comparison round trip: %+v", got)
	}
}

func TestDocumentValidation(t *testing.T) {
	_, r, err := Compute(tableQueries, tableKs)
	if err != nil {
		t.Fatal(err)
	}
	withMetric := func(key string, v float64) *Report {
		c := Report{KS: r.KS, Overall: Scope{Metrics: map[string]float64{key: v}}}
		return &c
	}
	tests := []struct {
		name string
		d    Document
		want []string
	}{
		{"bad format", Document{Format: "stir.metrics/v0", KS: r.KS, Report: &r}, []string{`format "stir.metrics/v0"`}},
		{"no report", Document{Format: Format, KS: r.KS}, []string{"no report"}},
		{"bad ks", Document{Format: Format, KS: Options{}, Report: &r}, []string{"ks: metrics: no cutoffs"}},
		{"NaN", Document{Format: Format, KS: r.KS, Report: withMetric("cmc@1", math.NaN())}, []string{"cmc@1 = NaN, want a finite number"}},
		{"unknown cutoff", Document{Format: Format, KS: r.KS, After: withMetric("map@7", 0.5)}, []string{`after: overall: metric "map@7" is not one of the cutoffs`}},
		{"report cutoffs differ", Document{Format: Format, KS: Options{CMC: []int{1, 2}}, Before: &r}, []string{"before: report cutoffs"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := WriteDocument(&bytes.Buffer{}, tt.d)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}

	reads := []struct {
		name, doc, want string
	}{
		{"unknown field", `{"format":"stir.metrics/v1","ks":{"cmc":[1]},"overall":{"counts":{},"metrics":{}},"extra":1}`, `unknown field "extra"`},
		{"syntax", "{\"format\":\n \"stir.metrics/v1\",,}", "line 2, column"},
		{"invalid", `{"format":"other","ks":{"cmc":[1]},"overall":{"counts":{},"metrics":{}}}`, `format "other"`},
	}
	for _, tt := range reads {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadDocument(strings.NewReader(tt.doc))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}
