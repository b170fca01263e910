package transfer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	bolt "go.etcd.io/bbolt"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/time/rate"

	"github.com/shoalnet/shoal/transfer/manifest"
	"github.com/shoalnet/shoal/transfer/wire"
)

// Errors callers branch on.
var (
	// ErrNotFound: the root is not shared or being fetched here.
	ErrNotFound = errors.New("transfer: not found")
	// ErrExists: the fetch destination exists and overwriting was not asked.
	ErrExists = errors.New("transfer: destination exists")
	// ErrDenied: every provider refused the root to this peer.
	ErrDenied = errors.New("transfer: denied")
	// ErrNoProviders: no peer could serve the root.
	ErrNoProviders = errors.New("transfer: no providers")
	// ErrClosed: the service was closed.
	ErrClosed = errors.New("transfer: service closed")
)

// Config tunes the service. The zero value of a field means its default.
type Config struct {
	// MaxQueuedPerStream caps the requests a peer may have queued on one
	// stream; past it the stream ends as a protocol error (a fetcher
	// keeps at most MaxWindow requests and a few for readers in flight).
	// Default 128.
	MaxQueuedPerStream int
	// InitialWindow is the number of chunk requests in flight to a peer
	// when a fetch starts. Default 8.
	InitialWindow int
	// MaxWindow caps the requests in flight to one peer. Default 64.
	MaxWindow int
	// RequestTimeout is how long a provider with requests in flight may
	// send nothing of them (a long chunk's bytes count as they arrive)
	// before they are given to other peers. It also bounds a manifest
	// block's answer. Default 15s.
	RequestTimeout time.Duration
	// CheckpointInterval is how often a fetch makes its progress durable
	// (fsync, then record the have-bitfield). Default 1s.
	CheckpointInterval time.Duration
	// OpenTimeout bounds opening a stream to a provider. Default 15s.
	OpenTimeout time.Duration
	// StreamBuffer is the read and write buffer size per stream, bytes.
	// Default 256 KiB.
	StreamBuffer int
	// MaxUploads caps the transfer streams this node serves at once, all
	// peers together (each peer may hold up to 16, one per root, by the
	// node's resource limits); past it new streams are answered Busy.
	// Default 256.
	MaxUploads int
	// MaxFetches caps the fetches that run at once; more wait for a slot.
	// Default 16.
	MaxFetches int
	// UploadRate caps the bytes per second this node sends to all peers
	// together. Default 0: unlimited.
	UploadRate int64
	// Authorize, if set, decides whether peer p may fetch root from this
	// node. It is asked once per stream, before anything about root is
	// sent; an error makes the answer Denied (its text goes to the peer).
	Authorize func(ctx context.Context, p peer.ID, root cid.Cid) error
	// Limits, if set, returns the allow lists root is limited to; they
	// are sent to each fetching peer after Authorize admits it, so that it
	// enforces them when it serves root in turn.
	Limits func(root cid.Cid) [][]string
	// OnProtocolError, if set, is told of a peer that broke the protocol
	// while fetching from this node (oversized, truncated or malformed
	// frames, a flood of requests past MaxQueuedPerStream); its stream is
	// reset in any case. The node uses it to cut the peer off.
	OnProtocolError func(p peer.ID, err error)
	// OnStale, if set, is told once of a share that stopped being served
	// because its files changed since they were indexed (found when the
	// share is loaded, read, or reported corrupt by a fetcher and checked
	// here). It must not block.
	OnStale func(root cid.Cid, err error)
	// Logger receives the service's logs. Default: discard.
	Logger *slog.Logger
	// TracerProvider makes the spans of fetches and of the requests
	// served here (trace.go). Default: OpenTelemetry's global provider,
	// which records nothing unless the program sets one.
	TracerProvider trace.TracerProvider
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		MaxQueuedPerStream: 128,
		InitialWindow:      8,
		MaxWindow:          64,
		RequestTimeout:     15 * time.Second,
		CheckpointInterval: time.Second,
		OpenTimeout:        15 * time.Second,
		StreamBuffer:       256 << 10,
		MaxUploads:         256,
		MaxFetches:         16,
	}
}

