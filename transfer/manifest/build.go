package manifest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
)

// BuildOptions configures BuildFromPath. The zero value selects the
// defaults.
type BuildOptions struct {
	// ChunkSize in bytes; default DefaultChunkSize (1 MiB). It must be a
	// power of two between MinChunkSize and MaxChunkSize.
	ChunkSize int64
	// Hash is the multihash code of the hash: multihash.BLAKE3 (default)
	// or multihash.SHA2_256.
	Hash uint64
	// Workers is the number of hashing goroutines; default
	// runtime.GOMAXPROCS(0). Memory for file data is at most 2*Workers
	// chunks.
	Workers int
	// Times records each file's and directory's modification time in the
	// manifest, so that fetches restore them. It changes the root: the
	// same content with other times gets another address, and a share
	// built without Times never equals one built with it. The shared
	// directory itself has no entry; its time is not recorded.
	Times bool
	// Seal records that the files are encrypted with this version of the
	// seal format (package transfer/seal); 0 for plaintext.
	Seal int
	// SkipSpecial skips symbolic links, devices, sockets and named pipes
	// inside a shared directory instead of failing with ErrUnsupported.
	SkipSpecial bool
	// Skipped, if not nil, is told of each entry SkipSpecial leaves out:
	// its slash-separated path in the share and what it is ("symbolic
	// link", "named pipe", ...).
	Skipped func(path, kind string)
	// Progress, if not nil, is called from the goroutine that called
	// BuildFromPath, at most about every 100 ms while files are read, and
	// once more when every file is hashed. It must return quickly: reading
	// waits for it.
	Progress func(BuildProgress)
}

// BuildProgress reports how far BuildFromPath has got.
type BuildProgress struct {
	Files, TotalFiles int   // files read and checked; files in the share
	Bytes, TotalBytes int64 // bytes hashed; bytes in the share
}

// FileStat is a file as observed when it was indexed, to detect later
// changes before serving its bytes.
type FileStat struct {
	Path    string // absolute path on disk
	Size    int64
	ModTime time.Time
}

// BuildResult is what BuildFromPath produces.
type BuildResult struct {
	// Root is the share's address: the CID of its root block.
	Root cid.Cid
	// Manifest is the decoded manifest, as Load would return it.
	Manifest *Manifest
	// Blocks holds every manifest block, the root included (about 32 bytes
	// per chunk plus the entries).
	Blocks map[cid.Cid][]byte
	// Files has one element per non-directory entry, in the same order.
	Files []FileStat
}

// buildHooks let tests act at fixed points of a build.
type buildHooks struct {
	beforeOpen  func(path string)            // before a file with data is opened
	beforeChunk func(path string, off int64) // before the chunk at off is read
	afterRead   func(path string)            // after its last byte is read, before the final stat
}

// BuildFromPath builds the manifest of the file or directory at path. The
// share's name is the base name of path. A symbolic link given as path is
// followed; inside a directory, symbolic links and other non-regular files
// fail with ErrUnsupported unless opts.SkipSpecial is set. Names must be
// valid entry paths (UTF-8, no backslash; see the package documentation).
//
// Every file is read once: one goroutine (the caller's) reads chunks ahead
// into a fixed set of buffers, and opts.Workers goroutines hash them. A file
// whose size, modification time or identity changes between indexing and
// the end of its reading fails the build with ErrFileChanged. When ctx ends,
// BuildFromPath returns ctx.Err() promptly. It starts no goroutine that
// outlives it.
func BuildFromPath(ctx context.Context, path string, opts BuildOptions) (*BuildResult, error) {
	return build(ctx, path, opts, buildHooks{})
}

// indexed is an entry found on disk.
type indexed struct {
	entry Entry
	path  string      // on disk
	info  fs.FileInfo // from the walk; nil for directories
}

