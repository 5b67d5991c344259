package pqfile

import (
	"errors"
	"fmt"
	"strconv"
)

// Metadata reads typed values from a file's key-value metadata and collects every problem
// (a missing key, a value that does not parse) for Err.
type Metadata struct {
	kv   map[string]string
	errs []error
}

// NewMetadata returns a Metadata reading kv.
func NewMetadata(kv map[string]string) *Metadata { return &Metadata{kv: kv} }

// String returns the value of key; a missing key is a problem.
func (m *Metadata) String(key string) string {
	v, ok := m.kv[key]
	if !ok {
		m.errs = append(m.errs, fmt.Errorf("metadata key %s is missing", key))
	}
	return v
}

// Int returns the value of key as a decimal int; an empty value is 0.
func (m *Metadata) Int(key string) int {
	s := m.String(key)
	if s == "" {
		return 0
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		m.errs = append(m.errs, fmt.Errorf("metadata %s: %w", key, err))
	}
	return n
}

// Bool returns the value of key as parsed by strconv.ParseBool; an empty value is false.
func (m *Metadata) Bool(key string) bool {
	s := m.String(key)
	if s == "" {
		return false
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		m.errs = append(m.errs, fmt.Errorf("metadata %s: %w", key, err))
	}
	return b
}

// Err returns every problem met so far, joined, or nil.
func (m *Metadata) Err() error { return errors.Join(m.errs...) }
