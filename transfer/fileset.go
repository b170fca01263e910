package transfer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/shoalnet/shoal/transfer/manifest"
)

// maxOpenFiles bounds the file handles one fileSet keeps open; past it,
// files are opened for each access.
const maxOpenFiles = 128

// errStale reports that a shared file no longer matches its index.
var errStale = errors.New("file changed since it was indexed")

// fileSet maps the chunks of a manifest onto files below a base path: the
// file itself for a single-file share, the directory for a tree. Reads and
// writes are positional, so it is safe for concurrent use.
type fileSet struct {
	m        *manifest.Manifest
	base     string
	writable bool
	stats    []FileStat // nil: do not check files for changes
	fileIdx  []int      // entry index -> index into stats (file entries only)

	mu     sync.Mutex
	open   map[int]*os.File
	dirty  map[int]struct{} // entries written since the last sync
	closed bool             // handles opened now are not kept
}

func newFileSet(m *manifest.Manifest, base string, writable bool, stats []FileStat) *fileSet {
	fs := &fileSet{m: m, base: base, writable: writable, stats: stats,
		open: make(map[int]*os.File), dirty: make(map[int]struct{})}
	fs.fileIdx = make([]int, len(m.Entries))
	n := 0
	for i, e := range m.Entries {
		fs.fileIdx[i] = -1
		if !e.Dir {
			fs.fileIdx[i] = n
			n++
		}
	}
	return fs
}

// path returns the on-disk path of entry i.
func (fs *fileSet) path(i int) string {
	if fs.m.Single {
		return fs.base
	}
	return filepath.Join(fs.base, filepath.FromSlash(fs.m.Entries[i].Path))
}

// file returns an open handle for entry i and a function to release it.
func (fs *fileSet) file(i int) (*os.File, func(), error) {
	fs.mu.Lock()
	f, ok := fs.open[i]
	fs.mu.Unlock()
	if ok {
		return f, func() {}, nil
	}
	flag := os.O_RDONLY
	if fs.writable {
		flag = os.O_RDWR
	}
	f, err := os.OpenFile(fs.path(i), flag, 0)
	if err != nil {
		return nil, nil, err
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if g, ok := fs.open[i]; ok {
		f.Close()
		return g, func() {}, nil
	}
	if len(fs.open) < maxOpenFiles && !fs.closed {
		fs.open[i] = f
		return f, func() {}, nil
	}
	return f, func() { f.Close() }, nil
}

// check returns errStale if file entry i changed since it was indexed.
func (fs *fileSet) check(i int) error {
	if fs.stats == nil {
		return nil
	}
	want := fs.stats[fs.fileIdx[i]]
	st, err := os.Stat(fs.path(i))
	if err != nil {
		return fmt.Errorf("%w: %v", errStale, err)
	}
	if st.Size() != want.Size || !st.ModTime().Equal(want.ModTime) {
		return fmt.Errorf("%w: %s (size %d, modified %s; indexed %d, %s)", errStale,
			fs.path(i), st.Size(), st.ModTime().Format("2006-01-02 15:04:05.000"),
			want.Size, want.ModTime.Format("2006-01-02 15:04:05.000"))
	}
	return nil
}

// readChunk reads chunk c into buf, which must be ChunkLen(c) long.
func (fs *fileSet) readChunk(c int64, buf []byte) error {
	i, off := fs.m.Locate(c)
	if err := fs.check(i); err != nil {
		return err
	}
	f, release, err := fs.file(i)
	if err != nil {
		return err
	}
	defer release()
	if _, err := f.ReadAt(buf, off); err != nil {
		return fmt.Errorf("read chunk %d of %s: %w", c, fs.path(i), err)
	}
	return nil
}

// readAt reads len(p) bytes of file entry i at off.
func (fs *fileSet) readAt(i int, p []byte, off int64) error {
	if err := fs.check(i); err != nil {
		return err
	}
	f, release, err := fs.file(i)
	if err != nil {
		return err
	}
	defer release()
	if _, err := f.ReadAt(p, off); err != nil {
		return fmt.Errorf("read %s at %d: %w", fs.path(i), off, err)
	}
	return nil
}

// writeChunk writes chunk c.
func (fs *fileSet) writeChunk(c int64, data []byte) error {
	i, off := fs.m.Locate(c)
	f, release, err := fs.file(i)
	if err != nil {
		return err
	}
	defer release()
	if _, err := f.WriteAt(data, off); err != nil {
		return fmt.Errorf("write chunk %d to %s: %w", c, fs.path(i), err)
	}
	fs.mu.Lock()
	fs.dirty[i] = struct{}{}
	fs.mu.Unlock()
	return nil
}

// sync flushes every file written since the last sync to stable storage.
func (fs *fileSet) sync() error {
	fs.mu.Lock()
	dirty := fs.dirty
	fs.dirty = make(map[int]struct{})
	fs.mu.Unlock()
	var errs []error
	for i := range dirty {
		f, release, err := fs.file(i)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := f.Sync(); err != nil {
			errs = append(errs, fmt.Errorf("sync %s: %w", fs.path(i), err))
		}
		release()
	}
	return errors.Join(errs...)
}

// syncAll flushes every file of the set and the directories: a fetch
// that resumed may hold chunks written by an earlier process.
func (fs *fileSet) syncAll() error {
	if err := fs.sync(); err != nil {
		return err
	}
	if fs.m.Single {
		return syncPath(fs.base)
	}
	for i := range fs.m.Entries {
		if err := syncPath(fs.path(i)); err != nil {
			return err
		}
	}
	return syncPath(fs.base)
}

func syncPath(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", p, err)
	}
	return nil
}

// close releases every handle.
func (fs *fileSet) close() error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.closed = true
	var errs []error
	for i, f := range fs.open {
		errs = append(errs, f.Close())
		delete(fs.open, i)
	}
	return errors.Join(errs...)
}
