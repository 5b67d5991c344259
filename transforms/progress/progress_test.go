package progress

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestLine(t *testing.T) {
	r := New(nil, "embed", "images", 1000)
	got := r.line(250, 10*time.Second)
	want := "embed: 250/1000 images (25%), 25.0/s, ETA 30s"
	if got != want {
		t.Fatalf("line = %q, want %q", got, want)
	}
	if got := New(nil, "embed", "images", 0).line(10, 2*time.Second); got != "embed: 10 images, 5.0/s" {
		t.Fatalf("line without total = %q", got)
	}
}

func TestAddPrintsOnCompletion(t *testing.T) {
	var buf bytes.Buffer
	r := New(&buf, "embed", "images", 3)
	r.Add(1)
	r.Add(2)
	if !strings.Contains(buf.String(), "embed: 3/3 images (100%)") {
		t.Fatalf("no completion line in %q", buf.String())
	}
	var nilReporter *Reporter
	nilReporter.Add(1) // must not panic
}