func (c *Config) fill() {
	d := DefaultConfig()
	if c.MaxQueuedPerStream <= 0 {
		c.MaxQueuedPerStream = d.MaxQueuedPerStream
	}
	if c.InitialWindow <= 0 {
		c.InitialWindow = d.InitialWindow
	}
	if c.MaxWindow <= 0 {
		c.MaxWindow = d.MaxWindow
	}
	if c.MaxWindow < c.InitialWindow {
		c.MaxWindow = c.InitialWindow
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = d.RequestTimeout
	}
	if c.CheckpointInterval <= 0 {
		c.CheckpointInterval = d.CheckpointInterval
	}
	if c.OpenTimeout <= 0 {
		c.OpenTimeout = d.OpenTimeout
	}
	if c.StreamBuffer <= 0 {
		c.StreamBuffer = d.StreamBuffer
	}
	if c.MaxUploads <= 0 {
		c.MaxUploads = d.MaxUploads
	}
	if c.MaxFetches <= 0 {
		c.MaxFetches = d.MaxFetches
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.TracerProvider == nil {
		c.TracerProvider = otel.GetTracerProvider()
	}
}

// Service serves shares and runs fetches over /shoal/xfer/1.0.0.
// Its methods are safe for concurrent use.
type Service struct {
	h      host.Host
	db     *bolt.DB
	cfg    Config
	log    *slog.Logger
	tracer trace.Tracer

	ctx    context.Context // ends when Close is called
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	sources map[cid.Cid]*source // what this node serves, complete or partial
	active  map[string]*fetch   // fetches in progress by root+dst
	streams map[network.Stream]struct{}
	closed  bool

	pools [bits.UintSize]sync.Pool // chunk buffers by log2 size
	limit *rate.Limiter            // nil: unlimited upload

	srcAdded   chan struct{}      // closed when a source is added
	seeds      seedViews          // initial seeding: complete roots' views of their swarms
	pex        pexSet             // peers served per root (peer exchange)
	denied     atomic.Int64       // streams refused by Config.Authorize
	counts     counters           // Stats
	uploads    atomic.Int64       // streams being served
	fetchSlots chan struct{}      // one token per running fetch
	directSub  event.Subscription // direct connections identified: relayed sessions move there
}

// Denied returns how many requests Config.Authorize refused.
func (s *Service) Denied() int64 { return s.denied.Load() }

// Stats are the service's counters since it started.
type Stats struct {
	ChunksServed    int64 // chunks held here sent in full to fetchers (whole or part by part; chunks passed on while they arrive are not counted)
	BytesServed     int64 // their bytes
	ChunksFetched   int64 // chunks verified and written by fetches, each once
	BytesFetched    int64 // their bytes
	BytesReceived   int64 // chunk bytes that arrived, duplicates and bad ones included
	DuplicateChunks int64 // chunks that arrived when they were held already
	BadData         int64 // providers dropped for data that failed verification
	FetchesDone     int64 // fetches that completed
	FetchesFailed   int64 // fetches that ended with an error (cancelled included)
	Denied          int64 // streams refused by Config.Authorize
}

// counters back Stats.
type counters struct {
	chunksServed, bytesServed, chunksFetched, bytesFetched, bytesReceived atomic.Int64
	duplicates, bad, fetchesDone, fetchesFailed                           atomic.Int64
}

// Stats returns the service's counters.
func (s *Service) Stats() Stats {
	c := &s.counts
	return Stats{
		ChunksServed: c.chunksServed.Load(), BytesServed: c.bytesServed.Load(),
		ChunksFetched: c.chunksFetched.Load(), BytesFetched: c.bytesFetched.Load(),
		BytesReceived: c.bytesReceived.Load(), DuplicateChunks: c.duplicates.Load(), BadData: c.bad.Load(),
		FetchesDone: c.fetchesDone.Load(), FetchesFailed: c.fetchesFailed.Load(), Denied: s.denied.Load(),
	}
}

// served counts a chunk of n bytes sent in full.
func (c *counters) served(n int) {
	c.chunksServed.Add(1)
	c.bytesServed.Add(int64(n))
}

// New starts the service on h, keeping its state in db, and serves the
// shares recorded there. Close stops it.
func New(h host.Host, db *bolt.DB, cfg Config) (*Service, error) {
	cfg.fill()
	if err := initBuckets(db); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Service{
		h: h, db: db, cfg: cfg, log: cfg.Logger, tracer: cfg.TracerProvider.Tracer(tracerName),
		ctx: ctx, cancel: cancel, fetchSlots: make(chan struct{}, cfg.MaxFetches),
		sources: make(map[cid.Cid]*source),
		active:  make(map[string]*fetch),
		streams: make(map[network.Stream]struct{}),
	}
	recs, err := loadShares(db)
	if err != nil {
		cancel()
		return nil, err
	}
	for _, r := range recs {
		if err := s.loadShare(r); err != nil {
			s.log.Warn("share not served", "root", r.Root, "path", r.Path, "err", err)
		}
	}
	if cfg.UploadRate > 0 {
		// The bucket holds one largest chunk; start it empty so the cap
		// holds from the first byte.
		s.limit = rate.NewLimiter(rate.Limit(cfg.UploadRate), wire.MaxPayload)
		s.limit.AllowN(time.Now(), wire.MaxPayload)
	}
	h.SetStreamHandler(wire.ProtocolID, s.handleStream)
	sub, err := h.EventBus().Subscribe(new(event.EvtPeerIdentificationCompleted))
	if err != nil {
		cancel()
		return nil, fmt.Errorf("transfer: identify events: %w", err)
	}
	s.directSub = sub
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.watchDirect(sub)
	}()
	return s, nil
}

