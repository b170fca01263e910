package transfer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/shoalnet/shoal/transfer/manifest"
)

// prepare sets up the temporary copy beside the destination, resuming a
// previous attempt when its record and files are there, and starts
// serving what the fetch holds.
func (f *fetch) prepare(m *manifest.Manifest) error {
	db := f.s.db
	rec, bits, err := loadPartial(db, f.root, f.dst)
	if err != nil {
		return fmt.Errorf("transfer: read fetch state: %w", err)
	}
	n := m.NumChunks()
	if rec != nil && (rec.Temp != f.temp || int64(len(bits)) != (n+7)/8 || !tempIntact(m, f.temp)) {
		f.s.log.Warn("the partial copy of an earlier fetch is gone or changed; starting over",
			"root", f.root, "temp", f.temp)
		rec, bits = nil, nil
	}
	if rec == nil {
		if err := os.RemoveAll(f.temp); err != nil {
			return fmt.Errorf("transfer: clear %s: %w", f.temp, err)
		}
		if err := createTemp(m, f.temp); err != nil {
			os.RemoveAll(f.temp)
			return err
		}
		rec = &partialRecord{Root: f.root, Dst: f.dst, Temp: f.temp, Started: time.Now().UTC()}
		bits = NewBitfield(n)
		if err := savePartial(db, rec); err != nil {
			return fmt.Errorf("transfer: record fetch: %w", err)
		}
		if err := saveBits(db, f.root, f.dst, bits); err != nil {
			return fmt.Errorf("transfer: record fetch: %w", err)
		}
	}
	files := newFileSet(m, f.temp, true, nil)
	src := &source{root: f.root, m: m, files: files, have: bits.Clone(), shown: bits.Clone()}
	src.blocks, err = f.s.manifestBlocks(f.root)
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.m = m
	f.files = files
	f.src = src
	f.sched = newScheduler(n, bits)
	f.sched.chunk = m.ChunkSize
	f.urgentLocked()
	f.resumed = f.sched.done
	f.durable = f.sched.done
	for i := int64(0); i < n; i++ {
		if bits.Has(i) {
			f.held += m.ChunkLen(i)
		}
	}
	for _, s := range f.sessions {
		for _, msg := range s.stash {
			if err := f.applyHave(s, msg); err != nil {
				f.dropLocked(s, err, true)
				break
			}
		}
		s.stash, s.stashed = nil, 0
		if s.all {
			s.have = nil
		}
	}
	complete := f.sched.complete()
	f.mu.Unlock()
	f.s.mu.Lock()
	if old := f.s.sources[f.root]; old == nil {
		f.s.sources[f.root] = src
		f.s.sourceAddedLocked()
	}
	f.s.mu.Unlock()
	if complete {
		close(f.doneCh)
	}
	return nil
}

// unserve stops serving the partial copy of a failed or interrupted
// fetch; its readers are told why.
func (f *fetch) unserve(why error) {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	if f.src != nil && f.s.sources[f.root] == f.src {
		delete(f.s.sources, f.root)
		f.src.retire(fmt.Errorf("the fetch of %s stopped: %w", f.root, why))
	}
}

// tempIntact reports whether the temporary copy still has the layout the
// manifest needs.
func tempIntact(m *manifest.Manifest, temp string) bool {
	if m.Single {
		st, err := os.Stat(temp)
		return err == nil && st.Mode().IsRegular() && st.Size() == m.Entries[0].Size
	}
	for _, e := range m.Entries {
		st, err := os.Stat(filepath.Join(temp, filepath.FromSlash(e.Path)))
		if err != nil || st.IsDir() != e.Dir || (!e.Dir && st.Size() != e.Size) {
			return false
		}
	}
	return true
}

// createTemp lays out the temporary copy: every directory and every file
// at its final size, space reserved so that a full disk fails now, not
// half way.
func createTemp(m *manifest.Manifest, temp string) error {
	if m.Single {
		return createFile(temp, m.Entries[0].Size)
	}
	if err := os.Mkdir(temp, 0o700); err != nil {
		return fmt.Errorf("transfer: create %s: %w", temp, err)
	}
	for _, e := range m.Entries {
		p := filepath.Join(temp, filepath.FromSlash(e.Path))
		if e.Dir {
			if err := os.Mkdir(p, 0o700); err != nil {
				return fmt.Errorf("transfer: create %s: %w", p, err)
			}
			continue
		}
		if err := createFile(p, e.Size); err != nil {
			return err
		}
	}
	return nil
}

func createFile(p string, size int64) error {
	fh, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("transfer: create %s: %w", p, err)
	}
	defer fh.Close()
	if size == 0 {
		return nil
	}
	if err := reserve(fh, size); err != nil {
		if errors.Is(err, syscall.ENOSPC) {
			return fmt.Errorf("transfer: not enough disk space for %s (%d bytes): %w", p, size, err)
		}
		return fmt.Errorf("transfer: reserve %d bytes for %s: %w", size, p, err)
	}
	return nil
}

