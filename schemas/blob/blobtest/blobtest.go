// Package blobtest starts an in-process Cloud Storage emulator (fake-gcs-server) for tests
// of gs:// paths, and points the storage client at it through STORAGE_EMULATOR_HOST.
//
// The storage client in package blob is created once per process, so start the emulator in
// TestMain, before any gs:// call.
package blobtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/fsouza/fake-gcs-server/fakestorage"

	"github.com/stirpipe/stirpipe/schemas/blob"
)

// Emulator is a running fake-gcs-server.
type Emulator struct {
	server *fakestorage.Server
}

// Start runs an emulator on a free loopback port with the given buckets and sets
// STORAGE_EMULATOR_HOST for this process.
func Start(buckets ...string) (*Emulator, error) {
	srv, err := fakestorage.NewServerWithOptions(fakestorage.Options{
		Scheme: "http",
		Host:   "127.0.0.1",
		Port:   0,
	})
	if err != nil {
		return nil, fmt.Errorf("start fake-gcs-server: %w", err)
	}
	for _, b := range buckets {
		srv.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: b})
	}
	if err := os.Setenv("STORAGE_EMULATOR_HOST", srv.URL()[len("http://"):]); err != nil {
		srv.Stop()
		return nil, err
	}
	return &Emulator{server: srv}, nil
}

// Stop shuts the emulator down.
func (e *Emulator) Stop() { e.server.Stop() }

// Main is a TestMain body: it starts an emulator with the given buckets, runs the tests
// (run is m.Run, or ptest.MainRet's equivalent), stops the emulator and exits with their
// status.
func Main(run func() int, buckets ...string) {
	emu, err := Start(buckets...)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := run()
	emu.Stop()
	os.Exit(code)
}

// Upload copies the files of a local folder, recursively, under a gs:// prefix.
func Upload(ctx context.Context, dir, prefix string) error {
	files, err := blob.List(ctx, dir)
	if err != nil {
		return err
	}
	for _, f := range files {
		rel, err := filepath.Rel(dir, f)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		if err := blob.WriteFile(ctx, blob.Join(prefix, filepath.ToSlash(rel)), data); err != nil {
			return err
		}
	}
	return nil
}
