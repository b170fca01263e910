package transfer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"go.opentelemetry.io/otel/trace"

	"github.com/shoalnet/shoal/transfer/manifest"
	"github.com/shoalnet/shoal/transfer/wire"
)

// session is a fetch's stream to one provider. Its reader goroutine takes
// haves, blocks and chunks; its sender goroutine writes requests when the
// scheduler has work for it. Fields marked f.mu are guarded by the fetch's
// mutex.
type session struct {
	f  *fetch
	p  peer.ID
	st network.Stream

	wmu sync.Mutex // guards w
	w   *wire.Writer

	kick chan struct{}

	// f.mu:
	ready     bool // the provider said what it holds
	all       bool
	have      Bitfield
	lacks     Bitfield   // chunks it was asked for unshown and said it lacks
	stash     []wire.Msg // haves received before the manifest was known
	stashed   int
	inflight  map[int64]time.Time
	cancelled map[int64]int // requests cancelled per chunk, whose answers may still arrive
	cancels   []int64       // cancels to send
	haves     []int64       // chunks verified since the stream opened, to tell the provider
	window    int
	lastProg  time.Time    // last arrival, or when the in-flight set last became non-empty
	bytesAt   atomic.Int64 // unix ns: the last piece of a chunk's payload came (not f.mu)
	stalls    int
	bytes     int64
	chunks    int64
	rate      float64 // bytes/s, moving average
	rateAt    time.Time
	rateBytes int64
	dead      error
	lastWord  bool // a message was sent to be read before the stream ends (tell)
	blockWait map[uint64]chan blockResult
	spans     map[int64]trace.Span // requests' spans by chunk, when the fetch is traced

	// The reader goroutine's own: chunks arriving part by part.
	rx map[int64]*rxChunk
}

// rxChunk is a chunk arriving as a tree and then parts (stream.go).
type rxChunk struct {
	p         *partialChunk
	shown     bool // p is served to this node's peers as it arrives
	next      int  // the next group expected
	firstByte time.Time
}

type blockResult struct {
	data []byte
	err  error
}

// deliver hands a block answer to its waiter without ever blocking the
// reader: a second answer to the same request (a confused or hostile
// peer) is dropped, not waited on.
func deliver(ch chan blockResult, r blockResult) {
	select {
	case ch <- r:
	default:
	}
}

// measure updates s.rate with a chunk of n bytes that arrived at now,
// asked for at asked (f.mu held): a moving average over intervals of at
// least 200ms, the first estimate from the first chunk's round trip.
func (s *session) measure(now, asked time.Time, n int64) {
	if s.rate <= 0 {
		if d := now.Sub(asked); d > 0 {
			s.rate = float64(n) / d.Seconds()
		}
		s.rateAt, s.rateBytes = now, 0
		return
	}
	s.rateBytes += n
	d := now.Sub(s.rateAt)
	if d < 200*time.Millisecond {
		return
	}
	inst := float64(s.rateBytes) / d.Seconds()
	s.rate = 0.7*s.rate + 0.3*inst
	s.rateAt, s.rateBytes = now, 0
}

// windowQueue is how much work, in time at its measured rate, a peer's
// window may hold: enough to keep a fast link busy across round trips,
// little enough that a slow peer does not hoard chunks others could
// deliver sooner.
const windowQueue = 250 * time.Millisecond

// windowLimit is the largest window s should have: its rate times
// windowQueue in whole chunks, plus 2, at most max (f.mu held).
//
// A provider shared by many fetchers, or one of many providers sharing a
// fetcher's download, delivers each chunk slowly; requests queued there
// beyond the next one only make every chunk they wait behind arrive later
// (and, in a swarm, later to be passed on). In the 15-peer testbed swarm
// at 20 Mbit/s a floor of 2 instead of 4 took the last peer from 1.90 to
// 1.77 times the bound (BENCHMARKS.md).
func (s *session) windowLimit(max int, chunk int64) int {
	if s.rate <= 0 || chunk <= 0 {
		return max
	}
	return min(max, int(s.rate*windowQueue.Seconds()/float64(chunk))+2)
}

// requestedLocked checks that chunk index was asked of this provider:
// asked reports a request in flight; otherwise one was cancelled, whose
// answer may still come (f.mu held).
func (s *session) requestedLocked(index uint64) (asked bool, err error) {
	f := s.f
	if f.sched == nil || index >= uint64(f.sched.n) {
		return false, fmt.Errorf("%w: chunk %d not requested", wire.ErrProtocol, index)
	}
	i := int64(index)
	_, asked = s.inflight[i]
	if !asked && s.cancelled[i] == 0 {
		return false, fmt.Errorf("%w: chunk %d not requested", wire.ErrProtocol, i)
	}
	return asked, nil
}

