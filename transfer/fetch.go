package transfer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/shoalnet/shoal/transfer/manifest"
	"github.com/shoalnet/shoal/transfer/wire"
)

// FetchOptions are the options of Fetch.
type FetchOptions struct {
	// Overwrite replaces an existing destination.
	Overwrite bool
	// IntoDir makes dst a directory to fetch into: the content lands at
	// dst/<share name>, known once the manifest is.
	IntoDir bool
	// Peers are providers to try first.
	Peers []peer.ID
	// Providers delivers more providers as they are found; Fetch gives up
	// with ErrNoProviders once it is closed (or nil) and every provider
	// has failed.
	Providers <-chan peer.ID
	// Progress, if set, is called from one goroutine every
	// ProgressInterval and once at the end. A slow callback delays only
	// the reports, never the transfer.
	Progress func(Progress)
	// ProgressInterval defaults to 200ms.
	ProgressInterval time.Duration
	// OnBadPeer, if set, is told of a provider dropped for sending data
	// that failed verification or breaking the protocol.
	OnBadPeer func(peer.ID, error)
	// OnLimits, if set, is given each allow list a provider says root is
	// limited to, before anything else from that provider is used; an
	// error drops the provider.
	OnLimits func(p peer.ID, allow []string) error
}

// Progress is a snapshot of a fetch.
type Progress struct {
	Root        cid.Cid        `json:"root"`
	Name        string         `json:"name,omitempty"`
	Phase       string         `json:"phase"` // "queued", "providers", "manifest", "fetching", "finishing", "done"
	Bytes       int64          `json:"bytes"` // verified bytes held, resumed ones included
	Total       int64          `json:"total"`
	Chunks      int64          `json:"chunks"`
	TotalChunks int64          `json:"total_chunks"`
	Resumed     int64          `json:"resumed_chunks"` // chunks found on disk when the fetch started
	Durable     int64          `json:"durable_chunks"` // chunks a crash now would not lose (the last checkpoint)
	Received    int64          `json:"received"`       // chunk bytes received in this run, duplicates included
	Duplicates  int64          `json:"duplicate_chunks"`
	Rate        float64        `json:"rate"` // bytes/s received, a moving average over about a second
	Elapsed     time.Duration  `json:"elapsed"`
	Peers       []PeerProgress `json:"peers"`
}

// PeerProgress is one provider's part of a fetch.
type PeerProgress struct {
	Peer     peer.ID `json:"peer"`
	Bytes    int64   `json:"bytes"` // verified bytes from this peer
	Chunks   int64   `json:"chunks"`
	Rate     float64 `json:"rate"` // bytes/s, verified bytes over the fetch's time
	Inflight int     `json:"inflight"`
	Active   bool    `json:"active"`
	Error    string  `json:"error,omitempty"` // why the peer was dropped
}

// Result is what a finished fetch produced.
type Result struct {
	Root     cid.Cid
	Path     string
	Manifest *manifest.Manifest
	Progress Progress
}

// fetch is one Fetch call. mu guards the scheduler and every session's
// f.mu fields.
type fetch struct {
	s    *Service
	root cid.Cid
	dst  string
	temp string
	opts FetchOptions
	ctx  context.Context

	reportMu sync.Mutex // serializes calls of opts.Progress
	reported bool       // the final report was made (reportMu)

	arrivals chan arrival
	ready    chan struct{} // a session became ready (buffered 1)
	fatal    chan error    // buffered 1
	doneCh   chan struct{} // closed when every chunk is done

	mu          sync.Mutex
	stopping    bool
	m           *manifest.Manifest
	files       *fileSet
	src         *source
	sched       *scheduler
	sessions    map[peer.ID]*session
	stats       map[peer.ID]*PeerProgress
	attempts    map[peer.ID]int
	banned      map[peer.ID]bool
	failures    []string
	denied      map[peer.ID]error // providers that refused the root to us
	pexAdded    int               // providers added by peer exchange
	retrying    int               // providers to be dialled again soon
	bg          sync.WaitGroup    // retry timers
	ending      chan struct{}     // closed when run returns
	intakeDone  bool
	sessionsWG  sync.WaitGroup
	phase       string
	resumed     int64
	durable     int64 // chunks recorded by the last checkpoint
	held        int64 // verified bytes on disk
	received    int64
	duplicates  int64
	nextBlockID uint64
	started     time.Time
	reading     map[*Reader]span // what readers of the content need next (read.go)
	rate        float64          // bytes/s received recently (sampleRate)
	rateAt      time.Time
	rateRecv    int64
}

