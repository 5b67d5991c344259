//go:build !linux

package main

// dieWithParent is Linux-only; workers run linux/amd64.
func dieWithParent() {}
