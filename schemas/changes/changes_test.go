package changes

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteRead(t *testing.T) {
	ctx := context.Background()
	uri := filepath.Join(t.TempDir(), "refresh", "changes.json")
	if err := Write(ctx, uri, "gs://b/runs/1/embeddings", []string{"c", "a", "b", "a"}); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(uri)
	if !strings.Contains(string(data), `"a",`+"\n"+`  "b",`+"\n"+`  "c"`) {
		t.Errorf("ids are not written sorted and once each:\n%s", data)
	}
	s, err := Read(ctx, uri)
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != 3 || !s.Has("a") || !s.Has("c") || s.Has("d") || s.Previous != "gs://b/runs/1/embeddings" {
		t.Errorf("read back %d ids (a %t, d %t), previous %q", s.Len(), s.Has("a"), s.Has("d"), s.Previous)
	}
	for name, body := range map[string]string{
		"other format":  `{"format":"stir.changes/v9","previous":"p","ids":[]}`,
		"unknown field": `{"format":"stir.changes/v1","previous":"p","ids":[],"extra":1}`,
		"not json":      `{`,
	} {
		if err := os.WriteFile(uri, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Read(ctx, uri); err == nil || !strings.Contains(err.Error(), uri) {
			t.Errorf("%s: %v, want an error naming the file", name, err)
		}
	}
}
