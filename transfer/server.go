package transfer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/shoalnet/shoal/transfer/wire"
)

func absPath(p string) (string, error) {
	a, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("transfer: %s: %w", p, err)
	}
	return a, nil
}

// request is one queued GetBlock or Request of a serving stream.
type request struct {
	block bool
	id    uint64 // block request ID or chunk index
	c     wire.Msg
	trace wire.Trace // a chunk request's trace context (a block's is in c)
}

// serveQueue holds a stream's pending requests; the reader adds, the
// writer takes. Cancels remove requests not yet being served.
type serveQueue struct {
	mu        sync.Mutex
	items     []request
	queued    map[uint64]int // chunk index -> queued count
	cancelled map[uint64]int
	notify    chan struct{}
	max       int

	// The chunk request being answered: a cancel for it closes stop, so
	// that a chunk streamed part by part ends early.
	cur     uint64
	stop    chan struct{}
	stopped bool
}

// begin records that r is being answered and returns the channel its
// cancel closes (nil for a block).
func (q *serveQueue) begin(r request) <-chan struct{} {
	if r.block {
		return nil
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.cur, q.stop, q.stopped = r.id, make(chan struct{}), false
	return q.stop
}

// end records that the request begun is answered, and reports whether
// it was cancelled meanwhile.
func (q *serveQueue) end() (cancelled bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.stop = nil
	return q.stopped
}

func (q *serveQueue) push(r request) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) >= q.max {
		return false
	}
	q.items = append(q.items, r)
	if !r.block {
		q.queued[r.id]++
	}
	q.signal()
	return true
}

func (q *serveQueue) signal() {
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

func (q *serveQueue) cancel(index uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.queued[index] > q.cancelled[index] {
		q.cancelled[index]++
	} else if q.stop != nil && q.cur == index && !q.stopped {
		close(q.stop)
		q.stopped = true
	}
}

// pop returns the next request that was not cancelled.
func (q *serveQueue) pop() (request, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.items) > 0 {
		r := q.items[0]
		q.items[0] = request{}
		q.items = q.items[1:]
		if r.block {
			return r, true
		}
		q.queued[r.id]--
		if q.queued[r.id] == 0 {
			delete(q.queued, r.id)
		}
		if q.cancelled[r.id] > 0 {
			q.cancelled[r.id]--
			if q.cancelled[r.id] == 0 {
				delete(q.cancelled, r.id)
			}
			continue
		}
		return r, true
	}
	return request{}, false
}

