package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	noise "github.com/libp2p/go-libp2p/p2p/security/noise"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
	bolt "go.etcd.io/bbolt"

	"github.com/shoalnet/shoal/dht"
	"github.com/shoalnet/shoal/node/auth"
	"github.com/shoalnet/shoal/node/catalog"
	"github.com/shoalnet/shoal/node/membership"
	"github.com/shoalnet/shoal/transfer"
	"github.com/shoalnet/shoal/transfer/manifest"
)

// StateFile is the name of the state database in the home directory.
const StateFile = "state.db"

// ErrHomeLocked: another process uses the home directory.
var ErrHomeLocked = errors.New("node: home directory in use by another process")

// Node is a shoal peer. Its methods are safe for concurrent use.
type Node struct {
	cfg     Config
	log     *slog.Logger
	key     crypto.PrivKey
	h       host.Host
	db      *bolt.DB
	dht     *dht.DHT
	ps      *pubsub.PubSub
	cat     *catalog.Catalog
	members *membership.Membership
	xfer    *transfer.Service
	started time.Time

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	access    *access
	closeOnce sync.Once
	closeErr  error
	mdns      interface{ Close() error } // nil unless Config.MDNS

	running atomic.Bool // New has finished
	private bool        // a swarm key keeps the network private

	storeMu sync.Mutex
	stores  map[string]*storeFetch // fetches into the store, by root (open.go)
}

// New starts a node: it opens (or creates) the home, listens, joins the
// DHT and the catalog topic, connects to the bootstrap peers, and serves
// the shares recorded in its state. ctx bounds only the start; Close
// stops the node.
func New(ctx context.Context, cfg Config) (n *Node, err error) {
	if cfg.Home == "" {
		return nil, errors.New("node: Config.Home is required")
	}
	d := DefaultConfig()
	if cfg.Network == "" {
		cfg.Network = d.Network
	}
	if cfg.ListenAddrs == nil {
		cfg.ListenAddrs = d.ListenAddrs
	}
	if cfg.DHTPrefix == "" {
		cfg.DHTPrefix = dht.DefaultPrefix(cfg.Network)
	}
	if cfg.FindTimeout <= 0 {
		cfg.FindTimeout = d.FindTimeout
	}
	if cfg.ProvideTimeout <= 0 {
		cfg.ProvideTimeout = d.ProvideTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = d.Logger
	}
	if cfg.Transfer.Logger == nil {
		cfg.Transfer.Logger = cfg.Logger
	}
	home, err := filepath.Abs(cfg.Home)
	if err != nil {
		return nil, err
	}
	cfg.Home = home

	var closers []func() error
	defer func() {
		if err != nil {
			for i := len(closers) - 1; i >= 0; i-- {
				closers[i]()
			}
		}
	}()

	key, _, err := LoadOrCreateIdentity(home)
	if err != nil {
		return nil, err
	}
	db, err := openState(home)
	if err != nil {
		return nil, err
	}
	closers = append(closers, db.Close)

	psk, err := loadSwarmKey(home)
	if err != nil {
		return nil, err
	}
	self, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return nil, err
	}
	verifier, err := auth.NewVerifier(db, cfg.Network, cfg.Admins)
	if err != nil {
		return nil, err
	}
	tok := cfg.Token
	if tok.IsZero() {
		if tok, err = loadToken(home); err != nil {
			return nil, err
		}
	}
	if !tok.IsZero() && tok.Peer != self {
		return nil, fmt.Errorf("node: the token names peer %s, not this peer %s", tok.Peer, self)
	}
	n = &Node{cfg: cfg, log: cfg.Logger, key: key, db: db, started: time.Now(), stores: make(map[string]*storeFetch)}
	acc := &access{n: n, v: verifier, gater: newGater(), token: tok, peers: make(map[peer.ID]*peerAuth)}
	n.access = acc
	n.private = psk != nil
	h, err := newHost(cfg, key, psk, acc.gater)
	if err != nil {
		return nil, err
	}
	closers = append(closers, h.Close)
	n.h = h

	kad, err := dht.New(h, dht.Config{
		ProtocolPrefix: cfg.DHTPrefix,
		BootstrapPeers: cfg.BootstrapPeers,
		ClientMode:     cfg.DHTClientMode,
		Logger:         cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	closers = append(closers, kad.Close)
	n.dht = kad

	nctx, cancel := context.WithCancel(context.Background())
	closers = append(closers, func() error { cancel(); return nil })
	n.ctx, n.cancel = nctx, cancel
	ps, err := pubsub.NewGossipSub(nctx, h,
		pubsub.WithMessageSignaturePolicy(pubsub.StrictSign),
		pubsub.WithMaxMessageSize(1<<20),
		pubsub.WithDiscovery(kad.Discovery()),
		// In a closed network only peers that presented a valid token
		// join the meshes.
		pubsub.WithPeerFilter(func(p peer.ID, _ string) bool { return acc.admittedNow(p) }),
	)
	if err != nil {
		return nil, fmt.Errorf("node: gossipsub: %w", err)
	}
	n.ps = ps
	if err := initACL(db); err != nil {
		return nil, err
	}
	cat, err := catalog.New(h, ps, db, key, catalog.Config{
		Network: cfg.Network, Logger: cfg.Logger,
		Admit: acc.admitPublisher, Token: acc.tokenBytes,
	})
	if err != nil {
		return nil, err
	}
	closers = append(closers, cat.Close)
	n.cat = cat
	tcfg := cfg.Transfer
	tcfg.Authorize = n.authorize
	tcfg.Limits = n.limits
	tcfg.OnProtocolError = func(p peer.ID, err error) {
		n.log.Warn("peer broke the transfer protocol; disconnected", "peer", p, "err", err, "refused_for", refuseFor)
		acc.gater.refuse(p, refuseFor)
		h.Network().ClosePeer(p)
	}
	tcfg.OnStale = n.onStale
	xfer, err := transfer.New(h, db, tcfg)
	if err != nil {
		return nil, err
	}
	closers = append(closers, xfer.Close)
	n.xfer = xfer
	if err := acc.start(); err != nil {
		return nil, fmt.Errorf("node: access: %w", err)
	}
	closers = append(closers, func() error { acc.stop(); return nil })

	mcfg := cfg.Membership
	mcfg.Network = cfg.Network
	if mcfg.Logger == nil {
		mcfg.Logger = cfg.Logger
	}
	if acc.closed() {
		mcfg.Admit = acc.admitMember
	}
	mcfg.Meta = n.meta()
	members, err := membership.New(h, ps, mcfg)
	if err != nil {
		return nil, err
	}
	closers = append(closers, members.Close)
	n.members = members
	events, _ := members.Subscribe(1024) // closed by members.Close
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.watchMembers(events)
	}()
	h.SetStreamHandler(catalog.SyncProtocol, n.handleSync)
	if cfg.MDNS {
		if err := n.startMDNS(); err != nil {
			n.Close()
			return nil, fmt.Errorf("node: mdns: %w", err)
		}
	}
	if len(cfg.BootstrapPeers) > 0 {
		if err := kad.Bootstrap(ctx); err != nil {
			n.log.Warn("bootstrap", "err", err)
		}
		var ids []peer.ID
		for _, ai := range cfg.BootstrapPeers {
			ids = append(ids, ai.ID)
		}
		if err := members.Join(ctx, ids); err != nil {
			n.log.Warn("join members", "err", err)
		}
	}
	// Serve and provide what was shared before a restart (a share whose
	// files changed meanwhile was withdrawn as it loaded).
	n.running.Store(true)
	for _, s := range xfer.Shares() {
		if s.Stale == "" {
			n.provide(s.Root)
		} else {
			n.onStale(s.Root, nil)
		}
	}
	n.log.Info("node started", "peer", h.ID(), "addrs", n.Addrs())
	return n, nil
}

