package transfer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/shoalnet/shoal/transfer/manifest"
)

// Reading content while it arrives.
//
// A Reader reads one file of a root this node serves: a share, a fetched
// copy, or a fetch still in progress. A read of a chunk that is not here
// yet blocks until the chunk is verified and written. Meanwhile the reader
// tells every fetch of the root which chunks it needs next, the one it
// waits for and ReadAhead bytes after it, and the scheduler asks for
// those before any other (rarest first goes on for the rest). A fetch
// that completes swaps its partial copy for the finished one under its
// readers; one that fails ends their reads with its error.

// DefaultReadAhead is how far past the read position a Reader has chunks
// fetched first.
const DefaultReadAhead = 8 << 20

// maxReadAhead caps one reader's read-ahead, in chunks.
const maxReadAhead = 256

// urgentExtra is how many requests for chunks readers need a session may
// have beyond its window: a reader does not wait for room.
const urgentExtra = 2

// ErrIsDir: the path names a directory, which cannot be read as a file.
var ErrIsDir = errors.New("transfer: is a directory")

// span is a range of chunks [lo, hi).
type span struct{ lo, hi int64 }

// OpenOptions are the options of Open.
type OpenOptions struct {
	// ReadAhead is how many bytes past the read position are fetched
	// before any other chunk. Default DefaultReadAhead.
	ReadAhead int64
}

// Reader reads one file of a root, complete or still arriving. It is an
// io.ReadSeekCloser and an io.ReaderAt; its methods are safe for
// concurrent use (Read and Seek share one offset).
type Reader struct {
	s      *Service
	root   cid.Cid
	m      *manifest.Manifest
	entry  int
	size   int64
	first  int64 // the file's first chunk
	chunks int64 // the file's chunk count
	ahead  int64 // chunks
	ctx    context.Context
	cancel context.CancelFunc

	pos sync.Mutex // serializes Read and Seek
	off int64      // pos

	mu     sync.Mutex
	want   int64   // the chunk last told to the fetches, -1 none
	last   *source // the source last read from: why it retired is why reads fail
	closed bool
}

// Open opens the file name of root for reading: "" (or the share's name)
// for a single-file share, else a file's slash-separated path in the
// directory share. root must be served here: shared, fetched, or being
// fetched (Open waits for a fetch's manifest). Reads end with ctx.
func (s *Service) Open(ctx context.Context, root cid.Cid, name string, opts OpenOptions) (*Reader, error) {
	src, err := s.readable(ctx, root)
	if err != nil {
		return nil, err
	}
	m := src.m
	k, err := lookup(m, name)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, root)
	}
	if opts.ReadAhead <= 0 {
		opts.ReadAhead = DefaultReadAhead
	}
	e := m.Entries[k]
	r := &Reader{
		s: s, root: root, m: m, entry: k, size: e.Size,
		first: e.FirstChunk, chunks: e.Chunks(m.ChunkSize),
		ahead: min(max(1, opts.ReadAhead/m.ChunkSize), maxReadAhead),
		want:  -1, last: src,
	}
	r.ctx, r.cancel = context.WithCancel(ctx)
	return r, nil
}

// lookup returns the index of the file name in m.
func lookup(m *manifest.Manifest, name string) (int, error) {
	name = strings.Trim(name, "/")
	if name != "" {
		name = path.Clean(name)
	}
	if m.Single {
		if name == "" || name == m.Name {
			return 0, nil
		}
		return -1, fmt.Errorf("%w: %s: the share is the single file %s", ErrNotFound, name, m.Name)
	}
	if name == "" || name == "." {
		return -1, fmt.Errorf("%w: the share's top directory %s", ErrIsDir, m.Name)
	}
	for k, e := range m.Entries {
		if e.Path == name {
			if e.Dir {
				return -1, fmt.Errorf("%w: %s", ErrIsDir, name)
			}
			return k, nil
		}
	}
	return -1, fmt.Errorf("%w: no file %s in %s", ErrNotFound, name, m.Name)
}

// readable returns root's current source, waiting while a fetch of root
// is getting its manifest or swapping its partial copy for the finished
// one.
func (s *Service) readable(ctx context.Context, root cid.Cid) (*source, error) {
	src := s.waitSources(ctx, math.MaxInt64, func() (*source, bool) {
		src := s.sources[root]
		if src != nil && src.goneErr() == nil {
			return src, true
		}
		return nil, len(s.fetchesLocked(root)) == 0
	})
	if src != nil {
		return src, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("%w: %s is not held here and is not being fetched", ErrNotFound, root)
}

// Size is the file's length.
func (r *Reader) Size() int64 { return r.size }

// Name is the file's path in its share (the share's name for a single
// file).
func (r *Reader) Name() string { return r.m.Entries[r.entry].Path }

// Root is the share's root.
func (r *Reader) Root() cid.Cid { return r.root }

// ModTime returns the file's modification time as its share recorded it,
// or the zero Time if the share records none.
func (r *Reader) ModTime() time.Time { return r.m.Entries[r.entry].ModTime }

// Read reads from the offset up to the end of one chunk, waiting for that
// chunk if it is not here yet.
func (r *Reader) Read(p []byte) (int, error) {
	r.pos.Lock()
	defer r.pos.Unlock()
	if len(p) == 0 {
		return 0, nil
	}
	n, err := r.readSome(p, r.off)
	r.off += int64(n)
	return n, err
}

// ReadAt reads len(p) bytes at off, waiting for the chunks that are not
// here yet.
func (r *Reader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("transfer: read %s at negative offset %d", r.Name(), off)
	}
	n := 0
	for n < len(p) {
		k, err := r.readSome(p[n:], off+int64(n))
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// Seek sets the offset of the next Read.
func (r *Reader) Seek(offset int64, whence int) (int64, error) {
	r.pos.Lock()
	defer r.pos.Unlock()
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += r.off
	case io.SeekEnd:
		offset += r.size
	default:
		return 0, fmt.Errorf("transfer: seek: bad whence %d", whence)
	}
	if offset < 0 {
		return 0, fmt.Errorf("transfer: seek %s to negative offset %d", r.Name(), offset)
	}
	r.off = offset
	return offset, nil
}

// Close ends the reader: reads waiting or to come fail, and the fetches
// stop putting its chunks first.
func (r *Reader) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.mu.Unlock()
	r.cancel()
	for _, f := range r.s.fetchesOf(r.root) {
		f.want(r, 0, 0)
	}
	return nil
}

