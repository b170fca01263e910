package transfer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/shoalnet/shoal/transfer/wire"
)

// Providers of a fetch: their sessions, what they hold, their errors,
// dropping them, dialling them again, and running out of them.

// intake starts a session for each provider it is given.
func (f *fetch) intake(ctx context.Context) {
	for _, p := range f.opts.Peers {
		f.addPeer(ctx, p)
	}
	if f.opts.Providers != nil {
	loop:
		for {
			select {
			case p, ok := <-f.opts.Providers:
				if !ok {
					break loop
				}
				f.addPeer(ctx, p)
			case <-ctx.Done():
				break loop
			}
		}
	}
	f.mu.Lock()
	f.intakeDone = true
	f.checkStarved()
	f.mu.Unlock()
}

func (f *fetch) addPeer(ctx context.Context, p peer.ID) {
	if p == f.s.h.ID() || p == "" {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopping || f.sessions[p] != nil || f.banned[p] || f.attempts[p] >= maxAttempts {
		return
	}
	f.attempts[p]++
	s := &session{
		f: f, p: p, kick: make(chan struct{}, 1),
		inflight:  make(map[int64]time.Time),
		cancelled: make(map[int64]int),
		blockWait: make(map[uint64]chan blockResult),
		window:    f.s.cfg.InitialWindow,
	}
	f.sessions[p] = s
	if f.stats[p] == nil {
		f.stats[p] = &PeerProgress{Peer: p}
	}
	f.stats[p].Active = true
	f.stats[p].Error = ""
	f.sessionsWG.Add(1)
	go func() {
		defer f.sessionsWG.Done()
		s.run(ctx)
	}()
}

// sessionEnded cleans up after a session's stream ended.
func (f *fetch) sessionEnded(s *session, err error) {
	if err == nil {
		err = errors.New("session ended")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dropLocked(s, err, false)
}

// drop ends a session: its in-flight chunks go to other peers at once.
// A banned peer is not tried again in this fetch.
func (f *fetch) drop(s *session, err error, ban bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dropLocked(s, err, ban)
}

func (f *fetch) dropLocked(s *session, err error, ban bool) {
	if ban {
		f.banned[s.p] = true
	}
	if s.dead != nil {
		return
	}
	s.dead = err
	if s.st != nil {
		if s.lastWord {
			s.st.CloseWrite()
			s.st.SetReadDeadline(time.Now().Add(lastWordWait))
		} else {
			s.st.Reset()
		}
	}
	for _, ch := range s.blockWait {
		deliver(ch, blockResult{err: err})
	}
	if f.sessions[s.p] == s {
		delete(f.sessions, s.p)
	}
	st := f.stats[s.p]
	st.Active = false
	st.Inflight = 0
	if !f.stopping && !errors.Is(err, errMovedDirect) {
		st.Error = err.Error()
		f.failures = append(f.failures, fmt.Sprintf("%s: %v", s.p, err))
		if errors.Is(err, ErrDenied) {
			if f.denied == nil {
				f.denied = make(map[peer.ID]error)
			}
			f.denied[s.p] = err
		}
		f.s.log.Debug("provider dropped", "root", f.root, "peer", s.p, "err", err)
	}
	if f.sched != nil {
		for i := range s.inflight {
			f.sched.release(i, s, false)
		}
		if !s.all && s.have != nil {
			for i := int64(0); i < f.sched.n; i++ {
				if s.have.Has(i) {
					f.sched.lost(i)
				}
			}
		}
	}
	s.inflight = nil
	s.endSpansLocked("provider dropped: " + err.Error())
	if !f.stopping {
		for _, o := range f.sessions {
			o.signal()
		}
		f.retryLater(s, err, ban)
		f.checkStarved()
	}
}

// errPeerGone: membership declared the provider dead or gone.
var errPeerGone = errors.New("peer left or failed (membership)")

// retryLater dials again, after a pause, a provider that delivered
// chunks before its stream or connection broke (a reset under load, a
// stall): it is likely still there and still has them (f.mu held).
func (f *fetch) retryLater(s *session, err error, ban bool) {
	if ban || s.chunks == 0 || f.attempts[s.p] >= maxAttempts || f.ctx == nil ||
		errors.Is(err, ErrDenied) || errors.Is(err, errPeerGone) || errors.Is(err, errMovedDirect) {
		return
	}
	f.retrying++
	delay := time.Duration(f.attempts[s.p]) * time.Second
	p := s.p
	f.bg.Add(1)
	go func() {
		defer f.bg.Done()
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-f.ctx.Done():
		case <-f.ending:
		}
		f.mu.Lock()
		f.retrying--
		f.mu.Unlock()
		select {
		case <-f.ending:
			return
		default:
		}
		if f.ctx.Err() == nil {
			f.addPeer(f.ctx, p)
		}
		f.mu.Lock()
		f.checkStarved()
		f.mu.Unlock()
	}()
}

// checkStarved fails the fetch when no provider is left and none can come
// (f.mu held).
func (f *fetch) checkStarved() {
	if f.stopping || !f.intakeDone || len(f.sessions) > 0 || f.retrying > 0 {
		return
	}
	if f.sched != nil && f.sched.complete() {
		return
	}
	if len(f.denied) > 0 && len(f.denied) == len(f.attempts) {
		for _, err := range f.denied {
			f.fail(fmt.Errorf("%w: %s is not open to this peer (%d provider(s) refused; %v)", ErrDenied, f.root, len(f.denied), err))
			return
		}
	}
	msg := "no provider could be reached"
	if n := len(f.failures); n > 0 {
		tried := f.failures
		if n > 5 {
			tried = tried[n-5:]
		}
		msg = fmt.Sprintf("tried %d provider(s): %v", len(f.attempts), tried)
	} else if len(f.attempts) == 0 {
		msg = "none found"
	}
	f.fail(fmt.Errorf("%w for %s: %s", ErrNoProviders, f.root, msg))
}

// stopSessions ends every session and waits for them.
func (f *fetch) stopSessions() {
	f.mu.Lock()
	f.stopping = true
	for _, s := range f.sessions {
		f.dropLocked(s, errors.New("fetch finished"), false)
	}
	f.mu.Unlock()
	f.sessionsWG.Wait()
}

func (f *fetch) kickAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.sessions {
		s.signal()
	}
}

