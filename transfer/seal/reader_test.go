package seal

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// recordingReader is an io.ReaderAt over b that records every read.
type recordingReader struct {
	b     []byte
	mu    sync.Mutex
	reads [][2]int64 // offset, length
}

func (r *recordingReader) ReadAt(p []byte, off int64) (int, error) {
	r.mu.Lock()
	r.reads = append(r.reads, [2]int64{off, int64(len(p))})
	r.mu.Unlock()
	return bytes.NewReader(r.b).ReadAt(p, off)
}

// newTestReader encrypts data as the file at path with chunk size c and
// returns a ReaderAt over its ciphertext and the underlying reader.
func newTestReader(t testing.TB, data []byte, c int64, k Key) (*ReaderAt, *recordingReader) {
	t.Helper()
	const path = "dir/file.bin"
	ct := sealBytes(mustLayout(t, c), mustCodec(t, k, path), data)
	under := &recordingReader{b: ct}
	r, err := NewReaderAt(under, int64(len(ct)), k, path, c)
	if err != nil {
		t.Fatal(err)
	}
	return r, under
}

func TestReaderAtRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, c := range chunkSizes {
		p := c - Overhead
		for _, size := range []int64{0, 1, p - 1, p, p + 1, 3*p + 5} {
			t.Run(fmt.Sprintf("chunk=%d/size=%d", c, size), func(t *testing.T) {
				data := randomBytes(t, size)
				r, under := newTestReader(t, data, c, testKey(4))
				if r.Size() != size {
					t.Fatalf("Size() = %d, want %d", r.Size(), size)
				}
				for range 120 {
					var off int64
					switch rng.IntN(3) {
					case 0: // near a segment boundary
						off = rng.Int64N(4)*p + rng.Int64N(33) - 16
					default:
						off = rng.Int64N(size + 20)
					}
					off = max(off, 0)
					buf := make([]byte, rng.IntN(int(2*p)))
					n, err := r.ReadAt(buf, off)
					want := data[min(off, size):min(off+int64(len(buf)), size)]
					if n != len(want) || !bytes.Equal(buf[:n], want) {
						t.Fatalf("ReadAt(%d bytes at %d) = %d bytes, want %d", len(buf), off, n, len(want))
					}
					if short := n < len(buf); short != (err == io.EOF) || (!short && err != nil) {
						t.Fatalf("ReadAt(%d bytes at %d) = %d, %v", len(buf), off, n, err)
					}
				}
				// Every read of ciphertext is one whole chunk.
				ctSize := CipherSize(size, c)
				for _, rd := range under.reads {
					if rd[0]%c != 0 || rd[1] != min(c, ctSize-rd[0]) {
						t.Fatalf("ciphertext read of %d bytes at %d is not chunk %d", rd[1], rd[0], rd[0]/c)
					}
				}
			})
		}
	}
}

func TestReaderAtSequential(t *testing.T) {
	const c = 256 * kib
	data := randomBytes(t, 3*(c-Overhead)+5)
	r, under := newTestReader(t, data, c, testKey(4))
	got, err := io.ReadAll(io.NewSectionReader(r, 0, r.Size()))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("sequential read differs")
	}
	// io.ReadAll reads in small pieces: the cache must make that one
	// ciphertext read a segment.
	if len(under.reads) != 4 {
		t.Fatalf("%d ciphertext reads for 4 segments", len(under.reads))
	}
	if n, err := r.ReadAt(make([]byte, 1), r.Size()); n != 0 || err != io.EOF {
		t.Fatalf("ReadAt at the end = %d, %v", n, err)
	}
	if _, err := r.ReadAt(make([]byte, 1), -1); err == nil {
		t.Fatal("ReadAt at a negative offset succeeded")
	}
	if n, err := r.ReadAt(nil, 5); n != 0 || err != nil {
		t.Fatalf("empty ReadAt = %d, %v", n, err)
	}
}