func build(ctx context.Context, path string, opts BuildOptions, hooks buildHooks) (*BuildResult, error) {
	if opts.ChunkSize == 0 {
		opts.ChunkSize = DefaultChunkSize
	}
	if opts.Hash == 0 {
		opts.Hash = mh.BLAKE3
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	if err := checkChunkSize(opts.ChunkSize); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := checkHash(opts.Hash); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	name := filepath.Base(abs)
	if err := checkComponent(name); err != nil {
		return nil, fmt.Errorf("%w: cannot share %s: name %s: %v", ErrInvalid, abs, shorten(name), err)
	}
	files, single, err := index(ctx, abs, name, opts)
	if err != nil {
		return nil, err
	}

	m := &Manifest{Name: name, Single: single, ChunkSize: opts.ChunkSize, Hash: opts.Hash, Seal: opts.Seal, Entries: make([]Entry, 0, len(files))}
	res := &BuildResult{Manifest: m, Blocks: make(map[cid.Cid][]byte)}
	check := entryChecker{chunkSize: opts.ChunkSize}
	for i := range files {
		f := &files[i]
		if err := check.add(&f.entry); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrInvalid, f.path, err)
		}
		m.Entries = append(m.Entries, f.entry)
		if !f.entry.Dir {
			res.Files = append(res.Files, FileStat{Path: f.path, Size: f.entry.Size, ModTime: f.info.ModTime()})
		}
	}
	// Fail before reading hundreds of TiB if the root could not list the
	// chunk blocks; the Builder checks the exact size at the end.
	if n := (check.chunks + DigestsPerBlock - 1) / DigestsPerBlock; n*int64(linkSize(blockCID(opts.Hash, nil))) > MaxBlockSize-256 {
		return nil, fmt.Errorf("%w: %d chunks need %d chunk blocks, more than the root block can list: use a larger chunk size",
			ErrTooLarge, check.chunks, n)
	}
	m.Size = check.size
	m.Digests = make([]byte, check.chunks*DigestSize)
	if err := hashFiles(ctx, files, m, opts, hooks, int(check.files)); err != nil {
		return nil, err
	}

	b, err := NewBuilder(name, single, opts.ChunkSize, opts.Hash, func(c cid.Cid, data []byte) error {
		res.Blocks[c] = data
		return nil
	})
	if err != nil {
		return nil, err
	}
	b.SetSeal(opts.Seal)
	for _, e := range m.Entries {
		if err := b.AddEntry(e); err != nil {
			return nil, err
		}
	}
	if err := b.AddDigests(m.Digests); err != nil {
		return nil, err
	}
	if res.Root, err = b.Finish(); err != nil {
		return nil, err
	}
	return res, nil
}

// index lists the share at abs in share order.
func index(ctx context.Context, abs, name string, opts BuildOptions) (files []indexed, single bool, err error) {
	root := abs
	info, err := os.Lstat(abs)
	if err == nil && info.Mode()&fs.ModeSymlink != 0 {
		if root, err = filepath.EvalSymlinks(abs); err == nil {
			info, err = os.Lstat(root)
		}
	}
	if err != nil {
		return nil, false, fmt.Errorf("manifest: %w", err)
	}
	switch {
	case info.Mode().IsRegular():
		e := Entry{Path: name, Size: info.Size(), Mode: info.Mode().Perm()}
		if opts.Times {
			e.ModTime = info.ModTime()
		}
		return []indexed{{entry: e, path: root, info: info}}, true, nil
	case !info.IsDir():
		return nil, false, fmt.Errorf("%w: %s is a %s", ErrUnsupported, abs, kind(info.Mode()))
	}
	// WalkDir visits a directory, then everything below it, reading names
	// in byte order: exactly the share order (see comparePaths).
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("manifest: %w", err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return fmt.Errorf("manifest: %w", err)
		}
		t := d.Type()
		if !t.IsDir() && !t.IsRegular() {
			if opts.SkipSpecial {
				if opts.Skipped != nil {
					opts.Skipped(filepath.ToSlash(rel), kind(t))
				}
				return nil
			}
			return fmt.Errorf("%w: %s is a %s (only regular files and directories are shared; "+
				"leave the others out with `shoal share --skip-special`, or BuildOptions.SkipSpecial)", ErrUnsupported, p, kind(t))
		}
		info, err := d.Info()
		if err != nil {
			return fmt.Errorf("manifest: %w", err)
		}
		f := indexed{entry: Entry{Path: filepath.ToSlash(rel), Dir: t.IsDir(), Mode: info.Mode().Perm()}, path: p}
		if !t.IsDir() {
			f.entry.Size, f.info = info.Size(), info
		}
		if opts.Times {
			f.entry.ModTime = info.ModTime()
		}
		files = append(files, f)
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	return files, false, nil
}

func kind(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return "symbolic link"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeDevice != 0:
		return "device"
	}
	return "special file"
}

// chunkJob is one chunk to hash: buf[:n] goes to digest slot seq.
type chunkJob struct {
	seq int64
	buf []byte
	n   int
}

