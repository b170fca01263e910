package dht

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"
	kaddht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/discovery"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	drouting "github.com/libp2p/go-libp2p/p2p/discovery/routing"
)

// IPFSPrefix is the protocol prefix of the public IPFS DHT.
const IPFSPrefix = "/ipfs"

// Config configures the DHT. Zero fields take their defaults.
type Config struct {
	// ProtocolPrefix of the DHT's protocols. Default "/shoal/default";
	// "/ipfs" joins the IPFS DHT.
	ProtocolPrefix string
	// BootstrapPeers are dialled by Bootstrap and used to refill an empty
	// routing table.
	BootstrapPeers []peer.AddrInfo
	// ReprovideInterval is how often provided roots are announced again
	// (provider records expire after 48 hours). Default 12h.
	ReprovideInterval time.Duration
	// ClientMode makes the node query the DHT without serving it (for
	// short-lived nodes). Default false: server mode.
	ClientMode bool
	// Options are passed to go-libp2p-kad-dht after shoal's own.
	Options []kaddht.Option
	// Logger receives the package's logs. Default: discard.
	Logger *slog.Logger
}

// DefaultPrefix returns the protocol prefix of a shoal network.
func DefaultPrefix(network string) string { return "/shoal/" + network }

// DHT is a node's Kademlia routing. Its methods are safe for concurrent
// use.
type DHT struct {
	kad  *kaddht.IpfsDHT
	h    host.Host
	cfg  Config
	log  *slog.Logger
	disc *drouting.RoutingDiscovery

	mu     sync.Mutex
	roots  map[cid.Cid]struct{}
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed bool

	backlog, provided, failed atomic.Int64 // ProvideStats
}

// New starts a DHT on h. Close stops it.
func New(h host.Host, cfg Config) (*DHT, error) {
	if cfg.ProtocolPrefix == "" {
		cfg.ProtocolPrefix = DefaultPrefix("default")
	}
	if cfg.ProtocolPrefix[0] != '/' {
		return nil, fmt.Errorf("dht: protocol prefix %q must start with /", cfg.ProtocolPrefix)
	}
	if cfg.ReprovideInterval <= 0 {
		cfg.ReprovideInterval = 12 * time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	mode := kaddht.ModeServer
	if cfg.ClientMode {
		mode = kaddht.ModeClient
	}
	opts := []kaddht.Option{
		kaddht.ProtocolPrefix(protocol.ID(cfg.ProtocolPrefix)),
		kaddht.Mode(mode),
	}
	if len(cfg.BootstrapPeers) > 0 {
		opts = append(opts, kaddht.BootstrapPeers(cfg.BootstrapPeers...))
	}
	opts = append(opts, cfg.Options...)
	kad, err := kaddht.New(h, opts...)
	if err != nil {
		return nil, fmt.Errorf("dht: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &DHT{
		kad: kad, h: h, cfg: cfg, log: cfg.Logger,
		disc:   drouting.NewRoutingDiscovery(kad),
		roots:  make(map[cid.Cid]struct{}),
		cancel: cancel,
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.reprovideLoop(ctx)
	}()
	return d, nil
}

// Close stops re-providing and closes the DHT. It may be called twice.
func (d *DHT) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	d.mu.Unlock()
	d.cancel()
	d.wg.Wait()
	return d.kad.Close()
}

// Kad returns the underlying go-libp2p-kad-dht instance.
func (d *DHT) Kad() *kaddht.IpfsDHT { return d.kad }

// Discovery returns DHT-backed peer discovery, for gossipsub topics.
func (d *DHT) Discovery() discovery.Discovery { return d.disc }

// Bootstrap connects to the bootstrap peers in parallel and refreshes the
// routing table. It fails only when peers were given and none could be
// reached. It blocks until the dials finish.
func (d *DHT) Bootstrap(ctx context.Context) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		ok   int
	)
	for _, ai := range d.cfg.BootstrapPeers {
		if ai.ID == d.h.ID() {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := d.h.Connect(ctx, ai)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", ai.ID, err))
				return
			}
			ok++
		}()
	}
	wg.Wait()
	if ok == 0 && len(errs) > 0 {
		return fmt.Errorf("dht: no bootstrap peer reachable: %w", errors.Join(errs...))
	}
	if err := d.kad.Bootstrap(ctx); err != nil {
		return fmt.Errorf("dht: bootstrap: %w", err)
	}
	if ok > 0 {
		// A connected peer enters the routing table once identify has
		// confirmed that it speaks the DHT protocol, a moment after the
		// dial: wait for it, so that a provide or a lookup made right
		// after Bootstrap has someone to ask.
		return d.waitRoutable(ctx, 10*time.Second)
	}
	return nil
}

