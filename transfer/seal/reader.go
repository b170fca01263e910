package seal

import (
	"errors"
	"fmt"
	"io"
	"sync"
)

// ReaderAt reads the plaintext of one encrypted file from its ciphertext,
// decrypting only the segments a read touches. It is safe for concurrent
// use, as io.ReaderAt requires.
type ReaderAt struct {
	r      io.ReaderAt
	c      *codec
	l      layout
	cipher int64 // ciphertext length
	plain  int64 // plaintext length
	segs   int64

	mu     sync.Mutex
	cached int64    // index of the segment whose plaintext is cache.pt, or -1
	cache  *scratch // nil until a segment is cached
	spare  *scratch // a free pair of buffers, or nil
}

// NewReaderAt returns a reader of the plaintext of the file at path in an
// encrypted share (its slash-separated manifest entry path; for a
// single-file share, the share's name), whose ciphertext of cipherSize
// bytes r reads. chunkSize is the share's chunk size (0 means the default).
//
// Every ReadAt reads whole ciphertext segments from r: ReadAt(buf, i*C)
// with len(buf) the length of chunk i, so a reader that blocks until
// chunks arrive blocks only for the chunks a read needs. The plaintext of
// the last segment read is kept, so sequential small reads decrypt each
// segment once. Memory is a pair of segment buffers (ciphertext and
// plaintext) per read in progress, and two pairs kept between reads,
// whatever cipherSize.
//
// It fails if chunkSize is invalid, path is empty, or cipherSize is no
// ciphertext's length (an error wrapping ErrDamaged).
func NewReaderAt(r io.ReaderAt, cipherSize int64, k Key, path string, chunkSize int64) (*ReaderAt, error) {
	l, err := newLayout(chunkSize)
	if err != nil {
		return nil, err
	}
	if path == "" {
		return nil, errors.New("seal: empty path: give the file's path in the share (its manifest entry path)")
	}
	aead, err := newAEAD(k)
	if err != nil {
		return nil, err
	}
	return newReaderAt(r, cipherSize, newCodec(aead, path), l)
}

func newReaderAt(r io.ReaderAt, cipherSize int64, c *codec, l layout) (*ReaderAt, error) {
	plain, err := l.plainSize(cipherSize)
	if err != nil {
		return nil, fmt.Errorf("seal: %s: %w", c.path, err)
	}
	return &ReaderAt{r: r, c: c, l: l, cipher: cipherSize, plain: plain, segs: l.segments(plain), cached: -1}, nil
}

// Size returns the length of the plaintext.
func (r *ReaderAt) Size() int64 { return r.plain }

// ReadAt reads len(p) bytes of plaintext at offset off, as io.ReaderAt
// does: it returns io.EOF when it reads fewer because the plaintext ends.
// A read fails if the ciphertext cannot be read (io.ErrUnexpectedEOF if
// it is shorter than the size given), or with an error wrapping
// ErrWrongKey (segment 0) or ErrDamaged (any other) if a segment does not
// authenticate. The bytes it returns have always been authenticated.
func (r *ReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("seal: negative offset %d", off)
	}
	n := 0
	for n < len(p) && off < r.plain {
		i := off / r.l.p
		m, err := r.copySegment(p[n:], i, off-i*r.l.p)
		n += m
		off += int64(m)
		if err != nil {
			return n, err
		}
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// copySegment copies the plaintext of segment i from offset within into
// dst, decrypting the segment unless it is cached.
func (r *ReaderAt) copySegment(dst []byte, i, within int64) (int, error) {
	r.mu.Lock()
	if r.cached == i {
		n := copy(dst, r.cache.pt[within:])
		r.mu.Unlock()
		return n, nil
	}
	s := r.spare
	r.spare = nil
	r.mu.Unlock()
	if s == nil {
		s = new(scratch)
	}

	// Read and decrypt without the lock, so that concurrent reads of
	// other segments do not wait for this one's ciphertext to arrive.
	err := r.load(s, i)
	n := 0
	if err == nil {
		n = copy(dst, s.pt[within:])
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.spare = s
		return 0, err
	}
	if r.cache != nil {
		r.spare = r.cache
	}
	r.cache, r.cached = s, i
	return n, nil
}

// load reads and opens segment i into s.pt.
func (r *ReaderAt) load(s *scratch, i int64) error {
	off := i * r.l.c
	s.ct = grow(s.ct, min(r.l.c, r.cipher-off))
	if err := readFull(r.r, s.ct, off); err != nil {
		return fmt.Errorf("seal: %s: chunk %d: %w", r.c.path, i, err)
	}
	pt, err := r.c.open(s.pt[:0], s.ct, i, i == r.segs-1, i == 0)
	if err != nil {
		return err
	}
	s.pt = pt
	return nil
}