// readSome reads from off to the end of p or of the chunk holding off,
// whichever comes first.
func (r *Reader) readSome(p []byte, off int64) (int, error) {
	if off >= r.size {
		return 0, io.EOF
	}
	cs := r.m.ChunkSize
	c := r.first + off/cs
	k := min(int64(len(p)), (off/cs+1)*cs-off, r.size-off)
	r.ask(c)
	for {
		src, err := r.await(c)
		if err != nil {
			return 0, err
		}
		err = src.files.readAt(r.entry, p[:k], off)
		if err == nil {
			return int(k), nil
		}
		if src.goneErr() == nil {
			return 0, fmt.Errorf("transfer: %s: %w", r.root, err)
		}
		// The copy was replaced while being read: read the new one.
	}
}

// ask tells the fetches of the root which chunks this reader needs next.
func (r *Reader) ask(c int64) {
	r.mu.Lock()
	if r.want == c || r.closed {
		r.mu.Unlock()
		return
	}
	r.want = c
	r.mu.Unlock()
	hi := min(c+r.ahead, r.first+r.chunks)
	for _, f := range r.s.fetchesOf(r.root) {
		f.want(r, c, hi)
	}
}

// await returns a source holding chunk c, waiting for it to arrive.
func (r *Reader) await(c int64) (*source, error) {
	for {
		if err := r.closedErr(); err != nil {
			return nil, err
		}
		src, err := r.s.readable(r.ctx, r.root)
		if err != nil {
			if err := r.closedErr(); err != nil {
				return nil, err
			}
			r.mu.Lock()
			last := r.last
			r.mu.Unlock()
			if why := last.goneErr(); why != nil && !errors.Is(why, errReplaced) {
				return nil, why
			}
			return nil, err
		}
		r.mu.Lock()
		r.last = src
		r.mu.Unlock()
		if src.has(c) {
			return src, nil
		}
		changed := src.changed()
		if src.has(c) {
			return src, nil
		}
		select {
		case <-changed:
		case <-r.ctx.Done():
		}
	}
}

func (r *Reader) closedErr() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return fmt.Errorf("transfer: read %s: %w", r.Name(), io.ErrClosedPipe)
	}
	return nil
}

// want records that reader r needs chunks [lo, hi) next; an empty span
// forgets r.
func (f *fetch) want(r *Reader, lo, hi int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if hi <= lo {
		if _, ok := f.reading[r]; !ok {
			return
		}
		delete(f.reading, r)
	} else {
		if f.reading == nil {
			f.reading = make(map[*Reader]span)
		}
		f.reading[r] = span{lo, hi}
	}
	f.urgentLocked()
}

// urgentLocked hands the scheduler the chunks readers need, interleaved
// so that every reader's next chunk comes before any read-ahead (f.mu
// held).
func (f *fetch) urgentLocked() {
	sc := f.sched
	if sc == nil {
		return
	}
	u := sc.urgent[:0]
	for k := int64(0); ; k++ {
		more := false
		for _, sp := range f.reading {
			if i := sp.lo + k; i < sp.hi && i < sc.n {
				u = append(u, i)
				more = true
			}
		}
		if !more {
			break
		}
	}
	sc.urgent = u
	for _, s := range f.sessions {
		s.signal()
	}
}

// AwaitManifest returns root's manifest once root is served here,
// waiting while a fetch of root is getting it.
func (s *Service) AwaitManifest(ctx context.Context, root cid.Cid) (*manifest.Manifest, error) {
	src, err := s.readable(ctx, root)
	if err != nil {
		return nil, err
	}
	return src.m, nil
}

// Readable reports whether root can be opened here without a new fetch:
// it is served (shared, fetched, or arriving) or being fetched.
// Held reports whether root is served here in full: shared, or fetched
// to the end, and not stale.
func (s *Service) Held(root cid.Cid) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	src := s.sources[root]
	return src != nil && src.rec != nil && src.staleErr() == nil
}

func (s *Service) Readable(root cid.Cid) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sources[root] != nil || len(s.fetchesLocked(root)) > 0
}
