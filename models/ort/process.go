package ort

import (
	"math"
	"runtime/debug"
	"sync"
)

// The resource policy of a worker process. A runner may run many DoFn instances in one
// process (one per bundle, several bundles at once), and each would otherwise multiply
// what it holds. So, process-wide:
//
//   - Sessions are shared: Acquire gives every user of one model and option set the same
//     session, with its weights and thread pools (models/knn's Acquire does the same for
//     search engines and their score buffers).
//   - The CPU is taken in turns (CPUTurn): one batch at a time decodes and runs on the CPU
//     provider, since a pass already keeps every intra-op thread busy.
//   - Large working sets are held one at a time (MemoryTurn), under a Go memory limit sized
//     to them (LimitMemory), so the collector keeps the heap near what is live.

// CPUTurn is held, in a worker process, by whoever is using the CPU in bulk for a session on
// the CPU provider: decoding a batch's images, then running its forward pass. A pass
// already keeps IntraOpThreads cores busy, and image decoding beside it slowed the pass by
// more than the decoding cost (a ViT-S/16 embed pipeline on 2 cores went from 0.83–0.89
// of a plain loop's rate with decoding overlapped to ≈ 0.9–0.94 with turns). On a GPU,
// decoding should overlap the passes instead, so GPU users do not take it.
var CPUTurn sync.Mutex

// MemoryTurn is held, in a worker process, by whoever holds a working set sized to the
// machine: the neighbours stage while it searches one gallery shard (the engine uses every
// core for it, so a second shard would only add memory) or merges one query tile.
var MemoryTurn sync.Mutex

// memoryLimit scopes a Go memory limit to the work that needs it, for a process that runs
// other stages too: while any holder is at work the limit is the sum of theirs, and when
// the last one ends the process's own limit comes back. A process started with a limit
// (GOMEMLIMIT, or debug.SetMemoryLimit elsewhere) keeps it untouched.
var memoryLimit struct {
	sync.Mutex
	active int   // holders at work
	sum    int64 // the sum of their limits
	saved  int64 // the process's limit before the first of them
	owned  bool  // whether the limit is ours to set (the process had none)
}

// LimitMemory adds limit bytes to the process's Go memory limit (runtime/debug) until the
// returned function is called: the collector then runs as the heap nears what the work is
// expected to hold, instead of letting the heap grow to twice its live size first. A live
// heap above the limit only makes collections more frequent.
func LimitMemory(limit int64) (release func()) {
	m := &memoryLimit
	m.Lock()
	defer m.Unlock()
	if m.active == 0 {
		m.saved = debug.SetMemoryLimit(-1)
		m.owned = m.saved == math.MaxInt64
	}
	m.active++
	m.sum += limit
	if m.owned {
		debug.SetMemoryLimit(m.sum)
	}
	return func() {
		m.Lock()
		defer m.Unlock()
		m.active--
		m.sum -= limit
		switch {
		case !m.owned:
		case m.active == 0:
			debug.SetMemoryLimit(m.saved)
		default:
			debug.SetMemoryLimit(m.sum)
		}
	}
}