func newHost(cfg Config, key crypto.PrivKey, psk pnet.PSK, g *gater) (host.Host, error) {
	cm, err := connmgr.NewConnManager(100, 400, connmgr.WithGracePeriod(time.Minute))
	if err != nil {
		return nil, err
	}
	listen := cfg.ListenAddrs
	transports := []libp2p.Option{libp2p.Transport(tcp.NewTCPTransport), libp2p.Transport(quic.NewTransport)}
	if psk != nil {
		var dropped bool
		listen, dropped = tcpOnly(listen)
		if dropped {
			cfg.Logger.Info("private network: QUIC is off, it cannot carry the swarm key; listening on TCP only")
		}
		if len(listen) == 0 {
			return nil, errors.New("node: a private network needs a TCP listen address (QUIC cannot carry the swarm key)")
		}
		transports = []libp2p.Option{libp2p.Transport(tcp.NewTCPTransport), libp2p.PrivateNetwork(psk)}
	}
	rm, err := resourceManager()
	if err != nil {
		return nil, fmt.Errorf("node: resource manager: %w", err)
	}
	opts := []libp2p.Option{
		libp2p.ResourceManager(rm),
		libp2p.Identity(key),
		libp2p.ListenAddrStrings(listen...),
		// TLS first: AES-GCM is about twice as fast as Noise's ChaCha20.
		libp2p.Security(libp2ptls.ID, libp2ptls.New),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		libp2p.ConnectionManager(cm),
		libp2p.ConnectionGater(g),
	}
	opts = append(opts, transports...)
	opts = append(opts, cfg.Libp2pOptions...)
	h, err := libp2p.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("node: start host (is the port in use?): %w", err)
	}
	return h, nil
}