// Close stops serving, cancels fetches in progress (they checkpoint and can
// be resumed), and waits for every goroutine. It may be called twice.
func (s *Service) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for st := range s.streams {
		st.Reset()
	}
	s.mu.Unlock()
	s.h.RemoveStreamHandler(wire.ProtocolID)
	s.directSub.Close()
	s.cancel()
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, src := range s.sources {
		src.retire(ErrClosed)
		errs = append(errs, src.files.close())
	}
	return errors.Join(errs...)
}

// getBuf returns a buffer of n bytes from the pool; putBuf returns it.
func (s *Service) getBuf(n int) *[]byte {
	k := bits.Len(uint(n - 1))
	if v := s.pools[k].Get(); v != nil {
		b := v.(*[]byte)
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, 1<<k)
	return &b
}

func (s *Service) putBuf(b *[]byte) {
	k := bits.Len(uint(cap(*b) - 1))
	if cap(*b) != 1<<k {
		return
	}
	s.pools[k].Put(b)
}

// ShareOptions are the options of Share.
type ShareOptions struct {
	// Build options for the manifest (chunk size, hash, workers, progress).
	Build manifest.BuildOptions
	// BeforeServe, if set, is called with the root once it is known and
	// before the share is served; an error abandons the share.
	BeforeServe func(root cid.Cid) error
}

// Share indexes the file or directory at path, records it, and serves it
// from where it lies. It blocks while hashing. Sharing the same content
// twice returns the same root.
func (s *Service) Share(ctx context.Context, path string, opts ShareOptions) (*ShareRecord, error) {
	res, err := manifest.BuildFromPath(ctx, path, opts.Build)
	if err != nil {
		return nil, err
	}
	rec := ShareRecord{
		Root: res.Root, Name: res.Manifest.Name, Size: res.Manifest.Size,
		Added: time.Now().UTC(),
	}
	for _, f := range res.Files {
		rec.Stats = append(rec.Stats, FileStat{Size: f.Size, ModTime: f.ModTime})
	}
	rec.Files = len(res.Files)
	if res.Manifest.Single {
		rec.Path = res.Files[0].Path
	} else {
		rec.Path, err = absPath(path)
		if err != nil {
			return nil, err
		}
	}
	if opts.BeforeServe != nil {
		if err := opts.BeforeServe(res.Root); err != nil {
			return nil, err
		}
	}
	if err := putBlocks(s.db, res.Blocks); err != nil {
		return nil, fmt.Errorf("transfer: store manifest: %w", err)
	}
	if err := s.addShare(&rec, res.Manifest, blockSet(res.Blocks)); err != nil {
		return nil, err
	}
	return &rec, nil
}

