package ort

import (
	"math"
	"runtime/debug"
	"testing"
)

// TestLimitMemory: overlapping searches and merges add their limits, the last one restores
// the process's, and a limit the process already had is left alone.
func TestLimitMemory(t *testing.T) {
	orig := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(orig)
	debug.SetMemoryLimit(math.MaxInt64)
	a := LimitMemory(100 << 20)
	if got := debug.SetMemoryLimit(-1); got != 100<<20 {
		t.Fatalf("limit %d, want %d", got, 100<<20)
	}
	b := LimitMemory(50 << 20)
	if got := debug.SetMemoryLimit(-1); got != 150<<20 {
		t.Fatalf("limit with two in progress %d, want %d", got, 150<<20)
	}
	a()
	if got := debug.SetMemoryLimit(-1); got != 50<<20 {
		t.Fatalf("limit after the first ended %d, want %d", got, 50<<20)
	}
	b()
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Fatalf("limit after both ended %d, want none", got)
	}

	debug.SetMemoryLimit(1 << 30) // as GOMEMLIMIT=1GiB would
	c := LimitMemory(100 << 20)
	if got := debug.SetMemoryLimit(-1); got != 1<<30 {
		t.Fatalf("a set limit became %d", got)
	}
	c()
	if got := debug.SetMemoryLimit(-1); got != 1<<30 {
		t.Fatalf("a set limit became %d after the search", got)
	}
}