// serve runs the serving side of one transfer stream until the peer closes
// it (nil) or breaks the protocol (an error). abort must unblock pending
// reads and writes (reset the stream): serve calls it when the peer
// breaks the protocol, so that a writer blocked on a peer that does not
// read cannot hold it.
func (s *Service) serve(ctx context.Context, rw io.ReadWriter, p peer.ID, abort func()) error {
	r := wire.NewReader(rw, 16<<10)
	w := wire.NewWriter(rw, s.cfg.StreamBuffer)
	open, err := r.Next()
	if err != nil {
		return err
	}
	if open.Type != wire.TOpen {
		return fmt.Errorf("%w: first message is %v, not open", wire.ErrProtocol, open.Type)
	}
	if n := s.uploads.Add(1); n > int64(s.cfg.MaxUploads) {
		s.uploads.Add(-1)
		_ = w.Write(&wire.Msg{Type: wire.TError, Code: wire.CodeBusy, Text: fmt.Sprintf("all %d upload slots are in use; try later", s.cfg.MaxUploads)}, nil)
		return w.Flush()
	}
	defer s.uploads.Add(-1)
	if s.cfg.Authorize != nil {
		if err := s.cfg.Authorize(ctx, p, open.Root); err != nil {
			s.denied.Add(1)
			s.log.Info("denied", "peer", p, "root", open.Root, "err", err)
			_ = w.Write(&wire.Msg{Type: wire.TError, Code: wire.CodeDenied, Text: err.Error()}, nil)
			return w.Flush()
		}
	}
	if s.cfg.Limits != nil {
		for _, allow := range s.cfg.Limits(open.Root) {
			if err := w.Write(&wire.Msg{Type: wire.TLimits, Allow: allow}, nil); err != nil {
				return err
			}
		}
	}
	src := s.awaitSource(ctx, open.Root, s.cfg.OpenTimeout/2)
	if src == nil {
		_ = w.Write(&wire.Msg{Type: wire.TError, Code: wire.CodeNotFound, Text: "root not held here: " + open.Root.String()}, nil)
		return w.Flush()
	}
	if err := src.staleErr(); err != nil {
		_ = w.Write(&wire.Msg{Type: wire.TError, Code: wire.CodeStale, Text: err.Error()}, nil)
		return w.Flush()
	}
	have, sub := src.subscribe()
	defer src.unsubscribe(sub)
	s.pex.join(open.Root, p)
	defer s.pex.leave(open.Root, p)
	// A peer fetching a root this node fetches too will hold chunks of it:
	// fetch from it as well.
	s.addProviderToFetches(open.Root, p)
	var rv *revealer
	if have == nil {
		// This node holds the whole root: initial seeding. The peer is
		// shown chunks a few at a time (see seeding.go); a root of few
		// chunks is shown at once.
		n := src.m.NumChunks()
		v := s.seeds.acquire(open.Root, n)
		defer s.seeds.release(open.Root, v)
		streams := s.pex.count(open.Root)
		rv = newRevealer(v, n > aloneBatch, streams)
		defer func() {
			fresh, dup := rv.sent()
			s.log.Debug("seeding stream ended", "root", open.Root, "peer", p, "shown", rv.reveal, "fresh", fresh, "second_copies", dup)
			rv.close()
		}()
	}
	if rv != nil && rv.reveal {
		if err := w.Write(&wire.Msg{Type: wire.THave, Start: 0, Bits: make([]byte, min(wire.MaxBitsBytes, (src.m.NumChunks()+7)/8))}, nil); err != nil {
			return err
		}
	} else if have == nil {
		if err := w.Write(&wire.Msg{Type: wire.THaveAll}, nil); err != nil {
			return err
		}
	} else {
		for start := 0; start < len(have); start += wire.MaxBitsBytes {
			end := min(start+wire.MaxBitsBytes, len(have))
			if err := w.Write(&wire.Msg{Type: wire.THave, Start: uint64(start) * 8, Bits: have[start:end]}, nil); err != nil {
				return err
			}
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}

	q := &serveQueue{
		queued: make(map[uint64]int), cancelled: make(map[uint64]int),
		notify: make(chan struct{}, 1), max: s.cfg.MaxQueuedPerStream,
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	werr := make(chan error, 1)
	go func() { werr <- s.serveWriter(ctx, w, src, q, sub, p, rv) }()

	rerr := s.serveReader(r, src, q, w, rv)
	cancel()
	abort()
	err = <-werr
	if rerr == io.EOF { // the fetching side closed: the writer's error says more
		return err
	}
	return rerr
}

// serveReader takes the fetching side's messages: requests go to the
// queue (more than its cap end the stream), cancels and holdings to the
// queue and the revealer.
func (s *Service) serveReader(r *wire.Reader, src *source, q *serveQueue, w *wire.Writer, rv *revealer) error {
	n := uint64(src.m.NumChunks())
	reported := false // a corrupt chunk was reported (and checked) on this stream
	for {
		m, err := r.Next()
		if err != nil {
			return err
		}
		switch m.Type {
		case wire.TGetBlock:
			if !q.push(request{block: true, id: m.ID, c: m}) {
				return fmt.Errorf("%w: more than %d requests queued", wire.ErrProtocol, q.max)
			}
		case wire.TRequest:
			if m.Index >= n {
				return fmt.Errorf("%w: chunk %d out of range (%d chunks)", wire.ErrProtocol, m.Index, n)
			}
			if !q.push(request{id: m.Index, trace: m.Trace}) {
				return fmt.Errorf("%w: more than %d requests queued", wire.ErrProtocol, q.max)
			}
			if rv != nil {
				rv.requested(int64(m.Index))
			}
		case wire.TCancel:
			q.cancel(m.Index)
		case wire.THaveUpdate:
			// The fetcher verified a chunk (from here or elsewhere).
			if m.Index >= n {
				return fmt.Errorf("%w: have-update for chunk %d of %d", wire.ErrProtocol, m.Index, n)
			}
			if rv != nil && rv.holds(int64(m.Index)) {
				q.signal()
			}
		case wire.THave:
			// What the fetcher holds when it opens the stream.
			if m.Start >= n || uint64(len(m.Bits))*8 > n-m.Start+7 {
				return fmt.Errorf("%w: have bits beyond %d chunks", wire.ErrProtocol, n)
			}
			if rv != nil {
				more := false
				for k, b := range m.Bits {
					for bit := uint64(0); b != 0 && bit < 8; bit++ {
						if i := m.Start + uint64(k)*8 + bit; b&(0x80>>bit) != 0 && i < n {
							more = rv.holds(int64(i))
						}
					}
				}
				if more {
					q.signal()
				}
			}
		case wire.TError:
			// A chunk sent from here failed verification there.
			if m.About != wire.AboutChunk || m.Code != wire.CodeCorrupt || m.Ref >= n {
				return fmt.Errorf("%w: unexpected error %v about %d from the fetching side", wire.ErrProtocol, m.Code, m.Ref)
			}
			if !reported {
				reported = true
				s.checkReported(src, int64(m.Ref))
			}
		default:
			return fmt.Errorf("%w: unexpected %v from the fetching side", wire.ErrProtocol, m.Type)
		}
	}
}

func (s *Service) serveWriter(ctx context.Context, w *wire.Writer, src *source, q *serveQueue, sub *haveSub, p peer.ID, rv *revealer) error {
	var subNotify chan struct{}
	if sub != nil {
		subNotify = sub.notify
	}
	pexTick := time.NewTicker(pexInterval)
	defer pexTick.Stop()
	var pexSent uint64
	pexFetches := -1
	sendPeers := func() error {
		v, nf := s.pex.version(src.root), s.fetchCount(src.root)
		if v == pexSent && nf == pexFetches {
			return nil
		}
		pexSent, pexFetches = v, nf
		if peers := s.pexList(src.root, p); len(peers) > 0 {
			if err := w.Write(&wire.Msg{Type: wire.TPeers, Peers: peers}, nil); err != nil {
				return err
			}
			return w.Flush()
		}
		return nil
	}
	if err := sendPeers(); err != nil {
		return err
	}
	reveal := func() error {
		if rv == nil {
			return nil
		}
		shown := rv.take()
		for _, i := range shown {
			if err := w.Write(&wire.Msg{Type: wire.THaveUpdate, Index: uint64(i)}, nil); err != nil {
				return err
			}
		}
		if len(shown) > 0 {
			return w.Flush()
		}
		return nil
	}
	if err := reveal(); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-q.notify:
		case <-subNotify:
		case <-pexTick.C:
			if rv != nil {
				rv.tick()
			}
			if err := sendPeers(); err != nil {
				return err
			}
			if err := reveal(); err != nil {
				return err
			}
			continue
		}
		if err := reveal(); err != nil {
			return err
		}
		if sub != nil {
			for _, i := range sub.take() {
				if err := w.Write(&wire.Msg{Type: wire.THaveUpdate, Index: uint64(i)}, nil); err != nil {
					return err
				}
			}
		}
		for {
			select {
			case <-pexTick.C:
				// A busy stream never idles: tell it about peers here.
				if err := sendPeers(); err != nil {
					return err
				}
			default:
			}
			req, ok := q.pop()
			if !ok {
				break
			}
			if src.rec == nil {
				// A fetch that completes hands its root over to a share
				// at the destination: serve from there from now on.
				if cur := s.source(src.root); cur != nil && cur != src && cur.rec != nil {
					src = cur
				}
			}
			stop := q.begin(req)
			actx, end := s.serveSpan(ctx, req, src.root, p)
			err := s.answer(actx, w, src, req, stop)
			end(err)
			cancelled := q.end()
			if err != nil {
				return err
			}
			// A chunk whose streaming was cancelled midway did not reach
			// the peer.
			if rv != nil && !req.block && !cancelled && rv.served(int64(req.id)) {
				if err := reveal(); err != nil {
					return err
				}
			}
			if ctx.Err() != nil {
				return nil
			}
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
}

// answer writes the response to one request; stop is closed if the
// fetcher cancels it.
func (s *Service) answer(ctx context.Context, w *wire.Writer, src *source, req request, stop <-chan struct{}) error {
	fail := func(m *wire.Msg) error {
		answered(ctx, m)
		return w.Write(m, nil)
	}
	if req.block {
		c := req.c.CID
		if _, ok := src.blocks[c]; !ok {
			return fail(&wire.Msg{Type: wire.TError, Code: wire.CodeNotFound, About: wire.AboutBlock, Ref: req.id, Text: "block is not part of this share"})
		}
		end := s.phase(ctx, "shoal.read")
		data, err := getBlock(s.db, c)
		end(err)
		if err != nil {
			return fail(&wire.Msg{Type: wire.TError, Code: wire.CodeInternal, About: wire.AboutBlock, Ref: req.id, Text: "block unavailable"})
		}
		end = s.phase(ctx, "shoal.send")
		err = w.Write(&wire.Msg{Type: wire.TBlock, ID: req.id}, data)
		end(err)
		return err
	}
	i := int64(req.id)
	// Part by part when it pays: the chunk is still arriving here, or
	// other peers fetch the root from here too, so the peer will likely
	// pass it on. A lone fetcher gets the whole chunk, which costs
	// neither side a pass of hashing for the tree (stream.go).
	stream := src.m.Streamable(i) && (!src.has(i) || s.pex.count(src.root) > 1)
	if !src.has(i) {
		if stream {
			trace.SpanFromContext(ctx).SetAttributes(attribute.Bool("shoal.relayed", true))
			end := s.phase(ctx, "shoal.send")
			err := s.relay(ctx, w, src, i, stop)
			end(err)
			return err
		}
		return fail(&wire.Msg{Type: wire.TError, Code: wire.CodeUnavailable, About: wire.AboutChunk, Ref: req.id})
	}
	buf := s.getBuf(int(src.m.ChunkLen(i)))
	defer s.putBuf(buf)
	end := s.phase(ctx, "shoal.read")
	msg, cur := s.readForAnswer(ctx, src, i, *buf)
	if msg != nil {
		end(errors.New(msg.Text))
		return fail(msg)
	} else if cur != nil {
		end(nil)
		return s.answer(ctx, w, cur, req, stop)
	}
	end(nil)
	end = s.phase(ctx, "shoal.send")
	var err error
	if stream {
		err = s.sendWhole(ctx, w, src, i, *buf, stop)
	} else if ok, perr := s.pace(ctx, w, len(*buf)); !ok {
		end(perr)
		return perr // nil when the service is closing
	} else {
		err = w.Write(&wire.Msg{Type: wire.TChunk, Index: req.id}, *buf)
	}
	end(err)
	if err == nil {
		s.counts.served(len(*buf))
	}
	return err
}

// pace waits, with what is written so far flushed, until the upload
// limit (if any) lets n more bytes go. ok is false when they must not: on
// err, or with a nil err when the service is closing.
func (s *Service) pace(ctx context.Context, w *wire.Writer, n int) (ok bool, err error) {
	if s.limit == nil {
		return true, nil
	}
	if err := w.Flush(); err != nil {
		return false, err
	}
	return s.limit.WaitN(ctx, n) == nil, nil
}

// noteStale stops serving src, whose files changed since it was
// indexed, and says so once.
func (s *Service) noteStale(src *source, err error) {
	if src.markStale(err) {
		s.log.Warn("share no longer served: a file changed since it was indexed; share it again",
			"root", src.root, "err", err)
		if s.cfg.OnStale != nil {
			s.cfg.OnStale(src.root, err)
		}
	}
}

// checkReported reads chunk i of a share that a fetcher reports failed
// verification there, and stops serving the share if the chunk no longer
// matches its hash: the file was changed in place, keeping its size and
// modification time. A partial copy is verified as it arrives: nothing
// to check.
func (s *Service) checkReported(src *source, i int64) {
	if src.rec == nil || src.staleErr() != nil {
		return
	}
	buf := s.getBuf(int(src.m.ChunkLen(i)))
	defer s.putBuf(buf)
	if err := src.files.readChunk(i, *buf); err != nil {
		if errors.Is(err, errStale) {
			s.noteStale(src, err)
		}
		return
	}
	if err := src.m.Verify(i, *buf); err != nil {
		s.noteStale(src, fmt.Errorf("%w: chunk %d no longer matches its hash (reported by a fetcher, checked here): %v", errStale, i, err))
	}
}

// readForAnswer reads chunk i, held here, into buf. When that fails it
// returns the Error to answer with, or the source to answer from instead
// (a fetch that just completed is renaming its copy into place, and its
// share takes over).
func (s *Service) readForAnswer(ctx context.Context, src *source, i int64, buf []byte) (*wire.Msg, *source) {
	err := src.files.readChunk(i, buf)
	if err == nil {
		return nil, nil
	}
	code := wire.CodeInternal
	if errors.Is(err, errStale) {
		code = wire.CodeStale
		s.noteStale(src, err)
	} else if src.rec == nil {
		if cur := s.awaitHandover(ctx, src); cur != nil {
			return nil, cur
		}
		code = wire.CodeUnavailable
	} else {
		s.log.Warn("read chunk", "root", src.root, "chunk", i, "err", err)
	}
	return &wire.Msg{Type: wire.TError, Code: code, About: wire.AboutChunk, Ref: uint64(i), Text: err.Error()}, nil
}

// handoverWait bounds how long a chunk request waits for a completed
// fetch's copy to become a share.
const handoverWait = 10 * time.Second

// awaitHandover waits for the partial source src of a fetch that is
// finishing to be replaced by the share at its destination, and returns
// that; nil if the fetch failed or it takes longer than handoverWait.
func (s *Service) awaitHandover(ctx context.Context, src *source) *source {
	return s.waitSources(ctx, handoverWait, func() (*source, bool) {
		cur := s.sources[src.root]
		if cur != nil && cur != src && cur.rec != nil {
			return cur, true
		}
		// Done, with nothing, when the fetch ended without a share.
		return nil, cur == nil && len(s.fetchesLocked(src.root)) == 0
	})
}