func blockSet(blocks map[cid.Cid][]byte) map[cid.Cid]struct{} {
	set := make(map[cid.Cid]struct{}, len(blocks))
	for c := range blocks {
		set[c] = struct{}{}
	}
	return set
}

// addShare records rec and serves it, replacing what was served for its
// root.
func (s *Service) addShare(rec *ShareRecord, m *manifest.Manifest, blocks map[cid.Cid]struct{}) error {
	if err := putJSON(s.db, bucketShares, rec.Root.Bytes(), rec); err != nil {
		return fmt.Errorf("transfer: record share: %w", err)
	}
	src := &source{
		root: rec.Root, m: m, blocks: blocks,
		files: newFileSet(m, rec.Path, false, rec.Stats),
		rec:   rec,
	}
	s.mu.Lock()
	old := s.sources[rec.Root]
	if old != nil && old.have != nil {
		// A fetch in progress keeps serving its partial copy.
		s.mu.Unlock()
		return nil
	}
	s.sources[rec.Root] = src
	s.sourceAddedLocked()
	s.mu.Unlock()
	if old != nil {
		old.retire(errReplaced)
		old.files.close()
	}
	return nil
}

// loadShare serves a share recorded in the database, unless its files
// changed while the node was down.
func (s *Service) loadShare(r ShareRecord) error {
	m, blocks, err := s.localManifest(s.ctx, r.Root)
	if err != nil {
		return err
	}
	rec := r
	if err := s.addShare(&rec, m, blocks); err != nil {
		return err
	}
	if src := s.source(rec.Root); src != nil && src.rec == &rec {
		for i, e := range m.Entries {
			if e.Dir {
				continue
			}
			if err := src.files.check(i); err != nil {
				s.noteStale(src, err)
				break
			}
		}
	}
	return nil
}

// manifestBlocks returns the CIDs of root's stored manifest blocks.
func (s *Service) manifestBlocks(root cid.Cid) (map[cid.Cid]struct{}, error) {
	data, err := getBlock(s.db, root)
	if err != nil {
		return nil, fmt.Errorf("transfer: manifest of %s: %w", root, err)
	}
	r, err := manifest.DecodeRoot(root, data)
	if err != nil {
		return nil, err
	}
	set := map[cid.Cid]struct{}{root: {}}
	for _, c := range r.EntryBlocks {
		set[c] = struct{}{}
	}
	for _, c := range r.ChunkBlocks {
		set[c] = struct{}{}
	}
	return set, nil
}

// localManifest loads a manifest from the stored blocks.
func (s *Service) localManifest(ctx context.Context, root cid.Cid) (*manifest.Manifest, map[cid.Cid]struct{}, error) {
	blocks := make(map[cid.Cid]struct{})
	m, err := manifest.Load(ctx, root, func(ctx context.Context, c cid.Cid) ([]byte, error) {
		b, err := getBlock(s.db, c)
		if err == nil {
			blocks[c] = struct{}{}
		}
		return b, err
	})
	if err != nil {
		return nil, nil, err
	}
	return m, blocks, nil
}

// Unshare stops serving root and forgets it. Files on disk are left alone.
func (s *Service) Unshare(root cid.Cid) error {
	s.mu.Lock()
	src := s.sources[root]
	if src == nil || src.rec == nil {
		s.mu.Unlock()
		return fmt.Errorf("%w: %s is not shared here", ErrNotFound, root)
	}
	delete(s.sources, root)
	s.mu.Unlock()
	src.retire(fmt.Errorf("%w: %s is no longer shared here", ErrNotFound, root))
	src.files.close()
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketShares).Delete(root.Bytes())
	}); err != nil {
		return err
	}
	var cids []cid.Cid
	for c := range src.blocks {
		cids = append(cids, c)
	}
	return deleteBlocks(s.db, cids)
}

// ShareInfo describes a share served here.
type ShareInfo struct {
	ShareRecord
	// Stale says why the share is no longer served, if it is not.
	Stale string `json:"stale,omitempty"`
}