// answeredLocked records that the provider's answer to a request for
// chunk i has arrived whole: the request leaves the window (the chunk
// stays assigned while it is verified and written) and its span, if
// any, is returned to go with the chunk; or, if it was cancelled, its
// cancel is settled (f.mu held).
func (s *session) answeredLocked(i int64, asked bool) (span trace.Span) {
	if asked {
		delete(s.inflight, i)
		s.f.sched.release(i, s, true)
		span = s.takeSpanLocked(i)
	} else {
		s.uncancelLocked(i)
	}
	s.adjustWindow()
	return span
}

// uncancelLocked settles one cancelled request for chunk i, and reports
// whether there was one (f.mu held).
func (s *session) uncancelLocked(i int64) bool {
	if s.cancelled[i] == 0 {
		return false
	}
	if s.cancelled[i]--; s.cancelled[i] == 0 {
		delete(s.cancelled, i)
	}
	return true
}

// adjustWindow fits the window to its limit when a chunk has arrived:
// shrunk to it, or opened by one when the window held the peer back
// (doubling per round trip) (f.mu held).
func (s *session) adjustWindow() {
	if limit := s.windowLimit(s.f.s.cfg.MaxWindow, s.f.m.ChunkSize); s.window > limit {
		s.window = limit
	} else if s.window < limit && len(s.inflight)+1 >= s.window {
		s.window++
	}
}

// eta estimates how long s takes to deliver a chunk queued behind k
// others, from its measured rate; -1 when nothing is measured yet (f.mu
// held).
func (s *session) eta(k int, chunk int64) time.Duration {
	if s.rate <= 0 {
		return -1
	}
	return time.Duration(float64(int64(k+1)*chunk) / s.rate * float64(time.Second))
}

// position returns how many of s's requests were made before chunk i's
// (f.mu held).
func (s *session) position(i int64) int {
	t := s.inflight[i]
	k := 0
	for _, u := range s.inflight {
		if u.Before(t) {
			k++
		}
	}
	return k
}

// hasChunk reports whether the provider holds chunk i (f.mu held).
func (s *session) hasChunk(i int64) bool { return s.all || s.have.Has(i) }

func (s *session) signal() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// run opens the stream and reads it until it ends. It always calls
// f.sessionEnded.
func (s *session) run(ctx context.Context) {
	err := s.open(ctx)
	if err == nil {
		sctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.sendLoop(sctx)
		}()
		err = s.readLoop(sctx)
		s.f.mu.Lock()
		lastWord := s.lastWord
		s.f.mu.Unlock()
		if lastWord {
			// Let the provider read the last word before the stream
			// goes: it closes its side when it has (or the deadline
			// set when the session was dropped passes).
			io.Copy(io.Discard, s.st)
		}
		s.st.Reset()
		s.dropArrivals()
		cancel()
		wg.Wait()
	}
	s.f.sessionEnded(s, err)
}

func (s *session) open(ctx context.Context) error {
	octx, cancel := context.WithTimeout(ctx, s.f.s.cfg.OpenTimeout)
	defer cancel()
	// Not over a limited connection (a relay that bounds data or time
	// would cut the transfer): libp2p waits for the direct connection
	// hole punching gives, up to the dial timeout.
	limited := limitedOnly(s.f.s.h.Network().ConnsToPeer(s.p))
	st, err := s.f.s.h.NewStream(octx, s.p, wire.ProtocolID)
	if err != nil {
		if limited || limitedOnly(s.f.s.h.Network().ConnsToPeer(s.p)) {
			return fmt.Errorf("%w (%v)", errLimitedRelay, err)
		}
		return fmt.Errorf("open stream: %w", err)
	}
	s.f.mu.Lock()
	if s.f.stopping {
		s.f.mu.Unlock()
		st.Reset()
		return context.Canceled
	}
	s.st = st
	// The provider learns what this node holds (a seeding provider shows
	// it other chunks); later chunks follow as they are verified.
	var held Bitfield
	if s.f.sched != nil {
		held = s.f.sched.doneBits()
	}
	s.haves = nil
	s.f.mu.Unlock()
	s.w = wire.NewWriter(st, 64<<10)
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.w.Write(&wire.Msg{Type: wire.TOpen, Root: s.f.root}, nil); err != nil {
		st.Reset()
		return err
	}
	for start := 0; start < len(held); start += wire.MaxBitsBytes {
		end := min(start+wire.MaxBitsBytes, len(held))
		if err := s.w.Write(&wire.Msg{Type: wire.THave, Start: uint64(start) * 8, Bits: held[start:end]}, nil); err != nil {
			st.Reset()
			return err
		}
	}
	if err := s.w.Flush(); err != nil {
		st.Reset()
		return err
	}
	return nil
}

