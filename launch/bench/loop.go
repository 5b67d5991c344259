package main

import (
	"context"
	"errors"
	"fmt"
	"image"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/stirpipe/stirpipe/models/imageio"
	"github.com/stirpipe/stirpipe/models/imageload"
	"github.com/stirpipe/stirpipe/models/manifest"
	"github.com/stirpipe/stirpipe/models/preprocess"
	"github.com/stirpipe/stirpipe/schemas/catalog"
)

// forward runs one forward pass of n images from batch into dst (n·dim floats).
type forward func(dst, batch []float32, n int) error

// decoded holds every benchmark image decoded and preprocessed, with what it cost.
type decoded struct {
	Tensors []float32
	N, Slot int
	ReadS   float64 // reading the files
	DecodeS float64 // JPEG decoding
	PrepS   float64 // crop, resize, normalise
	rows    []catalog.Row
	loader  *imageload.Loader
	errs    []error
}

// decodeAll decodes and preprocesses every row of the catalog up front, one goroutine,
// timing each step.
func decodeAll(ctx context.Context, catalogPath string, m *manifest.Manifest, lim imageio.Limits) (*decoded, error) {
	root := filepath.Dir(catalogPath)
	cat, err := catalog.Load(ctx, catalogPath, catalog.Options{Root: root})
	if err != nil {
		return nil, err
	}
	pp, err := preprocess.New(m.Preprocess)
	if err != nil {
		return nil, err
	}
	loader, err := imageload.New(root, lim, m.Preprocess)
	if err != nil {
		return nil, err
	}
	d := &decoded{N: len(cat.Rows), Slot: pp.TensorLen(), rows: cat.Rows, loader: loader, errs: make([]error, len(cat.Rows))}
	d.Tensors = make([]float32, d.N*d.Slot)
	for i, row := range cat.Rows {
		p, err := catalog.Resolve(root, row.Path)
		if err != nil {
			return nil, err
		}
		var box *image.Rectangle
		if r, ok := row.Box(); ok {
			box = &r
		}
		t0 := time.Now()
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		t1 := time.Now()
		img, _, err := imageio.Decode(data, lim)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		t2 := time.Now()
		if err := pp.Tensor(img, box, d.Tensors[i*d.Slot:(i+1)*d.Slot]); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		t3 := time.Now()
		d.ReadS += t1.Sub(t0).Seconds()
		d.DecodeS += t2.Sub(t1).Seconds()
		d.PrepS += t3.Sub(t2).Seconds()
	}
	return d, nil
}

// loopRun is one timed run of a loop variant.
type loopRun struct {
	Rep     int     `json:"rep"`
	Variant string  `json:"variant"`
	Images  int     `json:"images"`
	WallS   float64 `json:"wall_s"`
	Rate    float64 `json:"images_per_s"`
	// CPUS is the process's user+system CPU seconds during the run (all threads).
	CPUS  float64 `json:"cpu_s"`
	Load1 float64 `json:"load1_before"`
	// OthersCPUS is the CPU time the rest of the machine used during the run.
	OthersCPUS float64 `json:"others_cpu_s"`
}

// Loop variants.
const (
	variantPlain  = "loop"
	variantDecode = "loop+decode"
)

// runLoop times one pass over every image in batches of bs. The plain variant feeds the
// pre-decoded tensors; the decode variant reads and decodes each batch from the files on
// every core, then runs it, as the pipeline's DoFn does.
func runLoop(variant string, fw forward, d *decoded, dim, bs int, decode bool) (loopRun, error) {
	r := loopRun{Variant: variant, Images: d.N, Load1: load1()}
	out := make([]float32, bs*dim)
	var buf []float32
	if decode {
		buf = make([]float32, bs*d.Slot)
	}
	busy0 := machineBusy()
	cpu0 := cpuSeconds()
	start := time.Now()
	for lo := 0; lo < d.N; lo += bs {
		hi := min(lo+bs, d.N)
		n := hi - lo
		in := d.Tensors[lo*d.Slot : hi*d.Slot]
		if decode {
			in = buf[:n*d.Slot]
			slots := make([][]float32, n)
			for i := range slots {
				slots[i] = in[i*d.Slot : (i+1)*d.Slot]
			}
			d.loader.LoadBatch(context.Background(), d.rows[lo:hi], slots, d.errs)
			if err := errors.Join(d.errs[:n]...); err != nil {
				return r, err
			}
		}
		if err := fw(out[:n*dim], in, n); err != nil {
			return r, err
		}
	}
	r.WallS = time.Since(start).Seconds()
	r.CPUS = cpuSeconds() - cpu0
	r.OthersCPUS = othersCPU(busy0, machineBusy(), r.CPUS)
	r.Rate = float64(d.N) / r.WallS
	return r, nil
}

// cpuSeconds is this process's user+system CPU time so far.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// selfMaxRSSKiB is this process's peak resident set so far, in KiB (Linux).
func selfMaxRSSKiB() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Maxrss
}