// waitRoutable waits until the routing table holds a peer, ctx ends or
// limit passes.
func (d *DHT) waitRoutable(ctx context.Context, limit time.Duration) error {
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for d.kad.RoutingTable().Size() == 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("dht: bootstrap peers connected but none speaks %s", d.cfg.ProtocolPrefix)
		case <-tick.C:
		}
	}
	return nil
}

// Provide announces that this node holds root, now and every
// ReprovideInterval until Unprovide. It blocks until the first
// announcement is stored on the closest peers; with an empty routing table
// it returns an error but keeps root for the next round.
func (d *DHT) Provide(ctx context.Context, root cid.Cid) error {
	d.mu.Lock()
	d.roots[root] = struct{}{}
	d.mu.Unlock()
	d.backlog.Add(1)
	defer d.backlog.Add(-1)
	return d.provide(ctx, root)
}

// provide announces root once, counting the outcome.
func (d *DHT) provide(ctx context.Context, root cid.Cid) error {
	if err := d.kad.Provide(ctx, root, true); err != nil {
		d.failed.Add(1)
		return fmt.Errorf("dht: provide %s: %w", root, err)
	}
	d.provided.Add(1)
	return nil
}

// ProvideStats are counts of the DHT announcements of provided roots.
type ProvideStats struct {
	Backlog  int64 // announcements under way or waiting (a reprovide round's roots not yet done)
	Provided int64 // announcements stored on the closest peers
	Failed   int64 // announcements that failed (no peers, timeouts)
	Roots    int   // roots provided (announced again every ReprovideInterval)
}

// ProvideStats returns the counts since the DHT started.
func (d *DHT) ProvideStats() ProvideStats {
	d.mu.Lock()
	roots := len(d.roots)
	d.mu.Unlock()
	return ProvideStats{Backlog: d.backlog.Load(), Provided: d.provided.Load(), Failed: d.failed.Load(), Roots: roots}
}

// Unprovide stops re-providing root (its records expire on their own).
func (d *DHT) Unprovide(root cid.Cid) {
	d.mu.Lock()
	delete(d.roots, root)
	d.mu.Unlock()
}

// FindProviders streams up to n providers of root (0: no limit) until ctx
// ends or the search is exhausted, then closes the channel.
func (d *DHT) FindProviders(ctx context.Context, root cid.Cid, n int) <-chan peer.AddrInfo {
	return d.kad.FindProvidersAsync(ctx, root, n)
}

// RoutingTableSize is the number of peers in the routing table.
func (d *DHT) RoutingTableSize() int { return d.kad.RoutingTable().Size() }

func (d *DHT) reprovideLoop(ctx context.Context) {
	t := time.NewTicker(d.cfg.ReprovideInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		d.mu.Lock()
		roots := make([]cid.Cid, 0, len(d.roots))
		for c := range d.roots {
			roots = append(roots, c)
		}
		d.mu.Unlock()
		d.backlog.Add(int64(len(roots)))
		for i, c := range roots {
			if ctx.Err() != nil {
				d.backlog.Add(-int64(len(roots) - i))
				return
			}
			pctx, cancel := context.WithTimeout(ctx, time.Minute)
			if err := d.provide(pctx, c); err != nil && ctx.Err() == nil {
				d.log.Warn("reprovide", "root", c, "err", err)
			}
			cancel()
			d.backlog.Add(-1)
		}
	}
}