// maxAttempts is how often a fetch tries one provider.
const maxAttempts = 3

// Fetch downloads root into dst (a file or a directory, as the share is),
// from every provider it learns of, verifying every chunk. It blocks until
// the content is complete, durable and renamed into place, or until ctx
// ends or no provider is left. An interrupted fetch keeps its verified
// chunks and resumes where it stopped when Fetch is called again with the
// same root and dst, in this process or after a restart. While it runs,
// and afterwards, this node serves what it holds of root.
func (s *Service) Fetch(ctx context.Context, root cid.Cid, dst string, opts FetchOptions) (*Result, error) {
	p, err := s.Start(ctx, root, dst, opts)
	if err != nil {
		return nil, err
	}
	return p.Wait()
}

// Pending is a fetch started by Start.
type Pending struct {
	done chan struct{}
	res  *Result
	err  error
}

// Done is closed when the fetch has ended.
func (p *Pending) Done() <-chan struct{} { return p.done }

// Wait blocks until the fetch ends and returns what Fetch would have.
func (p *Pending) Wait() (*Result, error) {
	<-p.done
	return p.res, p.err
}

// Start is Fetch in the background. It checks its arguments and registers
// the fetch before it returns, so that Open, called next, waits for the
// fetch's content instead of finding nothing; the fetch runs until done,
// failed, or ctx ends.
func (s *Service) Start(ctx context.Context, root cid.Cid, dst string, opts FetchOptions) (*Pending, error) {
	if !root.Defined() {
		return nil, errors.New("transfer: fetch: undefined root CID")
	}
	dst, err := absPath(dst)
	if err != nil {
		return nil, err
	}
	if opts.IntoDir {
		st, err := os.Stat(dst)
		if err != nil {
			return nil, fmt.Errorf("transfer: fetch into %s: %w", dst, err)
		}
		if !st.IsDir() {
			return nil, fmt.Errorf("transfer: fetch into %s: not a directory", dst)
		}
	} else if err := checkDst(dst, opts.Overwrite); err != nil {
		return nil, err
	}
	if opts.ProgressInterval <= 0 {
		opts.ProgressInterval = 200 * time.Millisecond
	}
	key := root.KeyString() + "\x00" + dst
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	if s.active[key] != nil {
		s.mu.Unlock()
		return nil, fmt.Errorf("transfer: %s is already being fetched to %s", root, dst)
	}
	f := &fetch{
		s: s, root: root, dst: dst, opts: opts,
		temp:     tempPath(dst),
		arrivals: make(chan arrival, runtime.GOMAXPROCS(0)),
		ready:    make(chan struct{}, 1),
		fatal:    make(chan error, 1),
		doneCh:   make(chan struct{}),
		sessions: make(map[peer.ID]*session),
		stats:    make(map[peer.ID]*PeerProgress),
		attempts: make(map[peer.ID]int),
		banned:   make(map[peer.ID]bool),
		phase:    "providers",
		started:  time.Now(),
		ending:   make(chan struct{}),
	}
	s.active[key] = f
	s.wg.Add(1)
	s.mu.Unlock()
	p := &Pending{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		defer s.wg.Done()
		p.res, p.err = f.exec(ctx, key)
	}()
	return p, nil
}

// exec waits for a fetch slot and runs the fetch.
func (f *fetch) exec(ctx context.Context, key string) (*Result, error) {
	s := f.s
	defer func() {
		s.mu.Lock()
		delete(s.active, key)
		// Readers waiting for this fetch's content learn it has ended.
		s.sourceAddedLocked()
		s.mu.Unlock()
	}()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.ctx, cancel)
	defer stop()
	f.ctx = ctx
	select {
	case s.fetchSlots <- struct{}{}:
	default:
		// Every slot is taken: wait for one, and say so.
		f.mu.Lock()
		f.phase = "queued"
		f.mu.Unlock()
		select {
		case s.fetchSlots <- struct{}{}:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		f.mu.Lock()
		f.phase = "providers"
		f.mu.Unlock()
	}
	defer func() { <-s.fetchSlots }()
	return f.run(ctx)
}

