// Package progress prints periodic progress lines (items done, rate, ETA) for long local
// runs. One Reporter per stage is shared by every DoFn instance in the worker process.
package progress

import (
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Interval is how often a Reporter prints.
var Interval = 5 * time.Second

// Reporter counts finished items of one stage and prints a line every Interval.
// A nil *Reporter ignores Add, so callers need no checks when progress is off.
type Reporter struct {
	stage, unit string
	total       int64
	done        atomic.Int64
	start       time.Time
	out         io.Writer
	mu          sync.Mutex
	last        time.Time
}

var (
	sharedMu sync.Mutex
	shared   = map[string]*Reporter{}
)

// Shared returns the process-wide reporter of a stage, creating it on first use.
// total is the number of items expected (0 = unknown).
func Shared(stage, unit string, total int64) *Reporter {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if r, ok := shared[stage]; ok {
		return r
	}
	r := New(os.Stderr, stage, unit, total)
	shared[stage] = r
	return r
}

// New returns a reporter printing to w.
func New(w io.Writer, stage, unit string, total int64) *Reporter {
	now := time.Now()
	return &Reporter{stage: stage, unit: unit, total: total, out: w, start: now, last: now}
}

// Add records n finished items and prints a progress line when one is due.
func (r *Reporter) Add(n int64) {
	if r == nil {
		return
	}
	done := r.done.Add(n)
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.Sub(r.last) < Interval && done != r.total {
		return
	}
	r.last = now
	fmt.Fprintln(r.out, r.line(done, now.Sub(r.start)))
}

// line formats one progress line.
func (r *Reporter) line(done int64, elapsed time.Duration) string {
	rate := float64(done) / elapsed.Seconds()
	s := fmt.Sprintf("%s: %d", r.stage, done)
	if r.total > 0 {
		s += fmt.Sprintf("/%d %s (%.0f%%)", r.total, r.unit, 100*float64(done)/float64(r.total))
	} else {
		s += " " + r.unit
	}
	s += fmt.Sprintf(", %.1f/s", rate)
	if r.total > 0 && rate > 0 && done < r.total {
		eta := time.Duration(float64(r.total-done) / rate * float64(time.Second))
		s += ", ETA " + eta.Round(time.Second).String()
	}
	return s
}
