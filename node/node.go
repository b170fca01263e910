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
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	libp2pmetrics "github.com/libp2p/go-libp2p/core/metrics"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	noise "github.com/libp2p/go-libp2p/p2p/security/noise"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"
	bolt "go.etcd.io/bbolt"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/shoalnet/shoal/dht"
	"github.com/shoalnet/shoal/node/access"
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

	access    *keeper
	acls      *access.ACL // allow lists of the shares served here
	closeOnce sync.Once
	closeErr  error
	mdns      interface{ Close() error } // nil unless Config.MDNS

	running atomic.Bool // New has finished
	closing atomic.Bool // Close has begun: failures of work it stops are not news
	private bool        // a swarm key keeps the network private
	psk     pnet.PSK

	storeMu sync.Mutex
	stores  map[string]*storeFetch // fetches into the store, by root (open.go)

	repl    *replicator // replicas placed here (replicate.go)
	metrics *metrics    // Prometheus registry (metrics.go)
	reach   reachWatch  // what the host learns of its reachability (nat.go)
	// stopHost stops the reachability watch and closes the host.
	stopHost func() error
	tracer   trace.Tracer
}

// New starts a node: it opens (or creates) the home, listens, joins the
// DHT and the catalog topic, connects to the bootstrap peers, and serves
// the shares recorded in its state. ctx bounds only the start; Close
// stops the node.
func New(ctx context.Context, cfg Config) (n *Node, err error) {
	if cfg, err = cfg.withDefaults(); err != nil {
		return nil, err
	}
	n = &Node{cfg: cfg, log: cfg.Logger, started: time.Now(), stores: make(map[string]*storeFetch)}
	n.repl = newReplicator(n)
	n.metrics = newMetrics()
	n.tracer = cfg.TracerProvider.Tracer("github.com/shoalnet/shoal/node")
	// One clean-up path: what each step started is stopped, in reverse,
	// when a later one fails.
	var undo []func() error
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
			n = nil
		}
	}()
	for _, step := range []func() (func() error, error){
		n.openHome,       // identity, state database, swarm key, token
		n.startHost,      // libp2p host behind the access gater
		n.startDHT,       // Kademlia
		n.startGossip,    // gossipsub, the catalog
		n.startTransfer,  // serving and fetching; the access protocol
		n.startMembers,   // failure detection
		n.startDiscovery, // mDNS, if asked for
	} {
		stop, err := step()
		if err != nil {
			return nil, err
		}
		if stop != nil {
			undo = append(undo, stop)
		}
	}
	n.join(ctx)
	n.serveRecorded()
	n.metrics.reg.MustRegister(collector{n})
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.repl.run()
	}()
	if len(n.cfg.NAT.Relays) > 0 {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.repunchLoop()
		}()
	}
	n.log.Info("node started", "peer", n.h.ID(), "addrs", n.Addrs())
	return n, nil
}

// withDefaults fills the fields left zero and makes Home absolute.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.Home == "" {
		return cfg, errors.New("node: Config.Home is required")
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
	if err := cfg.NAT.check(); err != nil {
		return cfg, err
	}
	if cfg.Logger == nil {
		cfg.Logger = d.Logger
	}
	if cfg.Transfer.Logger == nil {
		cfg.Transfer.Logger = cfg.Logger
	}
	if cfg.TracerProvider == nil {
		cfg.TracerProvider = otel.GetTracerProvider()
	}
	if cfg.Transfer.TracerProvider == nil {
		cfg.Transfer.TracerProvider = cfg.TracerProvider
	}
	home, err := filepath.Abs(cfg.Home)
	if err != nil {
		return cfg, err
	}
	cfg.Home = home
	return cfg, nil
}

