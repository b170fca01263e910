//go:build linux || darwin || freebsd

package node

import "golang.org/x/sys/unix"

// freeStorage returns the bytes free to this user on the file system of
// dir.
func freeStorage(dir string) (uint64, bool) {
	var st unix.Statfs_t
	if unix.Statfs(dir, &st) != nil {
		return 0, false
	}
	return uint64(st.Bavail) * uint64(st.Bsize), true
}
