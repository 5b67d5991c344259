package main

import (
	"context"
	"fmt"
	"image"
	"os"
	"syscall"
	"time"

	"github.com/stirpipe/stirpipe/models/imageio"
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
	paths   []string
	boxes   []*image.Rectangle
	pp      *preprocess.Preprocessor
	limits  imageio.Limits
}

// decodeAll decodes and preprocesses every row of the catalog up front, one goroutine,
// timing each step.
func decodeAll(ctx context.Context, catalogPath string, m *manifest.Manifest, lim imageio.Limits) (*decoded, error) {
	root := dirOf(catalogPath)
	cat, err := catalog.Load(ctx, catalogPath, catalog.Options{Root: root})
	if err != nil {
		return nil, err
	}
	pp, err := preprocess.New(m.Preprocess)
	if err != nil {
		return nil, err
	}
	d := &decoded{N: len(cat.Rows), Slot: pp.TensorLen(), pp: pp, limits: lim}
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
		d.paths = append(d.paths, p)
		d.boxes = append(d.boxes, box)
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

// prepare reads, decodes and preprocesses image i into dst, as the pipeline does per row.
func (d *decoded) prepare(i int, dst []float32) error {
	data, err := os.ReadFile(d.paths[i])
	if err != nil {
		return err
	}
	img, _, err := imageio.Decode(data, d.limits)
	if err != nil {
		return fmt.Errorf("%s: %w", d.paths[i], err)
	}
	return d.pp.Tensor(img, d.boxes[i], dst)
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
	variantPlain   = "loop"
	variantOverlap = "loop+decode"
)

// runLoop times one pass over every image in batches of bs. Plain variants feed the
// pre-decoded tensors; overlap variants decode the next batch from the files while the
// current one runs (two buffers), as the pipeline's DoFn does.
func runLoop(variant string, fw forward, d *decoded, dim, bs int, overlap bool) (loopRun, error) {
	r := loopRun{Variant: variant, Images: d.N, Load1: load1()}
	nb := (d.N + bs - 1) / bs
	outs := [2][]float32{make([]float32, bs*dim), make([]float32, bs*dim)}
	var bufs [2][]float32
	if overlap {
		bufs = [2][]float32{make([]float32, bs*d.Slot), make([]float32, bs*d.Slot)}
	}
	busy0 := machineBusy()
	cpu0 := cpuSeconds()
	start := time.Now()
	var inflight chan error
	for b := 0; b < nb; b++ {
		lo, hi := b*bs, min((b+1)*bs, d.N)
		n := hi - lo
		out := outs[b%2][:n*dim]
		if !overlap {
			if err := fw(out, d.Tensors[lo*d.Slot:hi*d.Slot], n); err != nil {
				return r, err
			}
			continue
		}
		buf := bufs[b%2][:n*d.Slot]
		for i := lo; i < hi; i++ {
			if err := d.prepare(i, buf[(i-lo)*d.Slot:(i-lo+1)*d.Slot]); err != nil {
				return r, err
			}
		}
		if inflight != nil {
			if err := <-inflight; err != nil {
				return r, err
			}
		}
		inflight = make(chan error, 1)
		go func(ch chan error) { ch <- fw(out, buf, n) }(inflight)
	}
	if inflight != nil {
		if err := <-inflight; err != nil {
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