func (f *fetch) run(ctx context.Context) (res *Result, err error) {
	ctx, cancel := context.WithCancel(ctx)
	var bg sync.WaitGroup
	defer func() {
		cancel()
		close(f.ending)
		f.bg.Wait()
		f.stopSessions()
		bg.Wait()
		if err != nil {
			f.unserve(err)
		}
		if f.files != nil && err != nil {
			if cerr := f.checkpoint(); cerr != nil {
				f.s.log.Warn("checkpoint", "root", f.root, "err", cerr)
			}
			f.files.close()
		}
	}()

	bg.Add(1)
	go func() {
		defer bg.Done()
		f.intake(ctx)
	}()

	// The manifest: stored already (resume, or our own share), else from
	// the first provider that answers.
	m, _, lerr := f.s.localManifest(ctx, f.root)
	if lerr != nil {
		f.setPhase("manifest")
		m, err = f.fetchManifest(ctx)
		if err != nil {
			return nil, err
		}
	}
	if f.opts.IntoDir {
		if err := f.setDst(filepath.Join(f.dst, m.Name)); err != nil {
			return nil, err
		}
	}
	if err := f.prepare(m); err != nil {
		return nil, err
	}
	f.setPhase("fetching")

	workers := runtime.GOMAXPROCS(0)
	for range workers {
		bg.Add(1)
		go func() {
			defer bg.Done()
			f.verifier(ctx)
		}()
	}
	bg.Add(1)
	go func() {
		defer bg.Done()
		f.ticker(ctx)
	}()
	f.kickAll()

	select {
	case <-f.doneCh:
	case err := <-f.fatal:
		return nil, err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	f.setPhase("finishing")
	f.stopSessions()
	if err := f.finalize(); err != nil {
		return nil, err
	}
	f.setPhase("done")
	p := f.progress()
	f.report(p, true)
	return &Result{Root: f.root, Path: f.dst, Manifest: f.m, Progress: p}, nil
}

func (f *fetch) setPhase(p string) {
	f.mu.Lock()
	f.phase = p
	f.mu.Unlock()
}

func (f *fetch) fail(err error) {
	select {
	case f.fatal <- err:
	default:
	}
}

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
	if !f.stopping {
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
		errors.Is(err, ErrDenied) || errors.Is(err, errPeerGone) {
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

// fetchManifest gets and verifies the manifest from the providers.
func (f *fetch) fetchManifest(ctx context.Context) (*manifest.Manifest, error) {
	blocks := make(map[cid.Cid][]byte)
	get := func(ctx context.Context, c cid.Cid) ([]byte, error) {
		var errs []error
		for attempt := 0; attempt < 8; attempt++ {
			s, err := f.readySession(ctx)
			if err != nil {
				return nil, errors.Join(append(errs, err)...)
			}
			f.mu.Lock()
			f.nextBlockID++
			id := f.nextBlockID
			f.mu.Unlock()
			data, err := s.getBlock(ctx, id, wire.Msg{Type: wire.TGetBlock, ID: id, CID: c})
			if err == nil {
				if err := verifyBlock(c, data); err != nil {
					f.bad(s, err)
					errs = append(errs, err)
					continue
				}
				blocks[c] = data
				return data, nil
			}
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			errs = append(errs, err)
			f.drop(s, fmt.Errorf("manifest: %w", err), false)
		}
		return nil, errors.Join(errs...)
	}
	m, err := manifest.Load(ctx, f.root, get)
	if err != nil {
		if errors.Is(err, ErrNoProviders) || errors.Is(err, ErrDenied) || ctx.Err() != nil {
			return nil, err
		}
		return nil, fmt.Errorf("transfer: manifest of %s: %w", f.root, err)
	}
	if err := putBlocks(f.s.db, blocks); err != nil {
		return nil, fmt.Errorf("transfer: store manifest: %w", err)
	}
	return m, nil
}

// verifyBlock checks that data hashes to c.
func verifyBlock(c cid.Cid, data []byte) error {
	got, err := c.Prefix().Sum(data)
	if err != nil {
		return err
	}
	if !got.Equals(c) {
		return fmt.Errorf("%w: %s", manifest.ErrHashMismatch, c)
	}
	return nil
}

// readySession waits for a provider that has answered Open.
func (f *fetch) readySession(ctx context.Context) (*session, error) {
	for {
		f.mu.Lock()
		var ready []*session
		for _, s := range f.sessions {
			if s.ready && s.dead == nil {
				ready = append(ready, s)
			}
		}
		f.mu.Unlock()
		if len(ready) > 0 {
			// Spread the few manifest blocks over the ready providers.
			return ready[int(f.nextID())%len(ready)], nil
		}
		select {
		case <-f.ready:
		case err := <-f.fatal:
			f.fail(err) // keep it for run
			return nil, err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (f *fetch) nextID() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.nextBlockID
}

// bad drops a provider that sent data failing verification.
func (f *fetch) bad(s *session, err error) {
	f.s.log.Warn("provider sent bad data; dropped for this fetch", "root", f.root, "peer", s.p, "err", err)
	f.drop(s, fmt.Errorf("sent bad data: %w", err), true)
	if f.opts.OnBadPeer != nil {
		f.opts.OnBadPeer(s.p, err)
	}
}

// badChunk drops a provider whose chunk i failed verification, telling it
// first: a provider whose file was changed in place learns it, checks
// the chunk itself and stops serving stale bytes.
func (f *fetch) badChunk(s *session, i int64, err error) {
	s.tell(wire.Msg{Type: wire.TError, About: wire.AboutChunk, Ref: uint64(i), Code: wire.CodeCorrupt,
		Text: "the chunk failed verification here"})
	f.bad(s, fmt.Errorf("chunk %d: %w", i, err))
}

// verifier checks arriving chunks and writes the good ones.
func (f *fetch) verifier(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case a := <-f.arrivals:
			f.accept(a)
		}
	}
}

func (f *fetch) accept(a arrival) {
	if a.p != nil {
		// Its readers go on from buf; they find the chunk held once
		// it is written, or here while it is.
		defer a.p.release()
		defer f.src.endPartial(a.p, false)
	} else {
		defer f.s.putBuf(a.buf)
	}
	data := *a.buf
	f.mu.Lock()
	already := f.sched.state[a.i] == chunkDone
	f.mu.Unlock()
	if already {
		f.mu.Lock()
		f.duplicates++
		f.mu.Unlock()
		return
	}
	if a.p == nil { // else verified group by group on arrival
		if err := f.m.Verify(a.i, data); err != nil {
			f.mu.Lock()
			f.sched.requeue(a.i)
			f.mu.Unlock()
			f.badChunk(a.s, a.i, err)
			return
		}
	}
	if err := f.files.writeChunk(a.i, data); err != nil {
		f.fail(fmt.Errorf("transfer: %w", err))
		return
	}
	f.mu.Lock()
	losers, first := f.sched.finish(a.i)
	if !first {
		f.duplicates++
		f.mu.Unlock()
		return
	}
	f.held += int64(len(data))
	if !a.askedAt.IsZero() && f.s.log.Enabled(context.Background(), slog.LevelDebug) {
		// Where a chunk's time went: waiting for its first byte (the
		// provider's queue and the round trip), then arriving and being
		// verified. shoal-bench chunktrace reads these.
		now := time.Now()
		f.s.log.Debug("chunk verified", "root", f.root, "chunk", a.i, "peer", a.s.p,
			"wait", a.firstByte.Sub(a.askedAt), "transfer", now.Sub(a.firstByte))
	}
	st := f.stats[a.s.p]
	st.Bytes += int64(len(data))
	st.Chunks++
	a.s.bytes += int64(len(data))
	a.s.chunks++
	for _, o := range losers {
		if o == a.s {
			continue
		}
		if _, ok := o.inflight[a.i]; ok {
			delete(o.inflight, a.i)
			o.cancelled[a.i]++
			o.cancels = append(o.cancels, a.i)
			o.signal()
		}
	}
	complete := f.sched.complete()
	f.mu.Unlock()
	// Served from here first, then told: a provider told may ask for it.
	f.src.acquired(a.i)
	f.mu.Lock()
	for _, o := range f.sessions {
		if o.st != nil && o.dead == nil {
			o.haves = append(o.haves, a.i)
			o.signal()
		}
	}
	f.mu.Unlock()
	if complete {
		select {
		case <-f.doneCh:
		default:
			close(f.doneCh)
		}
	}
}

// report hands p to opts.Progress. Calls never overlap (the ticker may
// still be reporting when the fetch makes its final report), and none
// follows the final one.
func (f *fetch) report(p Progress, final bool) {
	if f.opts.Progress == nil {
		return
	}
	f.reportMu.Lock()
	defer f.reportMu.Unlock()
	if f.reported {
		return
	}
	f.reported = final
	f.opts.Progress(p)
}

// ticker checkpoints progress, reports it, and takes work back from
// stalled providers.
func (f *fetch) ticker(ctx context.Context) {
	report := time.NewTicker(f.opts.ProgressInterval)
	defer report.Stop()
	check := time.NewTicker(min(f.s.cfg.CheckpointInterval, 250*time.Millisecond))
	defer check.Stop()
	lastCheckpoint := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-f.doneCh:
			return
		case now := <-report.C:
			f.sampleRate(now)
			if f.opts.Progress != nil {
				f.report(f.progress(), false)
			}
		case now := <-check.C:
			f.reclaimStalled(now)
			if now.Sub(lastCheckpoint) >= f.s.cfg.CheckpointInterval {
				lastCheckpoint = now
				if err := f.checkpoint(); err != nil {
					f.fail(fmt.Errorf("transfer: checkpoint: %w", err))
				}
			}
		}
	}
}

// reclaimStalled gives the chunks of a provider that has sent nothing of
// them for RequestTimeout to others; a provider that stalls twice in a
// row is dropped.
func (f *fetch) reclaimStalled(now time.Time) {
	f.mu.Lock()
	var dropped []*session
	for _, s := range f.sessions {
		last := s.lastProg
		if b := time.Unix(0, s.bytesAt.Load()); b.After(last) {
			last = b
		}
		if len(s.inflight) == 0 || now.Sub(last) < f.s.cfg.RequestTimeout {
			continue
		}
		s.stalls++
		for i := range s.inflight {
			f.sched.release(i, s, false)
			s.cancelled[i]++
			s.cancels = append(s.cancels, i)
		}
		clear(s.inflight)
		s.window = max(1, s.window/2)
		s.lastProg = now
		if s.stalls >= 2 {
			dropped = append(dropped, s)
		}
	}
	for _, s := range f.sessions {
		s.signal()
	}
	f.mu.Unlock()
	for _, s := range dropped {
		f.drop(s, fmt.Errorf("stalled: nothing delivered for %v, twice", f.s.cfg.RequestTimeout), false)
	}
}

func (f *fetch) progress() Progress {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := Progress{
		Root: f.root, Phase: f.phase, Resumed: f.resumed, Durable: f.durable, Received: f.received,
		Duplicates: f.duplicates, Elapsed: time.Since(f.started),
	}
	if f.m != nil {
		p.Name = f.m.Name
		p.Total = f.m.Size
		p.TotalChunks = f.m.NumChunks()
	}
	if f.sched != nil {
		p.Chunks = f.sched.done
		p.Bytes = f.held
	}
	for id, st := range f.stats {
		pp := *st
		if s := f.sessions[id]; s != nil {
			pp.Inflight = len(s.inflight)
		}
		if secs := p.Elapsed.Seconds(); secs > 0 {
			pp.Rate = float64(pp.Bytes) / secs
		}
		p.Peers = append(p.Peers, pp)
	}
	slices.SortFunc(p.Peers, func(a, b PeerProgress) int { return int(b.Bytes - a.Bytes) })
	p.Rate = f.rate
	if f.rateAt.IsZero() {
		if secs := p.Elapsed.Seconds(); secs > 0 {
			p.Rate = float64(p.Received) / secs
		}
	}
	return p
}

// sampleRate updates the fetch's recent receive rate, a moving average
// over about a second of the ticker's samples.
func (f *fetch) sampleRate(now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.rateAt.IsZero() {
		if d := now.Sub(f.rateAt).Seconds(); d > 0 {
			inst := float64(f.received-f.rateRecv) / d
			a := min(1, d) // a second's samples make the average
			f.rate = (1-a)*f.rate + a*inst
		}
	}
	f.rateAt, f.rateRecv = now, f.received
}

// checkDst refuses an existing destination unless overwriting.
func checkDst(dst string, overwrite bool) error {
	if overwrite {
		return nil
	}
	if _, err := os.Lstat(dst); err == nil {
		return fmt.Errorf("%w: %s (choose another destination or overwrite)", ErrExists, dst)
	}
	return nil
}

// tempPath is where a fetch to dst keeps its partial copy: beside it, on
// the same file system, so the final rename is atomic.
func tempPath(dst string) string {
	return filepath.Join(filepath.Dir(dst), "."+filepath.Base(dst)+".shoal-partial")
}

// setDst fixes the destination once the share's name is known.
func (f *fetch) setDst(dst string) error {
	if err := checkDst(dst, f.opts.Overwrite); err != nil {
		return err
	}
	f.mu.Lock()
	f.dst, f.temp = dst, tempPath(dst)
	f.mu.Unlock()
	return nil
}
