//go:build !linux

package ort

import "os"

// fileVersion is false outside Linux: model hashes are not cached there.
func fileVersion(abs string, st os.FileInfo) (string, bool) { return "", false }