// Close leaves the network and stops the node; fetches in progress are
// checkpointed and resume on the next start. It may be called twice.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		// Leave first, while the host can still say so.
		errs := []error{n.members.Close()}
		n.access.stop()
		n.h.RemoveStreamHandler(catalog.SyncProtocol)
		if n.mdns != nil {
			errs = append(errs, n.mdns.Close())
		}
		errs = append(errs, n.xfer.Close(), n.cat.Close())
		n.cancel() // gossipsub and background provides
		n.wg.Wait()
		errs = append(errs, n.dht.Close(), n.h.Close(), n.db.Close())
		n.closeErr = errors.Join(errs...)
	})
	return n.closeErr
}

// ID returns the node's peer ID.
func (n *Node) ID() peer.ID { return n.h.ID() }

// Host returns the libp2p host.
func (n *Node) Host() host.Host { return n.h }

// AddrInfo returns the node's ID and listen addresses.
func (n *Node) AddrInfo() peer.AddrInfo { return peer.AddrInfo{ID: n.h.ID(), Addrs: n.h.Addrs()} }

// Addrs returns the full listen multiaddrs, with /p2p/<id>.
func (n *Node) Addrs() []ma.Multiaddr {
	addrs, err := peer.AddrInfoToP2pAddrs(&peer.AddrInfo{ID: n.h.ID(), Addrs: n.h.Addrs()})
	if err != nil {
		return nil
	}
	return addrs
}

// Network returns the network name.
func (n *Node) Network() string { return n.cfg.Network }

// Home returns the home directory.
func (n *Node) Home() string { return n.cfg.Home }

// Started returns when the node started.
func (n *Node) Started() time.Time { return n.started }

// Connect dials a peer and keeps its addresses.
func (n *Node) Connect(ctx context.Context, ai peer.AddrInfo) error {
	if ai.ID == n.h.ID() {
		return errors.New("node: cannot connect to self")
	}
	start := time.Now()
	if err := n.h.Connect(ctx, ai); err != nil {
		return fmt.Errorf("node: connect %s: %w", ai.ID, explainHandshake(err, n.private))
	}
	if _, err := n.access.waitPeer(ctx, ai.ID, start); err != nil {
		return fmt.Errorf("node: connect %s: %w", ai.ID, err)
	}
	n.joinMembers([]peer.ID{ai.ID})
	return nil
}

// PeerInfo describes a connected peer.
type PeerInfo struct {
	ID      peer.ID       `json:"id"`
	Addrs   []string      `json:"addrs"`
	Latency time.Duration `json:"latency_ns"`
}

// Peers lists the connected peers.
func (n *Node) Peers() []PeerInfo {
	var out []PeerInfo
	for _, p := range n.h.Network().Peers() {
		info := PeerInfo{ID: p, Latency: n.h.Peerstore().LatencyEWMA(p)}
		for _, c := range n.h.Network().ConnsToPeer(p) {
			info.Addrs = append(info.Addrs, c.RemoteMultiaddr().String())
		}
		out = append(out, info)
	}
	slices.SortFunc(out, func(a, b PeerInfo) int { return compareStr(string(a.ID), string(b.ID)) })
	return out
}

