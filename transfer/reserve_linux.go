package transfer

import (
	"errors"
	"os"
	"syscall"
)

// reserve allocates size bytes for f, so that a full disk is reported
// before the transfer starts. File systems without fallocate get a
// sparse file.
func reserve(f *os.File, size int64) error {
	err := syscall.Fallocate(int(f.Fd()), 0, 0, size)
	if errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.ENOSYS) {
		return f.Truncate(size)
	}
	return err
}
