package main

import (
	"os"

	"golang.org/x/sys/unix"
)

// dieWithParent makes the kernel end this worker when the process that started it (Beam's
// boot) ends. A job server stops a worker by killing its boot, and the Go SDK harness would
// otherwise live on as an orphan, holding its models, after every job.
func dieWithParent() {
	parent := os.Getppid()
	_ = unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGTERM), 0, 0, 0)
	if os.Getppid() != parent { // the parent ended before the request took effect
		os.Exit(1)
	}
}