// openHome loads the identity (made on first use), the state database,
// the swarm key and this peer's token, and sets up access control.
func (n *Node) openHome() (func() error, error) {
	home := n.cfg.Home
	key, _, err := LoadOrCreateIdentity(home)
	if err != nil {
		return nil, err
	}
	db, err := openState(home)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (func() error, error) {
		db.Close()
		return nil, err
	}
	psk, err := loadSwarmKey(home)
	if err != nil {
		return fail(err)
	}
	self, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return fail(err)
	}
	verifier, err := auth.NewVerifier(db, n.cfg.Network, n.cfg.Admins)
	if err != nil {
		return fail(err)
	}
	tok := n.cfg.Token
	if tok.IsZero() {
		if tok, err = loadToken(home); err != nil {
			return fail(err)
		}
	}
	if !tok.IsZero() && tok.Peer != self {
		return fail(fmt.Errorf("node: the token names peer %s, not this peer %s", tok.Peer, self))
	}
	acls, err := access.NewACL(db, catalog.MaxAllow, n.log)
	if err != nil {
		return fail(err)
	}
	if err := initReplicas(db); err != nil {
		return fail(err)
	}
	n.key, n.db, n.psk, n.private, n.acls = key, db, psk, psk != nil, acls
	n.access = &keeper{n: n, v: verifier, gater: access.NewGater(), peers: access.NewTable(), token: tok}
	return func() error {
		acls.Close()
		return db.Close()
	}, nil
}

func (n *Node) startHost() (func() error, error) {
	h, err := newHost(n.cfg, n.key, n.psk, n.access.gater, n.metrics.reg, n.metrics.bw)
	if err != nil {
		return nil, err
	}
	n.h = h
	sub, err := h.EventBus().Subscribe([]any{new(event.EvtLocalReachabilityChanged), new(event.EvtHostReachableAddrsChanged)})
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("node: reachability events: %w", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.reach.run(sub)
	}()
	n.stopHost = func() error {
		sub.Close()
		<-done
		return h.Close()
	}
	return n.stopHost, nil
}

