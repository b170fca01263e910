package transfer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/shoalnet/shoal/transfer/manifest"
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
	// CheckManifest, if set, sees the manifest before anything is
	// written; an error ends the fetch with it.
	CheckManifest func(*manifest.Manifest) error
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
	// FirstProvider is when the first provider answered, and Manifest
	// when the manifest was in hand (and chunks could be asked for), both
	// since the start; 0 until then.
	FirstProvider time.Duration `json:"first_provider,omitempty"`
	Manifest      time.Duration `json:"manifest,omitempty"`
	// Trace is the fetch's trace ID when it is traced (hex), to find it
	// in the tracing backend.
	Trace string `json:"trace,omitempty"`
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
	// Path says how the peer is reached (set by the node): "direct tcp",
	// "direct quic", "relayed" or "" (not connected now).
	Path string `json:"path,omitempty"`
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

	// The fetch's span (trace.go); traced: it records, so requests get
	// spans of their own and carry their context.
	span   trace.Span
	traced bool

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
	firstPeer   atomic.Int64     // ns since started when the first provider was ready
	manifestAt  time.Duration    // since started, when the manifest was in hand (f.mu)
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
	// The span is set before the fetch is seen (Fetches reads it).
	ctx, f.span = s.tracer.Start(ctx, "shoal.transfer", trace.WithAttributes(attrRoot.String(root.String())))
	f.traced = f.span.IsRecording()
	s.active[key] = f
	s.wg.Add(1)
	s.mu.Unlock()
	p := &Pending{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		defer s.wg.Done()
		p.res, p.err = f.exec(ctx, key)
		if p.err != nil {
			s.counts.fetchesFailed.Add(1)
			f.span.SetStatus(codes.Error, p.err.Error())
		} else {
			s.counts.fetchesDone.Add(1)
			f.span.SetAttributes(attrBytes.Int64(p.res.Manifest.Size))
		}
		f.span.End()
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
		mctx, span := f.s.tracer.Start(ctx, "shoal.manifest")
		m, err = f.fetchManifest(mctx)
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
		if err != nil {
			return nil, err
		}
	}
	if f.opts.CheckManifest != nil {
		if err := f.opts.CheckManifest(m); err != nil {
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
	if p == "fetching" && f.manifestAt == 0 {
		f.manifestAt = time.Since(f.started)
	}
	f.mu.Unlock()
}

func (f *fetch) fail(err error) {
	select {
	case f.fatal <- err:
	default:
	}
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