func TestReaderAtConcurrent(t *testing.T) {
	const c = 256 * kib
	p := int64(c - Overhead)
	data := randomBytes(t, 5*p+17)
	r, _ := newTestReader(t, data, c, testKey(4))
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 9))
			for range 100 {
				off := rng.Int64N(int64(len(data)))
				buf := make([]byte, rng.IntN(int(p)))
				n, err := r.ReadAt(buf, off)
				if err != nil && err != io.EOF {
					t.Error(err)
					return
				}
				if !bytes.Equal(buf[:n], data[off:off+int64(n)]) {
					t.Errorf("concurrent ReadAt at %d differs", off)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestReaderAtDamage(t *testing.T) {
	const c = 256 * kib
	p := int64(c - Overhead)
	data := randomBytes(t, 3*p)
	const path = "f"
	ct := sealBytes(mustLayout(t, c), mustCodec(t, testKey(1), path), data)
	ct[c+10] ^= 1
	r, err := NewReaderAt(bytes.NewReader(ct), int64(len(ct)), testKey(1), path, c)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	if _, err := r.ReadAt(buf, 5); err != nil {
		t.Fatalf("reading the intact first segment: %v", err)
	}
	if _, err := r.ReadAt(buf, 2*p+5); err != nil {
		t.Fatalf("reading the intact last segment: %v", err)
	}
	n, err := r.ReadAt(buf, p-50)
	if !errors.Is(err, ErrDamaged) || n != 50 || !bytes.Equal(buf[:n], data[p-50:p]) {
		t.Fatalf("reading into the damaged segment = %d, %v; want the 50 good bytes and ErrDamaged", n, err)
	}

	wrong, err := NewReaderAt(bytes.NewReader(ct), int64(len(ct)), testKey(2), path, c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wrong.ReadAt(buf, 0); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("reading with the wrong key: %v, want ErrWrongKey", err)
	}

	// Ciphertext shorter than the size given.
	short, err := NewReaderAt(bytes.NewReader(ct[:c+100]), int64(len(ct)), testKey(1), path, c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := short.ReadAt(buf, p+1); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("reading past the ciphertext's end: %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestNewReaderAtBad(t *testing.T) {
	rd := bytes.NewReader(nil)
	if _, err := NewReaderAt(rd, 10, testKey(1), "f", 256*kib); !errors.Is(err, ErrDamaged) {
		t.Errorf("impossible size: %v, want ErrDamaged", err)
	}
	if _, err := NewReaderAt(rd, -1, testKey(1), "f", 256*kib); !errors.Is(err, ErrDamaged) {
		t.Errorf("negative size: %v, want ErrDamaged", err)
	}
	if _, err := NewReaderAt(rd, 100, testKey(1), "", 256*kib); err == nil || !strings.Contains(err.Error(), "empty path") {
		t.Errorf("empty path: %v", err)
	}
	if _, err := NewReaderAt(rd, 100, testKey(1), "f", 1000); err == nil {
		t.Error("chunk size 1000 accepted")
	}
	r, err := NewReaderAt(rd, 0, testKey(1), "f", 0)
	if err != nil || r.Size() != 0 {
		t.Fatalf("empty file: %v, %v", r, err)
	}
	if n, err := r.ReadAt(make([]byte, 4), 0); n != 0 || err != io.EOF {
		t.Fatalf("reading an empty file = %d, %v", n, err)
	}
}

// TestReaderAtMemory checks that a huge claimed size costs no more memory
// than a segment or two.
func TestReaderAtMemory(t *testing.T) {
	const c = 16 * mib
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	r, err := NewReaderAt(bytes.NewReader(make([]byte, 100)), 1<<62, testKey(1), "f", c)
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{0, 1 << 50, r.Size() - 1} {
		if _, err := r.ReadAt(make([]byte, 10), off); err == nil {
			t.Fatalf("read at %d of a 100-byte ciphertext succeeded", off)
		}
	}
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 3*c {
		t.Fatalf("reads allocated %d bytes, more than 3 chunks", grew)
	}
}
