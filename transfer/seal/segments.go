package seal

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
)

// scratch is one goroutine's pair of segment buffers: ciphertext and
// plaintext are kept apart so a segment that fails to open is still intact
// for diagnosis.
type scratch struct{ ct, pt []byte }

// grow returns buf with length n, reallocating only when its capacity is
// short.
func grow(buf []byte, n int64) []byte {
	if int64(cap(buf)) < n {
		return make([]byte, n)
	}
	return buf[:n]
}

// runner runs a per-segment function over a file's segments.
type runner struct {
	workers int
	scratch []scratch // one per worker, reused from file to file
}

// run calls fn(s, i) for every segment i in [0, n): segment 0 on the
// calling goroutine first, so that its error (a wrong key) comes before any
// other, then the rest on up to r.workers goroutines, each with its own
// scratch. It stops at the first error or when ctx ends, returns that
// error, and leaves no goroutine running.
func (r *runner) run(ctx context.Context, n int64, fn func(s *scratch, i int64) error) error {
	if n == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := fn(&r.scratch[0], 0); err != nil {
		return err
	}
	w := int(min(int64(r.workers), n-1))
	if w <= 1 {
		for i := int64(1); i < n; i++ {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := fn(&r.scratch[0], i); err != nil {
				return err
			}
		}
		return nil
	}
	var (
		next  atomic.Int64
		stop  atomic.Bool
		once  sync.Once
		first error
		wg    sync.WaitGroup
	)
	next.Store(1)
	for k := range w {
		s := &r.scratch[k]
		wg.Go(func() {
			for !stop.Load() {
				i := next.Add(1) - 1
				if i >= n {
					return
				}
				err := ctx.Err()
				if err == nil {
					err = fn(s, i)
				}
				if err != nil {
					once.Do(func() { first = err })
					stop.Store(true)
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}

// readFull reads len(buf) bytes at off, or fails with io.ErrUnexpectedEOF
// if r has fewer.
func readFull(r io.ReaderAt, buf []byte, off int64) error {
	n, err := r.ReadAt(buf, off)
	if n == len(buf) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("reading %d bytes at offset %d: %w", len(buf), off, err)
}