// checkpoint makes the chunks written so far durable and records them, so
// a restart resumes without fetching or re-hashing them.
func (f *fetch) checkpoint() error {
	f.mu.Lock()
	if f.sched == nil {
		f.mu.Unlock()
		return nil
	}
	bits := NewBitfield(f.sched.n)
	for i, st := range f.sched.state {
		if st == chunkDone {
			bits.Set(int64(i))
		}
	}
	f.mu.Unlock()
	if err := f.files.sync(); err != nil {
		return err
	}
	if err := saveBits(f.s.db, f.root, f.dst, bits); err != nil {
		return err
	}
	f.mu.Lock()
	f.durable = bits.Count()
	f.mu.Unlock()
	return nil
}

// finalize makes the copy durable, gives files and directories their
// modes, renames it into place and serves it as a share.
func (f *fetch) finalize() error {
	// Readers of the partial copy wait for the share that replaces it.
	f.src.retire(errReplaced)
	if err := f.files.syncAll(); err != nil {
		return fmt.Errorf("transfer: sync: %w", err)
	}
	if err := f.files.close(); err != nil {
		return fmt.Errorf("transfer: close: %w", err)
	}
	m := f.m
	if m.Single {
		if err := setMeta(f.temp, m.Entries[0]); err != nil {
			return err
		}
	} else {
		// Deepest first, so a directory without write permission is set
		// after its contents, and its time after the last change inside.
		for k := len(m.Entries) - 1; k >= 0; k-- {
			e := m.Entries[k]
			if err := setMeta(filepath.Join(f.temp, filepath.FromSlash(e.Path)), e); err != nil {
				return err
			}
		}
		if err := os.Chmod(f.temp, 0o755); err != nil {
			return fmt.Errorf("transfer: %w", err)
		}
	}
	if _, err := os.Lstat(f.dst); err == nil {
		if !f.opts.Overwrite {
			return fmt.Errorf("%w: %s appeared during the fetch; the verified copy is kept at %s", ErrExists, f.dst, f.temp)
		}
		old := f.temp + ".old"
		if err := os.Rename(f.dst, old); err != nil {
			return fmt.Errorf("transfer: move aside %s: %w", f.dst, err)
		}
		defer os.RemoveAll(old)
	}
	if err := os.Rename(f.temp, f.dst); err != nil {
		return fmt.Errorf("transfer: rename into place: %w", err)
	}
	if err := syncPath(filepath.Dir(f.dst)); err != nil {
		return err
	}
	if err := deletePartial(f.s.db, f.root, f.dst); err != nil {
		return fmt.Errorf("transfer: forget fetch state: %w", err)
	}
	rec := &ShareRecord{
		Root: f.root, Name: m.Name, Path: f.dst, Size: m.Size, Fetched: true,
		Added: time.Now().UTC(),
	}
	for _, e := range m.Entries {
		if e.Dir {
			continue
		}
		p := f.dst
		if !m.Single {
			p = filepath.Join(f.dst, filepath.FromSlash(e.Path))
		}
		st, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("transfer: %w", err)
		}
		rec.Stats = append(rec.Stats, FileStat{Size: st.Size(), ModTime: st.ModTime()})
		rec.Files++
	}
	f.s.mu.Lock()
	if f.s.sources[f.root] == f.src {
		delete(f.s.sources, f.root)
	}
	f.s.mu.Unlock()
	return f.s.addShare(rec, m, f.src.blocks)
}

// setMeta gives the file or directory at p the mode of e and, if the share
// records times, its modification time (access time too).
func setMeta(p string, e manifest.Entry) error {
	if err := os.Chmod(p, modeOf(e)); err != nil {
		return fmt.Errorf("transfer: %w", err)
	}
	if !e.ModTime.IsZero() {
		if err := os.Chtimes(p, e.ModTime, e.ModTime); err != nil {
			return fmt.Errorf("transfer: %w", err)
		}
	}
	return nil
}

func modeOf(e manifest.Entry) fs.FileMode {
	mode := e.Mode.Perm()
	if mode == 0 {
		if e.Dir {
			return 0o755
		}
		return 0o644
	}
	return mode
}

// Discard forgets an interrupted fetch of root to dst and deletes its
// partial copy; it must not be running.
func (s *Service) Discard(root cid.Cid, dst string) error {
	rec, _, err := loadPartial(s.db, root, dst)
	if err != nil || rec == nil {
		return err
	}
	if err := os.RemoveAll(rec.Temp); err != nil {
		return err
	}
	return deletePartial(s.db, root, dst)
}