// anyHoldsAllLocked reports whether a provider said it holds every chunk
// (f.mu held).
func (f *fetch) anyHoldsAllLocked() bool {
	for _, s := range f.sessions {
		if s.all && s.dead == nil {
			return true
		}
	}
	return false
}

// onHave records what a provider holds.
func (f *fetch) onHave(s *session, m wire.Msg) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	wasReady := s.ready
	if f.sched == nil {
		switch m.Type {
		case wire.THaveAll:
			s.all = true
		default:
			n := len(m.Bits)
			if s.stashed+n > maxStash {
				return fmt.Errorf("%w: too many have messages before the manifest", wire.ErrProtocol)
			}
			s.stashed += n
			m.Bits = append([]byte(nil), m.Bits...)
			s.stash = append(s.stash, m)
		}
	} else if err := f.applyHave(s, m); err != nil {
		return err
	}
	if m.Type != wire.THaveUpdate {
		s.ready = true
	}
	if s.ready && !wasReady {
		f.firstPeer.CompareAndSwap(0, int64(time.Since(f.started)))
		select {
		case f.ready <- struct{}{}:
		default:
		}
	}
	s.signal()
	return nil
}

// applyHave applies a have message to the scheduler (f.mu held).
func (f *fetch) applyHave(s *session, m wire.Msg) error {
	sc := f.sched
	switch m.Type {
	case wire.THaveAll:
		if !s.all && s.have != nil {
			for i := int64(0); i < sc.n; i++ {
				if s.have.Has(i) {
					sc.lost(i)
				}
			}
		}
		s.all, s.have = true, nil
	case wire.THave:
		if s.all {
			return nil
		}
		if s.have == nil {
			s.have = NewBitfield(sc.n)
		}
		start := int64(m.Start)
		if start >= sc.n || int64(len(m.Bits))*8 > sc.n-start+7 {
			return fmt.Errorf("%w: have bits beyond %d chunks", wire.ErrProtocol, sc.n)
		}
		for k, b := range m.Bits {
			if b == 0 {
				continue
			}
			for bit := int64(0); bit < 8; bit++ {
				i := start + int64(k)*8 + bit
				if b&(0x80>>bit) != 0 && i < sc.n && !s.have.Has(i) {
					s.have.Set(i)
					sc.gained(i)
				}
			}
		}
	case wire.THaveUpdate:
		i := int64(m.Index)
		if i >= sc.n {
			return fmt.Errorf("%w: have-update for chunk %d of %d", wire.ErrProtocol, i, sc.n)
		}
		if s.all {
			return nil
		}
		if s.have == nil {
			s.have = NewBitfield(sc.n)
		}
		if !s.have.Has(i) {
			s.have.Set(i)
			sc.gained(i)
		}
	}
	return nil
}

// onError handles an Error from a provider; an error returned ends the
// session.
func (f *fetch) onError(s *session, m wire.Msg) error {
	switch m.About {
	case wire.AboutStream:
		if m.Code == wire.CodeDenied {
			return fmt.Errorf("%w by %s: %s", ErrDenied, s.p, m.Text)
		}
		return fmt.Errorf("provider: %v: %s", m.Code, m.Text)
	case wire.AboutBlock:
		f.mu.Lock()
		ch := s.blockWait[m.Ref]
		f.mu.Unlock()
		if ch != nil {
			deliver(ch, blockResult{err: fmt.Errorf("provider: %v: %s", m.Code, m.Text)})
		}
		return nil
	}
	i := int64(m.Ref)
	if rx := s.rx[i]; rx != nil {
		// A chunk being streamed stopped: the parts so far are of no use.
		s.abandon(rx)
		delete(s.rx, i)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := s.inflight[i]; ok {
		delete(s.inflight, i)
		s.endSpanLocked(i, "answered "+m.Code.String()+": "+m.Text)
		f.sched.release(i, s, false)
	} else if s.uncancelLocked(i) {
		// The answer to a request this node cancelled.
		if m.Code == wire.CodeCancelled || m.Code == wire.CodeUnavailable {
			return nil
		}
	}
	switch m.Code {
	case wire.CodeCancelled:
	case wire.CodeUnavailable, wire.CodeNotFound:
		if s.have != nil && s.have.Has(i) {
			s.have.Clear(i)
			f.sched.lost(i)
		} else if s.all {
			return fmt.Errorf("provider claimed every chunk but lacks %d", i)
		} else {
			// Asked for a chunk it had not shown, for a reader: not again.
			if s.lacks == nil {
				s.lacks = NewBitfield(f.sched.n)
			}
			s.lacks.Set(i)
		}
	case wire.CodeBusy:
		s.window = max(1, s.window/2)
	default:
		return fmt.Errorf("provider: chunk %d: %v: %s", i, m.Code, m.Text)
	}
	for _, o := range f.sessions {
		o.signal()
	}
	return nil
}
