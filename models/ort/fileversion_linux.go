package ort

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"syscall"
)

// fileVersion names one version of a file: a hash of its path, size, modification and
// change times, inode and device.
func fileVersion(abs string, st os.FileInfo) (string, bool) {
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return "", false
	}
	h := sha256.Sum256(fmt.Appendf(nil, "%s\x00%d\x00%d\x00%d.%d\x00%d\x00%d",
		abs, st.Size(), st.ModTime().UnixNano(), sys.Ctim.Sec, sys.Ctim.Nsec, sys.Ino, sys.Dev))
	return hex.EncodeToString(h[:]), true
}
