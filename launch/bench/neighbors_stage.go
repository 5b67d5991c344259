package main

// The neighbours stage timed as a user runs it: `stir neighbors` as a child process.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/stirpipe/stirpipe/models/knn"
	"github.com/stirpipe/stirpipe/pipelines"
	"github.com/stirpipe/stirpipe/schemas/lists"
)

// stageRun is one run of the neighbours stage as a child process.
type stageRun struct {
	Command string  `json:"command"`
	Output  string  `json:"output"`
	WallS   float64 `json:"wall_s"`
	// PeakRSSKiB is the child's VmHWM, read every rssPoll while it ran.
	PeakRSSKiB int64   `json:"peak_rss_kib"`
	BudgetB    int64   `json:"budget_bytes"`
	Pass       bool    `json:"within_budget"`
	UserS      float64 `json:"user_s"`
	SysS       float64 `json:"sys_s"`
	OthersCPUS float64 `json:"others_cpu_s"`
	Load1      float64 `json:"load1_before"`
	Log        string  `json:"log"`
	// The stage's lists against the engine's SearchSelf lists, for every query.
	Compared     int `json:"queries_compared"`
	IDsDiffer    int `json:"queries_ids_differ"`
	DistsDiffer  int `json:"queries_distances_differ"`
	MissingLists int `json:"queries_without_list"`
}

// runStage runs stir neighbors on the embeddings output and measures its wall time and
// peak RSS.
func runStage(ctx context.Context, c neighborsConfig, bin, emb string, log io.Writer) (*stageRun, error) {
	st := &stageRun{Output: filepath.Join(c.Work, "neighbors-run"), BudgetB: c.budgetBytes(),
		Log: filepath.Join(c.Work, "logs", "neighbors-stage.log")}
	if err := os.RemoveAll(st.Output); err != nil {
		return st, err
	}
	args := []string{"neighbors", "--embeddings", emb, "--output", st.Output,
		"--shard_size", strconv.Itoa(c.ShardSize), "--k", strconv.Itoa(c.K),
		"--search_threads", strconv.Itoa(c.Threads), "--progress=false"}
	if c.Library != "" {
		args = append(args, "--onnxruntime_lib", c.Library)
	}
	st.Command = bin + " " + strings.Join(args, " ")
	fmt.Fprintf(log, "stage: %s …\n", st.Command)
	cmd := exec.CommandContext(ctx, bin, args...)
	if c.GCTrace {
		cmd.Env = append(os.Environ(), "GODEBUG=gctrace=1")
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	st.Load1 = load1()
	busy0, start := machineBusy(), time.Now()
	if err := cmd.Start(); err != nil {
		return st, fmt.Errorf("starting %s: %w", bin, err)
	}
	hwm := make(chan int64, 1)
	stop := make(chan struct{})
	go func() { hwm <- pollHWM(cmd.Process.Pid, stop) }()
	werr := cmd.Wait()
	st.WallS = time.Since(start).Seconds()
	close(stop)
	st.PeakRSSKiB = <-hwm
	if ps := cmd.ProcessState; ps != nil {
		st.UserS, st.SysS = ps.UserTime().Seconds(), ps.SystemTime().Seconds()
	}
	st.OthersCPUS = othersCPU(busy0, machineBusy(), st.UserS+st.SysS)
	st.Pass = st.PeakRSSKiB*1024 <= st.BudgetB
	logText := fmt.Sprintf("$ %s\n--- stdout\n%s--- stderr\n%s", st.Command, stdout.String(), stderr.String())
	if err := os.WriteFile(st.Log, []byte(logText), 0o644); err != nil {
		return st, err
	}
	if werr != nil {
		return st, fmt.Errorf("stir neighbors failed (%v); log %s:\n%s", werr, st.Log, tail(logText, 30))
	}
	fmt.Fprintf(log, "stage: %.2f s, peak RSS %d MiB, CPU %.1f s, others' CPU %.1f s\n",
		st.WallS, st.PeakRSSKiB>>10, st.UserS+st.SysS, st.OthersCPUS)
	return st, nil
}

// compare checks the stage's lists against the engine's SearchSelf lists, every query.
func (st *stageRun) compare(ctx context.Context, self [][]knn.Neighbor) error {
	r, err := lists.Open(ctx, filepath.Join(st.Output, pipelines.NeighborsDir))
	if err != nil {
		return err
	}
	seen := make([]bool, len(self))
	err = r.Each(ctx, func(rec lists.Record) error {
		q, err := parseRowID(rec.QueryID)
		if err != nil || q >= len(self) {
			return fmt.Errorf("stage output: query %q is not a benchmark row", rec.QueryID)
		}
		seen[q] = true
		st.Compared++
		want := self[q]
		if len(rec.NeighborIDs) != len(want) {
			st.IDsDiffer++
			return nil
		}
		idsOK, distOK := true, true
		for j, id := range rec.NeighborIDs {
			row, err := parseRowID(id)
			if err != nil || row != want[j].Index {
				idsOK = false
			}
			if rec.Distances[j] != want[j].Dist {
				distOK = false
			}
		}
		if !idsOK {
			st.IDsDiffer++
		}
		if !distOK {
			st.DistsDiffer++
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, ok := range seen {
		if !ok {
			st.MissingLists++
		}
	}
	return nil
}