func compareStr(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// ShareOptions are the options of Share.
type ShareOptions struct {
	// ChunkSize in bytes, a power of two from 256 KiB to 16 MiB. Default
	// 1 MiB.
	ChunkSize int64
	// SHA256 selects SHA2-256 instead of BLAKE3-256.
	SHA256 bool
	// Progress, if set, is called while the content is hashed.
	Progress func(manifest.BuildProgress)
	// Allow limits the share to these roles (closed networks) and peer
	// IDs; empty: open to every peer of the network. A role admits the
	// roles above it (reader admits publishers and admins). Peers that
	// fetched the share enforce the same list when they serve it.
	Allow []string
	// SkipSpecial leaves symbolic links, devices, sockets and named pipes
	// out of a shared directory instead of refusing it; Skipped, if set,
	// is told of each (its path in the share and what it is).
	SkipSpecial bool
	Skipped     func(path, kind string)
}

// Share indexes the file or directory at path, serves it from where it
// lies, announces it in the catalog and provides it in the DHT. It blocks
// while hashing and returns the root CID. Sharing unchanged content again
// returns the same root.
func (n *Node) Share(ctx context.Context, path string, opts ShareOptions) (cid.Cid, error) {
	if n.access.closed() {
		if err := n.needRole(auth.RolePublisher); err != nil {
			return cid.Undef, err
		}
	}
	allow, err := CheckAllow(opts.Allow, n.access.closed())
	if err != nil {
		return cid.Undef, err
	}
	if _, err := os.Stat(path); err != nil {
		return cid.Undef, fmt.Errorf("node: share: %w", err)
	}
	bo := manifest.BuildOptions{ChunkSize: opts.ChunkSize, Progress: opts.Progress,
		SkipSpecial: opts.SkipSpecial, Skipped: opts.Skipped}
	if opts.SHA256 {
		bo.Hash = sha256Code
	}
	var lists [][]string
	if len(allow) > 0 {
		lists = [][]string{allow}
	}
	rec, err := n.xfer.Share(ctx, path, transfer.ShareOptions{Build: bo, BeforeServe: func(root cid.Cid) error {
		// The limits hold from the first byte served.
		return n.setACL(root, lists)
	}})
	if err != nil {
		return cid.Undef, fmt.Errorf("node: share %s: %w", path, err)
	}
	n.announce(ctx, rec.Root, rec.Name, rec.Size, int64(rec.Files))
	n.provide(rec.Root)
	n.refreshMeta()
	return rec.Root, nil
}

func (n *Node) announce(ctx context.Context, root cid.Cid, name string, size, files int64) {
	if n.access.closed() && n.needRole(auth.RolePublisher) != nil {
		return // others would reject it; the DHT still finds this holder
	}
	e := catalog.Entry{Root: root, Name: name, Size: size, Files: files}
	if lists := n.acl(root); len(lists) > 0 {
		e.Allow = lists[0]
	}
	if err := n.cat.Announce(ctx, e); err != nil {
		n.log.Warn("announce", "root", root, "err", err)
	}
}

// provide announces root in the DHT in the background.
func (n *Node) provide(root cid.Cid) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		ctx, cancel := context.WithTimeout(n.ctx, n.cfg.ProvideTimeout)
		defer cancel()
		if err := n.dht.Provide(ctx, root); err != nil && n.ctx.Err() == nil {
			n.log.Debug("provide", "root", root, "err", err)
		}
	}()
}

// Unshare stops serving root, withdraws it from the catalog and stops
// providing it. Files on disk are left alone, except in the node's store
// (see Open): content there, complete or still arriving, is deleted.
func (n *Node) Unshare(ctx context.Context, root cid.Cid) error {
	stopped := n.stopStoreFetch(root)
	var path string
	for _, sh := range n.xfer.Shares() {
		if sh.Root.Equals(root) {
			path = sh.Path
		}
	}
	if err := n.xfer.Unshare(root); err != nil && !(stopped && errors.Is(err, transfer.ErrNotFound)) {
		return err
	}
	if stopped {
		if err := n.xfer.Discard(root, filepath.Join(n.cfg.Home, StoreDir, root.String())); err != nil {
			return fmt.Errorf("node: unshare: %w", err)
		}
	}
	if path != "" && n.inStore(path) {
		if err := os.RemoveAll(path); err != nil {
			return fmt.Errorf("node: unshare: %w", err)
		}
	}
	n.dht.Unprovide(root)
	if err := n.cat.Withdraw(ctx, root); err != nil {
		n.log.Warn("withdraw", "root", root, "err", err)
	}
	n.refreshMeta()
	return nil
}

// onStale withdraws a share whose files changed since it was indexed:
// it is no longer provided nor in the catalog, and the member metadata
// stops counting it. Shares lists it, marked stale, until it is shared
// again or unshared.
func (n *Node) onStale(root cid.Cid, _ error) {
	if !n.running.Load() {
		return // found as the shares load: New withdraws it when it can
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if n.ctx.Err() != nil {
			return
		}
		n.dht.Unprovide(root)
		if err := n.cat.Withdraw(n.ctx, root); err != nil && n.ctx.Err() == nil {
			n.log.Warn("withdraw a stale share", "root", root, "err", err)
		}
		n.refreshMeta()
	}()
}

// Shares lists what this node serves in full.
func (n *Node) Shares() []transfer.ShareInfo { return n.xfer.Shares() }

// Catalog lists the shares known in the network.
func (n *Node) Catalog() ([]catalog.Entry, error) { return n.cat.List() }

// SyncCatalog pulls p's catalog now.
func (n *Node) SyncCatalog(ctx context.Context, p peer.ID) error { return n.cat.Sync(ctx, p) }

// Fetches returns the fetches in progress.
func (n *Node) Fetches() []transfer.Progress { return n.xfer.Fetches() }

// DHTPeers is the size of the DHT routing table.
func (n *Node) DHTPeers() int { return n.dht.RoutingTableSize() }

// Reachability says whether the node listens on a public address; behind
// NAT, peers outside the LAN reach it only if they can dial in.
func (n *Node) Reachability() string {
	for _, a := range n.h.Addrs() {
		if manet.IsPublicAddr(a) {
			return "public address"
		}
	}
	return "private addresses only"
}
