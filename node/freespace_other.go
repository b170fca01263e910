//go:build !linux && !darwin && !freebsd && !windows

package node

// freeStorage is not known on this system.
func freeStorage(string) (uint64, bool) { return 0, false }