func (n *Node) startDHT() (func() error, error) {
	kad, err := dht.New(n.h, dht.Config{
		ProtocolPrefix: n.cfg.DHTPrefix,
		BootstrapPeers: n.cfg.BootstrapPeers,
		ClientMode:     n.cfg.DHTClientMode,
		Logger:         n.cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	n.dht = kad
	return kad.Close, nil
}

// startGossip starts gossipsub (its context is the node's, ended by
// Close) and the catalog on it.
func (n *Node) startGossip() (func() error, error) {
	n.ctx, n.cancel = context.WithCancel(context.Background())
	acc := n.access
	ps, err := pubsub.NewGossipSub(n.ctx, n.h,
		pubsub.WithMessageSignaturePolicy(pubsub.StrictSign),
		pubsub.WithMaxMessageSize(1<<20),
		// A node's own messages go to every peer in the topic, not only
		// to its mesh: gossipsub grafts new peers on its 1 s heartbeat,
		// and a message published before that never reached them (gossip
		// about it goes to peers outside the mesh only). An announcement
		// made just after two peers connected was lost to the other until
		// the catalog's next pull. Own messages are few and small.
		pubsub.WithFloodPublish(true),
		pubsub.WithDiscovery(n.dht.Discovery()),
		// In a closed network only peers that presented a valid token
		// join the meshes.
		pubsub.WithPeerFilter(func(p peer.ID, _ string) bool { return acc.admittedNow(p) }),
		pubsub.WithRawTracer(n.metrics.gossip),
	)
	if err != nil {
		n.cancel()
		return nil, fmt.Errorf("node: gossipsub: %w", err)
	}
	n.ps = ps
	cat, err := catalog.New(n.h, ps, n.db, n.key, catalog.Config{
		Network: n.cfg.Network, Logger: n.cfg.Logger,
		Admit: acc.admitPublisher, Token: acc.tokenBytes, SyncInterval: n.cfg.CatalogSyncInterval,
	})
	if err != nil {
		n.cancel()
		return nil, err
	}
	n.cat = cat
	return func() error {
		err := cat.Close()
		n.cancel()
		return err
	}, nil
}

// startTransfer starts serving the recorded shares and the access
// protocol that proves this peer's token to others.
func (n *Node) startTransfer() (func() error, error) {
	acc, h := n.access, n.h
	tcfg := n.cfg.Transfer
	tcfg.Authorize = n.authorize
	tcfg.Limits = n.limits
	tcfg.OnProtocolError = func(p peer.ID, err error) {
		n.log.Warn("peer broke the transfer protocol; disconnected", "peer", p, "err", err, "refused_for", refuseFor)
		acc.gater.Refuse(p, refuseFor)
		h.Network().ClosePeer(p)
	}
	tcfg.OnStale = n.onStale
	xfer, err := transfer.New(h, n.db, tcfg)
	if err != nil {
		return nil, err
	}
	n.xfer = xfer
	if err := acc.start(); err != nil {
		xfer.Close()
		return nil, fmt.Errorf("node: access: %w", err)
	}
	return func() error {
		acc.stop()
		return xfer.Close()
	}, nil
}

// startMembers starts failure detection and the goroutine that passes
// its events on.
func (n *Node) startMembers() (func() error, error) {
	mcfg := n.cfg.Membership
	mcfg.Network = n.cfg.Network
	if mcfg.Logger == nil {
		mcfg.Logger = n.cfg.Logger
	}
	if n.access.closed() {
		mcfg.Admit = n.access.admitMember
	}
	mcfg.Meta = n.meta()
	members, err := membership.New(n.h, n.ps, mcfg)
	if err != nil {
		return nil, err
	}
	n.members = members
	events, _ := members.Subscribe(1024) // closed by members.Close
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.watchMembers(events)
	}()
	n.h.SetStreamHandler(catalog.SyncProtocol, n.handleSync)
	return func() error {
		n.h.RemoveStreamHandler(catalog.SyncProtocol)
		err := members.Close()
		n.wg.Wait()
		return err
	}, nil
}

func (n *Node) startDiscovery() (func() error, error) {
	if !n.cfg.MDNS {
		return nil, nil
	}
	if err := n.startMDNS(); err != nil {
		return nil, fmt.Errorf("node: mdns: %w", err)
	}
	return n.mdns.Close, nil
}

// join bootstraps the DHT and joins the members through the bootstrap
// peers; a failure is logged, not fatal: other peers may come later.
func (n *Node) join(ctx context.Context) {
	if len(n.cfg.BootstrapPeers) == 0 {
		return
	}
	if err := n.dht.Bootstrap(ctx); err != nil {
		n.log.Warn("bootstrap", "err", err)
	}
	var ids []peer.ID
	for _, ai := range n.cfg.BootstrapPeers {
		ids = append(ids, ai.ID)
	}
	if err := n.members.Join(ctx, ids); err != nil {
		n.log.Warn("join members", "err", err)
	}
}

// serveRecorded provides what was shared before a restart; a share whose
// files changed meanwhile is withdrawn (it was found stale as it loaded).
func (n *Node) serveRecorded() {
	n.running.Store(true)
	for _, s := range n.xfer.Shares() {
		if s.Stale == "" {
			n.provide(s.Root)
		} else {
			n.onStale(s.Root, nil)
		}
	}
}

func newHost(cfg Config, key crypto.PrivKey, psk pnet.PSK, g *access.Gater, reg prometheus.Registerer, bw libp2pmetrics.Reporter) (host.Host, error) {
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
	addrs := make([]ma.Multiaddr, 0, len(listen))
	for _, a := range listen {
		m, err := ma.NewMultiaddr(a)
		if err != nil {
			return nil, fmt.Errorf("node: listen address %q: %w", a, err)
		}
		addrs = append(addrs, m)
	}
	cm, err := connmgr.NewConnManager(100, 400, connmgr.WithGracePeriod(time.Minute))
	if err != nil {
		return nil, err
	}
	rm, err := resourceManager()
	if err != nil {
		cm.Close()
		return nil, fmt.Errorf("node: resource manager: %w", err)
	}
	if psk != nil {
		rm = handshakeWatch{ResourceManager: rm, log: cfg.Logger}
	}
	opts := []libp2p.Option{
		libp2p.ResourceManager(rm),
		libp2p.Identity(key),
		// Listening starts once the host is up, so that a port in use
		// fails a host that Close can stop whole.
		libp2p.NoListenAddrs,
		// TLS first: AES-GCM is about twice as fast as Noise's ChaCha20.
		libp2p.Security(libp2ptls.ID, libp2ptls.New),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		libp2p.ConnectionManager(cm),
		libp2p.ConnectionGater(bothGaters{g, cfg.ConnectionGater}),
		libp2p.PrometheusRegisterer(reg),
		libp2p.BandwidthReporter(bw),
	}
	opts = append(opts, transports...)
	listening := make(chan struct{})
	opts = append(opts, cfg.NAT.options(listening)...)
	opts = append(opts, cfg.Libp2pOptions...)
	h, err := libp2p.New(opts...)
	if err != nil {
		cm.Close()
		rm.Close()
		return nil, fmt.Errorf("node: start host: %w", err)
	}
	if err := h.Network().Listen(addrs...); err != nil {
		h.Close()
		return nil, fmt.Errorf("node: listen on %v (is the port in use?): %w", listen, err)
	}
	close(listening)
	return h, nil
}

// Close leaves the network and stops the node; fetches in progress are
// checkpointed and resume on the next start. It may be called twice.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.closing.Store(true)
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
		n.acls.Close()
		errs = append(errs, n.dht.Close(), n.stopHost(), n.db.Close())
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
		return fmt.Errorf("node: connect %s: %w", ai.ID, explainHandshake(err, n.private, true))
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
	// Replicas asks the network's storers to keep this many copies (see
	// Pin); 0 asks for none.
	Replicas int
	// Times records modification times of files and directories, which
	// fetches then restore. The root differs from the same content shared
	// without times (or with other times).
	Times bool
}