// hashFiles reads every file's chunks on the calling goroutine and hashes
// them on opts.Workers goroutines into m.Digests. Each worker writes its
// digest straight into the chunk's slot, so results need no reordering.
func hashFiles(ctx context.Context, files []indexed, m *Manifest, opts BuildOptions, hooks buildHooks, totalFiles int) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var largest int64
	for _, f := range files {
		largest = max(largest, f.entry.Size)
	}
	nbuf := int(min(int64(2*opts.Workers), m.NumChunks()))
	free := make(chan []byte, nbuf)
	for range nbuf {
		free <- make([]byte, min(opts.ChunkSize, largest))
	}
	jobs := make(chan chunkJob, nbuf) // never full: at most nbuf buffers exist
	var hashed atomic.Int64
	var wg sync.WaitGroup
	for range min(opts.Workers, nbuf) {
		h, _ := NewHasher(m.Hash) // the code was checked
		wg.Go(func() {
			for j := range jobs {
				if ctx.Err() == nil {
					off := j.seq * DigestSize
					h.Sum(m.Digests[off:off:off+DigestSize], j.buf[:j.n])
					hashed.Add(int64(j.n))
				}
				free <- j.buf
			}
		})
	}

	r := reader{ctx: ctx, opts: opts, hooks: hooks, free: free, jobs: jobs}
	r.progress = BuildProgress{TotalFiles: totalFiles, TotalBytes: m.Size}
	r.hashed = &hashed
	r.last = time.Now()
	err := r.readAll(files)
	close(jobs)
	if err != nil {
		cancel()
	}
	wg.Wait()
	if err == nil {
		// Workers skip the chunks left when ctx ends: never return their
		// unset digests.
		err = ctx.Err()
	}
	if err != nil {
		return err
	}
	if opts.Progress != nil {
		r.progress.Bytes = hashed.Load()
		opts.Progress(r.progress)
	}
	return nil
}

type reader struct {
	ctx      context.Context
	opts     BuildOptions
	hooks    buildHooks
	free     chan []byte
	jobs     chan chunkJob
	hashed   *atomic.Int64
	progress BuildProgress
	last     time.Time
	seq      int64
}

func (r *reader) readAll(files []indexed) error {
	for _, f := range files {
		if f.entry.Dir {
			continue
		}
		if f.entry.Size > 0 {
			if err := r.readFile(f); err != nil {
				return err
			}
		}
		r.progress.Files++
		r.report()
	}
	return nil
}

func (r *reader) report() {
	if r.opts.Progress == nil {
		return
	}
	if now := time.Now(); now.Sub(r.last) >= 100*time.Millisecond {
		r.last = now
		r.progress.Bytes = r.hashed.Load()
		r.opts.Progress(r.progress)
	}
}

func (r *reader) readFile(f indexed) (err error) {
	if r.hooks.beforeOpen != nil {
		r.hooks.beforeOpen(f.path)
	}
	file, err := os.Open(f.path)
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	defer file.Close()
	if err := r.unchanged(file, f); err != nil {
		return err
	}
	size := f.entry.Size
	for off := int64(0); off < size; off += r.opts.ChunkSize {
		if err := r.ctx.Err(); err != nil {
			return err
		}
		var buf []byte
		select {
		case buf = <-r.free:
		case <-r.ctx.Done():
			return r.ctx.Err()
		}
		n := int(min(r.opts.ChunkSize, size-off))
		if r.hooks.beforeChunk != nil {
			r.hooks.beforeChunk(f.path, off)
		}
		if _, err := io.ReadFull(file, buf[:n]); err != nil {
			r.free <- buf
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("%w: %s: shorter than the %d bytes it had when indexed", ErrFileChanged, f.path, size)
			}
			return fmt.Errorf("manifest: reading %s: %w", f.path, err)
		}
		r.jobs <- chunkJob{seq: r.seq, buf: buf, n: n}
		r.seq++
		r.report()
	}
	if r.hooks.afterRead != nil {
		r.hooks.afterRead(f.path)
	}
	return r.unchanged(file, f)
}

// unchanged checks that the open file is the one indexed, with the same
// size and modification time.
func (r *reader) unchanged(file *os.File, f indexed) error {
	info, err := file.Stat()
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	switch {
	case !os.SameFile(info, f.info):
		return fmt.Errorf("%w: %s was replaced by another file", ErrFileChanged, f.path)
	case info.Size() != f.info.Size():
		return fmt.Errorf("%w: %s: size %d, was %d when indexed", ErrFileChanged, f.path, info.Size(), f.info.Size())
	case !info.ModTime().Equal(f.info.ModTime()):
		return fmt.Errorf("%w: %s: modified at %s, after it was indexed", ErrFileChanged, f.path, info.ModTime().Format(time.RFC3339Nano))
	}
	return nil
}