// sendLoop writes chunk requests and cancels whenever the scheduler has
// some for this peer.
func (s *session) sendLoop(ctx context.Context) {
	var reqs []int64
	var traces []wire.Trace // reqs' trace contexts, when the fetch is traced
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		}
		f := s.f
		f.mu.Lock()
		if s.dead != nil {
			f.mu.Unlock()
			return
		}
		reqs, traces = reqs[:0], traces[:0]
		cancels := s.cancels
		s.cancels = nil
		haves := s.haves
		s.haves = nil
		if f.sched != nil && s.ready {
			now := time.Now()
			ask := func(i int64) {
				if len(s.inflight) == 0 {
					s.lastProg = now
					// Idle time is not the peer's slowness.
					s.rateAt, s.rateBytes = now, 0
				}
				// Distinct times keep the order of the requests.
				s.inflight[i] = now.Add(time.Duration(len(reqs)))
				reqs = append(reqs, i)
				if f.traced {
					traces = append(traces, s.startChunkSpan(i, now))
				}
			}
			for len(s.inflight) < s.window {
				p := f.sched.next(s)
				if p.i < 0 {
					break
				}
				if p.from != nil {
					p.from.cancelLocked(p.i)
				}
				ask(p.i)
			}
			// A chunk a reader waits for need not wait for room, nor for
			// a seed to show it when no peer holding everything is here.
			probe := len(f.sched.urgent) > 0 && !f.anyHoldsAllLocked()
			for len(s.inflight) < s.window+urgentExtra {
				i := f.sched.nextUrgent(s, probe)
				if i < 0 {
					break
				}
				ask(i)
			}
		}
		f.mu.Unlock()
		if len(reqs) == 0 && len(cancels) == 0 && len(haves) == 0 {
			continue
		}
		s.wmu.Lock()
		var err error
		for _, i := range cancels {
			if err == nil {
				err = s.w.Write(&wire.Msg{Type: wire.TCancel, Index: uint64(i)}, nil)
			}
		}
		for _, i := range haves {
			if err == nil {
				err = s.w.Write(&wire.Msg{Type: wire.THaveUpdate, Index: uint64(i)}, nil)
			}
		}
		for k, i := range reqs {
			if err == nil {
				m := wire.Msg{Type: wire.TRequest, Index: uint64(i)}
				if k < len(traces) {
					m.Trace = traces[k]
				}
				err = s.w.Write(&m, nil)
			}
		}
		if err == nil {
			err = s.w.Flush()
		}
		s.wmu.Unlock()
		if err != nil {
			s.st.Reset()
			return
		}
	}
}

// lastWordWait bounds how long a dropped session waits for its provider
// to read its last word and close the stream.
const lastWordWait = 2 * time.Second

// cancelLocked withdraws the request for chunk i: it leaves the
// in-flight set, a Cancel is sent, and an answer that still comes is
// expected (f.mu held).
func (s *session) cancelLocked(i int64) {
	if _, ok := s.inflight[i]; !ok {
		return
	}
	delete(s.inflight, i)
	s.endSpanLocked(i, "cancelled: asked of another peer, or no longer needed")
	s.cancelled[i]++
	s.cancels = append(s.cancels, i)
	s.signal()
}

// tell sends m to the provider as the last word of a session about to be
// dropped: when it is dropped, the stream is closed for writing instead
// of reset, so that the provider reads m first.
func (s *session) tell(m wire.Msg) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.w == nil || s.st == nil {
		return
	}
	s.st.SetWriteDeadline(time.Now().Add(lastWordWait))
	if s.w.Write(&m, nil) != nil || s.w.Flush() != nil {
		return
	}
	s.f.mu.Lock()
	s.lastWord = true
	s.f.mu.Unlock()
}