// Shares lists what this node serves in full.
func (s *Service) Shares() []ShareInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []ShareInfo
	for _, src := range s.sources {
		if src.rec == nil {
			continue
		}
		info := ShareInfo{ShareRecord: *src.rec}
		if err := src.staleErr(); err != nil {
			info.Stale = err.Error()
		}
		out = append(out, info)
	}
	return out
}

// Manifest returns the manifest of a root held here (shared or being
// fetched).
func (s *Service) Manifest(root cid.Cid) (*manifest.Manifest, error) {
	s.mu.Lock()
	src := s.sources[root]
	s.mu.Unlock()
	if src == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, root)
	}
	return src.m, nil
}

// source is a root this node serves: a share (complete, read where it lies)
// or a fetch in progress (partial, read from its temporary copy).
type source struct {
	root   cid.Cid
	m      *manifest.Manifest
	blocks map[cid.Cid]struct{}
	files  *fileSet
	rec    *ShareRecord // nil for a fetch in progress

	mu    sync.Mutex
	have  Bitfield // nil: complete
	subs  map[*haveSub]struct{}
	stale error
	// Of a partial source: the chunks arriving with their trees, served
	// as they arrive (stream.go), and the chunks the subscribers were
	// told of: those held and those arriving (set with have).
	partials map[int64]*partialChunk
	shown    Bitfield
	// Readers (read.go) wait on wake, closed when a chunk is acquired or
	// the source retires; gone says why it retired.
	wake chan struct{}
	gone error
}

// errReplaced: a source was replaced by another for the same root (a
// fetch completed, a share re-indexed); readers move to the new one.
var errReplaced = errors.New("replaced")

// changed returns a channel closed when the source next acquires a chunk
// or retires.
func (src *source) changed() <-chan struct{} {
	src.mu.Lock()
	defer src.mu.Unlock()
	if src.wake == nil {
		src.wake = make(chan struct{})
	}
	return src.wake
}

func (src *source) wakeLocked() {
	if src.wake != nil {
		close(src.wake)
		src.wake = nil
	}
}

// retire records that the source is no longer served, and why, and wakes
// its readers.
func (src *source) retire(why error) {
	src.mu.Lock()
	defer src.mu.Unlock()
	if src.gone == nil || src.gone == errReplaced {
		src.gone = why
	}
	src.wakeLocked()
}

func (src *source) goneErr() error {
	src.mu.Lock()
	defer src.mu.Unlock()
	return src.gone
}

func (src *source) staleErr() error {
	src.mu.Lock()
	defer src.mu.Unlock()
	return src.stale
}

func (src *source) markStale(err error) bool {
	src.mu.Lock()
	defer src.mu.Unlock()
	first := src.stale == nil
	if first {
		src.stale = err
	}
	return first
}

// haveSub receives the chunks a partial source acquires.
type haveSub struct {
	mu      sync.Mutex
	pending []int64
	notify  chan struct{}
}

func (hs *haveSub) take() []int64 {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	p := hs.pending
	hs.pending = nil
	return p
}

// subscribe returns the current holdings (nil when complete) and, for a
// partial source, a subscription to what it acquires next.
func (src *source) subscribe() (Bitfield, *haveSub) {
	src.mu.Lock()
	defer src.mu.Unlock()
	if src.have == nil {
		return nil, nil
	}
	hs := &haveSub{notify: make(chan struct{}, 1)}
	if src.subs == nil {
		src.subs = make(map[*haveSub]struct{})
	}
	src.subs[hs] = struct{}{}
	return src.shown.Clone(), hs
}

func (src *source) unsubscribe(hs *haveSub) {
	if hs == nil {
		return
	}
	src.mu.Lock()
	delete(src.subs, hs)
	src.mu.Unlock()
}

func (src *source) has(i int64) bool {
	src.mu.Lock()
	defer src.mu.Unlock()
	return src.have == nil || src.have.Has(i)
}

// acquired records chunk i and tells the subscribers.
func (src *source) acquired(i int64) {
	src.mu.Lock()
	defer src.mu.Unlock()
	if src.have == nil || src.have.Has(i) {
		return
	}
	src.have.Set(i)
	src.showLocked(i)
	src.wakeLocked()
}