// Share indexes the file or directory at path, serves it from where it
// lies, announces it in the catalog and provides it in the DHT. It blocks
// while hashing and returns the root CID. Sharing unchanged content again
// returns the same root.
func (n *Node) Share(ctx context.Context, path string, opts ShareOptions) (cid.Cid, error) {
	return n.share(ctx, path, opts, 0)
}

// share is Share; sealV marks the files as ciphertext of that version of
// the seal format.
func (n *Node) share(ctx context.Context, path string, opts ShareOptions, sealV int) (cid.Cid, error) {
	if n.access.closed() {
		if err := n.needRole(auth.RolePublisher); err != nil {
			return cid.Undef, err
		}
	}
	allow, err := CheckAllow(opts.Allow, n.access.closed())
	if err != nil {
		return cid.Undef, err
	}
	if opts.Replicas < 0 || opts.Replicas > catalog.MaxReplicas {
		return cid.Undef, fmt.Errorf("%w: share: %d replicas; from 0 to %d", ErrBadArgument, opts.Replicas, catalog.MaxReplicas)
	}
	if _, err := os.Stat(path); err != nil {
		return cid.Undef, fmt.Errorf("node: share: %w", err)
	}
	bo := manifest.BuildOptions{ChunkSize: opts.ChunkSize, Progress: opts.Progress,
		SkipSpecial: opts.SkipSpecial, Skipped: opts.Skipped, Times: opts.Times, Seal: sealV}
	if opts.SHA256 {
		bo.Hash = sha256Code
	}
	var lists [][]string
	if len(allow) > 0 {
		lists = [][]string{allow}
	}
	rec, err := n.xfer.Share(ctx, path, transfer.ShareOptions{Build: bo, BeforeServe: func(root cid.Cid) error {
		// The limits hold from the first byte served.
		return n.acls.Set(root, lists)
	}})
	if err != nil {
		return cid.Undef, fmt.Errorf("node: share %s: %w", path, err)
	}
	if opts.Replicas > 0 {
		if err := n.updateReplicaRec(rec.Root, func(r *replicaRec) { r.Pin = opts.Replicas }); err != nil {
			return cid.Undef, err
		}
	}
	n.announce(ctx, rec.Root, rec.Name, rec.Size, int64(rec.Files))
	n.provide(rec.Root)
	n.refreshMeta()
	n.repl.poke()
	return rec.Root, nil
}

func (n *Node) announce(ctx context.Context, root cid.Cid, name string, size, files int64) {
	if n.access.closed() && n.needRole(auth.RolePublisher) != nil {
		return // others would reject it; the DHT still finds this holder
	}
	e := catalog.Entry{Root: root, Name: name, Size: size, Files: files, Replicas: n.replicaRec(root).Pin}
	if lists := n.acls.Lists(root); len(lists) > 0 {
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
// (see Open): content there, complete or still arriving, is deleted. A
// replica request of this node's (Pin, ShareOptions.Replicas) stays:
// Unpin withdraws it.
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
	if err := n.updateReplicaRec(root, func(r *replicaRec) { r.Replica = false }); err != nil {
		return err
	}
	n.dht.Unprovide(root)
	n.withdrawHolding(ctx, root) // a replica request of this node's stays
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

// Reachability is "public" (peers can dial this node), "private"
// (behind a NAT or firewall) or "unknown" (not found out yet); NAT says
// more.
func (n *Node) Reachability() string { return n.NAT().Reachability }
