package main

import (
	"os"
	"testing"

	"github.com/stirpipe/stirpipe/models/embedder"
	"github.com/stirpipe/stirpipe/models/manifest"
)

func TestTmpRSS(t *testing.T) {
	m, err := manifest.Load("../../models/zoo/vits16/embedder.json")
	if err != nil {
		t.Fatal(err)
	}
	c := embedConfig{Threads: 2, InterOp: 1, GraphOpt: "all"}
	t.Logf("start: %d MiB", selfMaxRSSKiB()>>10)
	if os.Getenv("TWICE") != "" {
		e, err := embedder.Open(m, c.runtime())
		if err != nil {
			t.Fatal(err)
		}
		e.Close()
		t.Logf("after open+close: %d MiB", selfMaxRSSKiB()>>10)
	}
	e, err := embedder.Open(m, c.runtime())
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	t.Logf("after open: %d MiB", selfMaxRSSKiB()>>10)
	in := make([]float32, 8*e.InputLen())
	out := make([]float32, 8*e.Dim())
	for i := 0; i < 3; i++ {
		if err := e.EmbedInto(out, in, 8); err != nil {
			t.Fatal(err)
		}
		t.Logf("after run %d: %d MiB", i, selfMaxRSSKiB()>>10)
	}
}
