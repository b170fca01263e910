package transfer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/shoalnet/shoal/transfer/manifest"
	"github.com/shoalnet/shoal/transfer/wire"
)

// Verified streaming and cut-through. A chunk of a BLAKE3 share longer
// than one group is sent as its tree (the chaining values of its 16 KiB
// groups, checked against the chunk's digest) and then its groups, each
// a Part checked on arrival (manifest.VerifyTree, VerifyGroup). So a peer
// receiving a chunk holds a verified prefix of it long before the whole:
// it tells its own peers it has the chunk as soon as the tree checks out,
// and serves them each group as it arrives. A chunk no longer waits to be
// complete at every hop before the next hop starts; in a swarm the hops
// overlap, as in a pipeline. BENCHMARKS.md has the numbers.
//
// Streaming costs the sender of a complete chunk a pass of hashing to
// make the tree, and the receiver verifies group by group in its stream's
// reader instead of on the verifier goroutines: over one fast link to a
// lone fetcher it is slower (a 1 GiB loopback fetch into tmpfs moved
// 456 MB/s streamed against 780 MB/s whole). So a node streams a chunk
// only when it pays: when the chunk is still arriving here, or when
// other peers fetch the root from here too, so that the one asking will
// likely pass the chunk on.
//
// A relayed chunk whose upstream fails is abandoned with an Error
// (unavailable) after the parts sent so far; a fetcher that cancels a
// request being streamed gets an Error (cancelled) and no more parts.

// partialChunk is a chunk a fetch here is receiving with its tree. The
// receiving session fills buf group by group; streams serving the chunk
// meanwhile read the groups already verified. buf returns to the pool
// once the receiver and every reader have let go of it.
type partialChunk struct {
	i    int64
	tree []byte // verified against the chunk's digest
	buf  *[]byte
	put  func(*[]byte)

	mu      sync.Mutex
	groups  int  // groups verified, a prefix of the chunk
	failed  bool // the receiver gave up before the last group
	refs    int
	waiting bool          // a reader waits on changed
	changed chan struct{} // closed when groups or failed change and a reader waits
}

func newPartial(i int64, tree []byte, buf *[]byte, put func(*[]byte)) *partialChunk {
	return &partialChunk{i: i, tree: tree, buf: buf, put: put, refs: 1, changed: make(chan struct{})}
}

// signalLocked wakes the readers waiting for a change (p.mu held).
func (p *partialChunk) signalLocked() {
	if p.waiting {
		close(p.changed)
		p.changed = make(chan struct{})
		p.waiting = false
	}
}

// verified records that the first k groups are verified.
func (p *partialChunk) verified(k int) {
	p.mu.Lock()
	p.groups = k
	p.signalLocked()
	p.mu.Unlock()
}

// fail records that the rest of the chunk will not come.
func (p *partialChunk) fail() {
	p.mu.Lock()
	p.failed = true
	p.signalLocked()
	p.mu.Unlock()
}

// has reports whether group g is verified.
func (p *partialChunk) has(g int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.groups > g
}

// ref takes a reference to buf; false once the chunk failed.
func (p *partialChunk) ref() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failed && p.groups < manifest.Groups(int64(len(*p.buf))) {
		return false
	}
	p.refs++
	return true
}

// release drops a reference; the last returns buf to the pool.
func (p *partialChunk) release() {
	p.mu.Lock()
	p.refs--
	last := p.refs == 0
	p.mu.Unlock()
	if last {
		p.put(p.buf)
	}
}

// errPartialFailed: the receiver gave up on a chunk being passed on.
var errPartialFailed = errors.New("the chunk stopped arriving here")