// getBlock asks the provider for a manifest block and waits for it.
func (s *session) getBlock(ctx context.Context, id uint64, c wire.Msg) ([]byte, error) {
	ch := make(chan blockResult, 1)
	s.f.mu.Lock()
	if s.dead != nil {
		s.f.mu.Unlock()
		return nil, s.dead
	}
	s.blockWait[id] = ch
	s.f.mu.Unlock()
	defer func() {
		s.f.mu.Lock()
		delete(s.blockWait, id)
		s.f.mu.Unlock()
	}()
	c.Trace = toWire(trace.SpanContextFromContext(ctx))
	s.wmu.Lock()
	err := s.w.Write(&c, nil)
	if err == nil {
		err = s.w.Flush()
	}
	s.wmu.Unlock()
	if err != nil {
		return nil, err
	}
	t := time.NewTimer(s.f.s.cfg.RequestTimeout)
	defer t.Stop()
	select {
	case r := <-ch:
		return r.data, r.err
	case <-t.C:
		return nil, fmt.Errorf("manifest block %s: no answer from %s within %v", c.CID, s.p, s.f.s.cfg.RequestTimeout)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// maxStash bounds the have-bits kept from a provider before the manifest
// is known (enough for a share of 128 Mi chunks).
const maxStash = 16 << 20

func (s *session) readLoop(ctx context.Context) error {
	f := s.f
	r := wire.NewReader(s.st, f.s.cfg.StreamBuffer)
	for {
		m, err := r.Next()
		if err != nil {
			if err == io.EOF {
				return errors.New("provider closed the stream")
			}
			return err
		}
		switch m.Type {
		case wire.TPeers:
			f.onPeers(s.p, m.Peers)
		case wire.TLimits:
			if f.opts.OnLimits != nil {
				if err := f.opts.OnLimits(s.p, m.Allow); err != nil {
					return err
				}
			}
		case wire.THaveAll, wire.THave, wire.THaveUpdate:
			if err := f.onHave(s, m); err != nil {
				return err
			}
		case wire.TBlock:
			if m.Length > manifest.MaxBlockSize {
				return fmt.Errorf("%w: block of %d bytes", wire.ErrProtocol, m.Length)
			}
			data := make([]byte, m.Length)
			if err := r.ReadPayload(data); err != nil {
				return err
			}
			f.mu.Lock()
			ch := s.blockWait[m.ID]
			f.mu.Unlock()
			if ch != nil {
				deliver(ch, blockResult{data: data})
			}
		case wire.TChunk:
			if err := s.onChunk(ctx, r, m); err != nil {
				return err
			}
		case wire.TTree:
			if err := s.onTree(r, m); err != nil {
				return err
			}
		case wire.TPart:
			if err := s.onPart(ctx, r, m); err != nil {
				return err
			}
		case wire.TError:
			if err := f.onError(s, m); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%w: unexpected %v from the serving side", wire.ErrProtocol, m.Type)
		}
	}
}

// payloadPiece is how much of a chunk's payload arrives between two
// notes of the provider's progress.
const payloadPiece = 64 << 10

// onChunk reads a chunk's payload and hands it to the verifiers.
func (s *session) onChunk(ctx context.Context, r *wire.Reader, m wire.Msg) error {
	f := s.f
	f.mu.Lock()
	asked, err := s.requestedLocked(m.Index)
	if err != nil {
		f.mu.Unlock()
		return err
	}
	i := int64(m.Index)
	if want := f.m.ChunkLen(i); int64(m.Length) != want {
		f.mu.Unlock()
		return fmt.Errorf("%w: chunk %d is %d bytes, want %d", wire.ErrProtocol, i, m.Length, want)
	}
	now := time.Now()
	askedAt := s.inflight[i]
	if asked {
		s.measure(now, askedAt, int64(m.Length))
	}
	span := s.answeredLocked(i, asked)
	s.lastProg = now
	s.stalls = 0
	f.received += int64(m.Length)
	f.mu.Unlock()
	f.s.counts.bytesReceived.Add(int64(m.Length))
	s.signal()

	buf := f.s.getBuf(int(m.Length))
	// A long chunk on a slow link is progress, not a stall.
	if err := r.ReadPayloadEach(*buf, payloadPiece, func() { s.bytesAt.Store(time.Now().UnixNano()) }); err != nil {
		endChunkSpan(span, err, false)
		f.s.putBuf(buf)
		f.mu.Lock()
		if asked {
			f.sched.requeue(i)
		}
		f.mu.Unlock()
		return err
	}
	select {
	case f.arrivals <- arrival{s: s, i: i, buf: buf, askedAt: askedAt, firstByte: now, span: span}:
		return nil
	case <-ctx.Done():
		endChunkSpan(span, ctx.Err(), false)
		f.s.putBuf(buf)
		return ctx.Err()
	}
}

type arrival struct {
	s   *session
	i   int64
	buf *[]byte
	// p, for a chunk that arrived part by part, owns buf and has verified
	// it already.
	p *partialChunk
	// When the chunk was asked for (zero if its request was cancelled)
	// and when its first byte came, for the debug log.
	askedAt, firstByte time.Time
	// span is the request's span, when the fetch is traced.
	span trace.Span
}
