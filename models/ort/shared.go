package ort

import (
	"fmt"
	"path/filepath"
	"strings"
	"sync"
)

// SessionKey identifies a shared session: one per model file, names and options.
type SessionKey struct {
	// Model is the absolute, symlink-resolved ONNX path.
	Model string
	// Inputs and Outputs are the bound names joined by NUL.
	Inputs, Outputs string
	// Options are normalised.
	Options Options
}

// NewSessionKey builds the key Acquire uses for these arguments.
func NewSessionKey(modelPath string, inputs, outputs []string, opts Options) (SessionKey, error) {
	abs, err := filepath.Abs(modelPath)
	if err != nil {
		return SessionKey{}, fmt.Errorf("ONNX model path %s: %w", modelPath, err)
	}
	if resolved, err := filepath.EvalSymlinks(abs); err == nil {
		abs = resolved
	}
	return SessionKey{
		Model:   abs,
		Inputs:  strings.Join(inputs, "\x00"),
		Outputs: strings.Join(outputs, "\x00"),
		Options: opts.Normalized(),
	}, nil
}

// sharedEntry is one shared session and its users.
type sharedEntry struct {
	ready chan struct{} // closed once s or err is set
	s     *Session
	err   error
	refs  int
}

var shared = struct {
	mu      sync.Mutex
	entries map[SessionKey]*sharedEntry
}{entries: map[SessionKey]*sharedEntry{}}

// Acquire returns the process-wide session for (model, inputs, outputs, opts), creating it on
// first use, and counts one more user. Several DoFn instances in one worker process thus share
// one session (and its memory and thread pools): call Acquire in Setup and Release in
// Teardown. Concurrent Acquires of the same key wait for one load; a failed load is not
// cached. Init must have succeeded.
func Acquire(modelPath string, inputs, outputs []string, opts Options) (*Session, error) {
	key, err := NewSessionKey(modelPath, inputs, outputs, opts)
	if err != nil {
		return nil, err
	}
	shared.mu.Lock()
	e, ok := shared.entries[key]
	if ok {
		e.refs++
		shared.mu.Unlock()
		<-e.ready
		if e.err != nil {
			return nil, e.err
		}
		return e.s, nil
	}
	e = &sharedEntry{ready: make(chan struct{}), refs: 1}
	shared.entries[key] = e
	shared.mu.Unlock()

	s, err := NewSession(key.Model, inputs, outputs, opts)
	shared.mu.Lock()
	if err != nil {
		e.err = err
		delete(shared.entries, key)
	} else {
		s.sharedKey = &key
		e.s = s
	}
	shared.mu.Unlock()
	close(e.ready)
	return s, err
}

// Release gives back one use of a session from Acquire and closes it when the last user
// releases it. Releasing a session more often than it was acquired is an error.
func Release(s *Session) error {
	if s == nil {
		return nil
	}
	if s.sharedKey == nil {
		return fmt.Errorf("release %s: session was not created by ort.Acquire; call Close", s.path)
	}
	shared.mu.Lock()
	e, ok := shared.entries[*s.sharedKey]
	if !ok || e.s != s {
		shared.mu.Unlock()
		return fmt.Errorf("release %s: session already released by all its users", s.path)
	}
	e.refs--
	last := e.refs == 0
	if last {
		delete(shared.entries, *s.sharedKey)
	}
	shared.mu.Unlock()
	if !last {
		return nil
	}
	s.mu.Lock()
	s.sharedRelease = true
	s.mu.Unlock()
	return s.Close()
}

// SharedUsers returns how many users hold the shared session s (0 once fully released).
func SharedUsers(s *Session) int {
	if s == nil || s.sharedKey == nil {
		return 0
	}
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if e, ok := shared.entries[*s.sharedKey]; ok && e.s == s {
		return e.refs
	}
	return 0
}
