package knn

import "sync"

// engines holds the engines of this process, one per configuration, shared by every user
// (a runner may make a DoFn instance per bundle): an engine's ONNX Runtime session and
// score buffers exist once per process. See models/ort's process policy.
var engines struct {
	sync.Mutex
	m map[Options]*sharedEngine
}

type sharedEngine struct {
	engine *Engine
	users  int
}

// Acquire returns the process's engine for opts, creating it on first use, and counts one
// more user: call it in a DoFn's Setup and Release in its Teardown.
func Acquire(opts Options) (*Engine, error) {
	engines.Lock()
	defer engines.Unlock()
	if se := engines.m[opts]; se != nil {
		se.users++
		return se.engine, nil
	}
	e, err := NewEngine(opts)
	if err != nil {
		return nil, err
	}
	if engines.m == nil {
		engines.m = map[Options]*sharedEngine{}
	}
	engines.m[opts] = &sharedEngine{engine: e, users: 1}
	return e, nil
}

// Release gives back one use of the engine for opts; the last user closes it.
func Release(opts Options) error {
	engines.Lock()
	defer engines.Unlock()
	se := engines.m[opts]
	if se == nil {
		return nil
	}
	if se.users--; se.users > 0 {
		return nil
	}
	delete(engines.m, opts)
	return se.engine.Close()
}