// await returns once group g is verified, or errPartialFailed, or when
// stop or ctx end (their error; nil for stop).
func (p *partialChunk) await(ctx context.Context, g int, stop <-chan struct{}) error {
	for {
		p.mu.Lock()
		if p.groups > g {
			p.mu.Unlock()
			return nil
		}
		if p.failed {
			p.mu.Unlock()
			return errPartialFailed
		}
		p.waiting = true
		ch := p.changed
		p.mu.Unlock()
		select {
		case <-ch:
		case <-stop:
			return errCancelled
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// errCancelled: the fetcher cancelled the request being answered.
var errCancelled = errors.New("request cancelled")

// startPartial makes p, a chunk this node's fetch began to receive with
// its tree, available to the peers this node serves, and tells them. It
// reports false, and does nothing, when the chunk is held already or
// another partial of it is being received.
func (src *source) startPartial(p *partialChunk) bool {
	src.mu.Lock()
	defer src.mu.Unlock()
	if src.have == nil || src.have.Has(p.i) || src.partials[p.i] != nil {
		return false
	}
	if src.partials == nil {
		src.partials = make(map[int64]*partialChunk)
	}
	src.partials[p.i] = p
	src.showLocked(p.i)
	return true
}

// endPartial withdraws p. A chunk that failed may be announced again when
// it next begins to arrive; the peers already told learn it is gone when
// they ask for it.
func (src *source) endPartial(p *partialChunk, failed bool) {
	src.mu.Lock()
	defer src.mu.Unlock()
	if src.partials[p.i] != p {
		return
	}
	delete(src.partials, p.i)
	if failed && !src.have.Has(p.i) {
		src.shown.Clear(p.i)
	}
}

// partial returns the partial of chunk i with a reference taken, or nil.
func (src *source) partial(i int64) *partialChunk {
	src.mu.Lock()
	defer src.mu.Unlock()
	p := src.partials[i]
	if p == nil || !p.ref() {
		return nil
	}
	return p
}

// sendWhole streams chunk i, read here into data, with its tree. Data
// that does not hash to the chunk's digest means the file changed.
func (s *Service) sendWhole(ctx context.Context, w *wire.Writer, src *source, i int64, data []byte, stop <-chan struct{}) error {
	tb := s.getBuf(manifest.Groups(int64(len(data))) * manifest.DigestSize)
	defer s.putBuf(tb)
	tree, err := src.m.Tree((*tb)[:0], i, data)
	if err != nil {
		s.noteStale(src, err)
		return w.Write(&wire.Msg{Type: wire.TError, Code: wire.CodeStale, About: wire.AboutChunk, Ref: uint64(i), Text: "the file changed since it was indexed"}, nil)
	}
	return s.sendTree(ctx, w, i, tree, data, nil, stop)
}

// relay streams chunk i from the partial being received here, or answers
// that it is unavailable.
func (s *Service) relay(ctx context.Context, w *wire.Writer, src *source, i int64, stop <-chan struct{}) error {
	p := src.partial(i)
	if p == nil {
		return w.Write(&wire.Msg{Type: wire.TError, Code: wire.CodeUnavailable, About: wire.AboutChunk, Ref: uint64(i)}, nil)
	}
	defer p.release()
	return s.sendTree(ctx, w, i, p.tree, *p.buf, p, stop)
}

// sendTree writes chunk i's tree and then its groups; with p, each group
// once p has it, flushing what is written before each wait.
func (s *Service) sendTree(ctx context.Context, w *wire.Writer, i int64, tree, data []byte, p *partialChunk, stop <-chan struct{}) error {
	if err := w.Write(&wire.Msg{Type: wire.TTree, Index: uint64(i)}, tree); err != nil {
		return err
	}
	k := manifest.Groups(int64(len(data)))
	for g := 0; g < k; g++ {
		var err error
		select {
		case <-stop:
			err = errCancelled
		default:
			if p != nil && !p.has(g) {
				// Send what is written before waiting for the upstream.
				if err := w.Flush(); err != nil {
					return err
				}
				err = p.await(ctx, g, stop)
			}
		}
		if ctx.Err() != nil {
			return nil // the stream is closing
		}
		if err != nil {
			code := wire.CodeUnavailable
			if err == errCancelled {
				code = wire.CodeCancelled
			}
			return w.Write(&wire.Msg{Type: wire.TError, Code: code, About: wire.AboutChunk, Ref: uint64(i), Text: err.Error()}, nil)
		}
		part := data[g*manifest.GroupSize : min(len(data), (g+1)*manifest.GroupSize)]
		if ok, err := s.pace(ctx, w, len(part)); !ok {
			return err
		}
		if err := w.Write(&wire.Msg{Type: wire.TPart, Index: uint64(i), Offset: uint64(g * manifest.GroupSize)}, part); err != nil {
			return err
		}
	}
	return nil
}

// onTree begins a chunk sent part by part: its tree is checked against
// the digest, and the chunk is offered to this node's peers at once.
func (s *session) onTree(r *wire.Reader, m wire.Msg) error {
	f := s.f
	i := int64(m.Index)
	f.mu.Lock()
	if _, err := s.requestedLocked(m.Index); err != nil {
		f.mu.Unlock()
		return err
	}
	if !f.m.Streamable(i) {
		f.mu.Unlock()
		return fmt.Errorf("%w: chunk %d sent as a tree", wire.ErrProtocol, i)
	}
	n := f.m.ChunkLen(i)
	if want := manifest.Groups(n) * manifest.DigestSize; int(m.Length) != want {
		f.mu.Unlock()
		return fmt.Errorf("%w: tree of chunk %d is %d bytes, want %d", wire.ErrProtocol, i, m.Length, want)
	}
	now := time.Now()
	s.lastProg = now
	s.stalls = 0
	src := f.src
	f.mu.Unlock()
	if s.rx[i] != nil {
		return fmt.Errorf("%w: a second tree of chunk %d", wire.ErrProtocol, i)
	}
	tree := make([]byte, m.Length)
	if err := r.ReadPayload(tree); err != nil {
		return err
	}
	if err := f.m.VerifyTree(i, tree); err != nil {
		f.badChunk(s, i, err)
		return fmt.Errorf("chunk %d: %w", i, err)
	}
	rx := &rxChunk{p: newPartial(i, tree, f.s.getBuf(int(n)), f.s.putBuf), firstByte: now}
	rx.shown = src.startPartial(rx.p)
	if s.rx == nil {
		s.rx = make(map[int64]*rxChunk)
	}
	s.rx[i] = rx
	return nil
}

// onPart takes the next group of a chunk begun with a tree, verifies it
// and passes it on to the streams serving the chunk; the last group
// hands the chunk to the verifiers, to be written.
func (s *session) onPart(ctx context.Context, r *wire.Reader, m wire.Msg) error {
	f := s.f
	i := int64(m.Index)
	rx := s.rx[i]
	if rx == nil {
		return fmt.Errorf("%w: part of chunk %d without its tree", wire.ErrProtocol, m.Index)
	}
	buf := *rx.p.buf
	off := rx.next * manifest.GroupSize
	size := min(manifest.GroupSize, len(buf)-off)
	if m.Offset != uint64(off) || int(m.Length) != size {
		return fmt.Errorf("%w: part of chunk %d at %d (%d bytes), want %d (%d bytes)", wire.ErrProtocol, i, m.Offset, m.Length, off, size)
	}
	data := buf[off : off+size]
	if err := r.ReadPayload(data); err != nil {
		return err
	}
	if err := manifest.VerifyGroup(rx.p.tree, rx.next, data); err != nil {
		f.badChunk(s, i, err)
		return fmt.Errorf("chunk %d: %w", i, err)
	}
	rx.next++
	rx.p.verified(rx.next)
	last := off+size == len(buf)
	now := time.Now()
	f.mu.Lock()
	askedAt, asked := s.inflight[i]
	if asked {
		s.measure(now, askedAt, int64(size))
	}
	s.lastProg = now
	s.stalls = 0
	f.received += int64(size)
	f.s.counts.bytesReceived.Add(int64(size))
	var span trace.Span
	if last {
		span = s.answeredLocked(i, asked)
	}
	f.mu.Unlock()
	if !last {
		return nil
	}
	delete(s.rx, i)
	s.signal()
	select {
	case f.arrivals <- arrival{s: s, i: i, buf: rx.p.buf, p: rx.p, askedAt: askedAt, firstByte: rx.firstByte, span: span}:
		return nil
	case <-ctx.Done():
		endChunkSpan(span, ctx.Err(), false)
		s.abandon(rx)
		return ctx.Err()
	}
}

// abandon gives up a chunk that stopped arriving (reader goroutine).
func (s *session) abandon(rx *rxChunk) {
	rx.p.fail()
	if rx.shown {
		s.f.src.endPartial(rx.p, true)
	}
	rx.p.release()
}

// dropArrivals abandons the chunks still arriving when the stream ends.
func (s *session) dropArrivals() {
	for i, rx := range s.rx {
		s.abandon(rx)
		delete(s.rx, i)
	}
}
