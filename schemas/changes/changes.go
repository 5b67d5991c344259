// Package changes is the record of what changed between a run and the previous run it
// refreshes: the ids of the items whose catalog row or image differs in anything the stages
// after embed use, and of the items added or removed. The embed stage writes it (one JSON
// file, ids sorted); the neighbours and rerank stages read it to redo only what it names.
package changes

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/stirpipe/stirpipe/schemas/blob"
)

// FormatV1 identifies the file.
const FormatV1 = "stir.changes/v1"

// File is the changes file's content.
type File struct {
	Format string `json:"format"`
	// Previous is the embeddings output the run was compared with.
	Previous string `json:"previous"`
	// IDs are the changed items, sorted.
	IDs []string `json:"ids"`
}

// Write writes the changes against the previous embeddings atomically at uri; ids may
// come in any order.
func Write(ctx context.Context, uri, previous string, ids []string) error {
	ids = slices.Clone(ids)
	slices.Sort(ids)
	if ids == nil {
		ids = []string{}
	}
	data, err := json.MarshalIndent(File{Format: FormatV1, Previous: previous, IDs: slices.Compact(ids)}, "", " ")
	if err != nil {
		return err
	}
	return blob.WriteFile(ctx, uri, append(data, '\n'))
}

// Set is a read changes file.
type Set struct {
	Previous string
	ids      map[string]struct{}
}

// Has reports whether an item changed.
func (s *Set) Has(id string) bool {
	_, ok := s.ids[id]
	return ok
}

// Len is the number of changed items.
func (s *Set) Len() int { return len(s.ids) }

// Read reads a changes file, refusing unknown fields and other formats.
func Read(ctx context.Context, uri string) (*Set, error) {
	data, err := blob.ReadFile(ctx, uri)
	if err != nil {
		return nil, fmt.Errorf("changes file: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f File
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("changes file %s: %w", uri, err)
	}
	if f.Format != FormatV1 {
		return nil, fmt.Errorf("changes file %s: format %q, want %q", uri, f.Format, FormatV1)
	}
	s := &Set{Previous: f.Previous, ids: make(map[string]struct{}, len(f.IDs))}
	for _, id := range f.IDs {
		s.ids[id] = struct{}{}
	}
	return s, nil
}