// showLocked tells the subscribers of chunk i, once (src.mu held).
func (src *source) showLocked(i int64) {
	if src.shown.Has(i) {
		return
	}
	src.shown.Set(i)
	for hs := range src.subs {
		hs.mu.Lock()
		hs.pending = append(hs.pending, i)
		hs.mu.Unlock()
		select {
		case hs.notify <- struct{}{}:
		default:
		}
	}
}

func (s *Service) source(root cid.Cid) *source {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sources[root]
}

// sourceAddedLocked wakes those waiting for a source (s.mu held).
func (s *Service) sourceAddedLocked() {
	if s.srcAdded != nil {
		close(s.srcAdded)
		s.srcAdded = nil
	}
}

// awaitSource returns root's source, waiting up to max for it while a
// fetch of root here is still getting its manifest: a peer that learned
// of this fetch by peer exchange may ask before there is anything to
// serve.
func (s *Service) awaitSource(ctx context.Context, root cid.Cid, max time.Duration) *source {
	return s.waitSources(ctx, max, func() (*source, bool) {
		src := s.sources[root]
		return src, src != nil || len(s.fetchesLocked(root)) == 0
	})
}

// waitSources calls check with s.mu held, now and each time a source is
// added, until it reports done or max passes, and returns the source it
// gave last; nil if ctx ends first.
func (s *Service) waitSources(ctx context.Context, max time.Duration, check func() (src *source, done bool)) *source {
	t := time.NewTimer(max)
	defer t.Stop()
	for {
		s.mu.Lock()
		src, done := check()
		if done {
			s.mu.Unlock()
			return src
		}
		if s.srcAdded == nil {
			s.srcAdded = make(chan struct{})
		}
		ch := s.srcAdded
		s.mu.Unlock()
		select {
		case <-ch:
		case <-t.C:
			s.mu.Lock()
			defer s.mu.Unlock()
			src, _ := check()
			return src
		case <-ctx.Done():
			return nil
		}
	}
}

// track registers a stream so Close can reset it; it reports false when
// the service is closed.
func (s *Service) track(st network.Stream) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.streams[st] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Service) untrack(st network.Stream) {
	s.mu.Lock()
	delete(s.streams, st)
	s.mu.Unlock()
	s.wg.Done()
}

func (s *Service) handleStream(st network.Stream) {
	if !s.track(st) {
		st.Reset()
		return
	}
	defer s.untrack(st)
	err := s.serve(s.ctx, st, st.Conn().RemotePeer(), func() { st.Reset() })
	if err != nil {
		s.log.Debug("serve stream ended", "peer", st.Conn().RemotePeer(), "err", err)
		st.Reset()
		if errors.Is(err, wire.ErrProtocol) && s.cfg.OnProtocolError != nil {
			s.cfg.OnProtocolError(st.Conn().RemotePeer(), err)
		}
		return
	}
	st.Close()
}

// Peer returns the host's peer ID.
func (s *Service) Peer() peer.ID { return s.h.ID() }

// Fetches returns a snapshot of the fetches in progress.
func (s *Service) Fetches() []Progress {
	s.mu.Lock()
	fs := make([]*fetch, 0, len(s.active))
	for _, f := range s.active {
		fs = append(fs, f)
	}
	s.mu.Unlock()
	out := make([]Progress, 0, len(fs))
	for _, f := range fs {
		out = append(out, f.progress())
	}
	return out
}

// PeerGone tells the service that p has failed or left the network: every
// fetch drops its session with p at once, and p's outstanding chunks go to
// other peers without waiting for request timeouts.
func (s *Service) PeerGone(p peer.ID) {
	s.mu.Lock()
	fs := make([]*fetch, 0, len(s.active))
	for _, f := range s.active {
		fs = append(fs, f)
	}
	s.mu.Unlock()
	for _, f := range fs {
		f.mu.Lock()
		if sess := f.sessions[p]; sess != nil {
			f.dropLocked(sess, errPeerGone, false)
		}
		f.mu.Unlock()
	}
}
