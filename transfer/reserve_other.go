//go:build !linux

package transfer

import "os"

// reserve sets the file's size; without fallocate, a full disk shows up
// when chunks are written.
func reserve(f *os.File, size int64) error { return f.Truncate(size) }
