package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/metrics"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/core/sec"
	tptu "github.com/libp2p/go-libp2p/p2p/net/upgrader"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"

	"github.com/shoalnet/shoal/node/membership"
)

// shoalCluster is n shoal members, each with its own libp2p host
// (TCP, TLS 1.3, yamux) and gossipsub router.
type shoalCluster struct {
	n     int
	cfg   membership.Config
	rec   *recorder
	nodes []*shoalNode
	index map[peer.ID]int // read-only once start returns
	subs  sync.WaitGroup  // the readers of the members' events
}

type shoalNode struct {
	h       host.Host
	ps      context.CancelFunc // ends the gossipsub router
	m       *membership.Membership
	stream  *streamCounter
	socket  atomic.Int64 // bytes written to the connections, after the security negotiation
	stopped bool
}

func newShoalCluster(n int, interval, timeout, sync time.Duration, rec *recorder) *shoalCluster {
	cfg := membership.DefaultConfig()
	cfg.ProbeInterval = interval
	cfg.ProbeTimeout = timeout
	cfg.SuspicionMult = 4
	cfg.SuspicionMaxMult = 6
	cfg.IndirectChecks = 3
	cfg.SyncInterval = sync
	return &shoalCluster{n: n, cfg: cfg, rec: rec, index: make(map[peer.ID]int)}
}

func (c *shoalCluster) start(ctx context.Context) error {
	for i := range c.n {
		if err := ctx.Err(); err != nil {
			return err
		}
		sn, err := c.newNode(i)
		if err != nil {
			return err
		}
		c.nodes = append(c.nodes, sn)
		c.index[sn.h.ID()] = i
	}
	for i, sn := range c.nodes {
		events, _ := sn.m.Subscribe(4096) // ends with Close
		c.subs.Go(func() {
			for e := range events {
				v, ok := shoalVerdicts[e.Member.State]
				j, known := c.index[e.Member.ID]
				if ok && known && e.Member.State != e.Prev {
					c.rec.add(observation{observer: i, subject: j, v: v, at: e.Member.Changed})
				}
			}
		})
	}
	return nil
}

var shoalVerdicts = map[membership.State]verdict{
	membership.Alive: vAlive, membership.Suspect: vSuspect,
	membership.Dead: vDead, membership.Left: vLeft,
}

func (c *shoalCluster) newNode(i int) (*shoalNode, error) {
	sn := &shoalNode{stream: newStreamCounter()}
	h, err := libp2p.New(
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.BandwidthReporter(sn.stream),
		// TLS 1.3, as every shoal connection negotiates: libp2p's own
		// transport, counting what it writes to the TCP connection.
		libp2p.Security(libp2ptls.ID, func(id protocol.ID, key crypto.PrivKey, muxers []tptu.StreamMuxer) (*countingTLS, error) {
			t, err := libp2ptls.New(id, key, muxers)
			if err != nil {
				return nil, err
			}
			return &countingTLS{Transport: t, n: &sn.socket}, nil
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("member %d: host: %w", i, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ps, err := pubsub.NewGossipSub(ctx, h, pubsub.WithMessageSignaturePolicy(pubsub.StrictSign))
	if err != nil {
		cancel()
		return nil, errors.Join(fmt.Errorf("member %d: gossipsub: %w", i, err), h.Close())
	}
	cfg := c.cfg
	cfg.Meta.Name = fmt.Sprintf("node-%d", i)
	m, err := membership.New(h, ps, cfg)
	if err != nil {
		cancel()
		return nil, errors.Join(fmt.Errorf("member %d: %w", i, err), h.Close())
	}
	h.SetStreamHandler(membership.SyncProtocol, func(s network.Stream) {
		var b [1]byte
		if _, err := io.ReadFull(s, b[:]); err != nil || b[0] != membership.SyncRequest {
			s.Reset()
			return
		}
		m.ServeSync(s)
	})
	sn.h, sn.ps, sn.m = h, cancel, m
	return sn, nil
}

func (c *shoalCluster) join(ctx context.Context) error {
	boot := peer.AddrInfo{ID: c.nodes[0].h.ID(), Addrs: c.nodes[0].h.Addrs()}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for i, sn := range c.nodes[1:] {
		wg.Go(func() {
			err := sn.h.Connect(ctx, boot)
			if err == nil {
				err = sn.m.Join(ctx, []peer.ID{boot.ID})
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("member %d: join: %w", i+1, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (c *shoalCluster) converged() bool {
	for _, sn := range c.nodes {
		if sn.stopped {
			continue
		}
		alive := 0
		for _, mb := range sn.m.Members() {
			if mb.State == membership.Alive {
				alive++
			}
		}
		if alive != c.n {
			return false
		}
	}
	return true
}

func (c *shoalCluster) traffic() traffic {
	t := traffic{Parts: make(map[string]int64)}
	for _, sn := range c.nodes {
		t.Socket += sn.socket.Load()
		for p, st := range sn.stream.GetBandwidthByProtocol() {
			name := string(p)
			if name == "" {
				name = "(stream negotiation)"
			}
			t.Parts[name] += st.TotalOut
			t.Payload += st.TotalOut
		}
		if !sn.stopped {
			// Each refutation raises the member's incarnation by one
			// (nothing else does here: no metadata changes).
			t.Refutations += int64(sn.m.Self().Incarnation) - 1
		}
	}
	return t
}

// crash closes member i's host first, so that nothing the member says
// when it closes can reach anyone: no leave, no last push-pull.
func (c *shoalCluster) crash(i int) error {
	sn := c.nodes[i]
	sn.stopped = true
	err := sn.h.Close()
	err = errors.Join(err, sn.m.Close())
	sn.ps()
	return err
}

func (c *shoalCluster) close() error {
	var errs []error
	for _, sn := range c.nodes {
		if !sn.stopped {
			errs = append(errs, sn.m.Close())
		}
	}
	for _, sn := range c.nodes {
		if !sn.stopped {
			sn.stopped = true
			sn.ps()
			errs = append(errs, sn.h.Close())
		}
	}
	c.subs.Wait()
	return errors.Join(errs...)
}

// describe names the transport, security and multiplexer of member 1's
// connection to member 0.
func (c *shoalCluster) describe() string {
	if len(c.nodes) < 2 {
		return "unknown"
	}
	conns := c.nodes[1].h.Network().ConnsToPeer(c.nodes[0].h.ID())
	if len(conns) == 0 {
		return "unknown (no connection)"
	}
	st := conns[0].ConnState()
	return fmt.Sprintf("libp2p %s + %s + %s", st.Transport, st.Security, st.StreamMultiplexer)
}

// streamCounter is a libp2p bandwidth reporter with exact totals, by
// protocol, and no per-peer figures or rates. It stands in for
// metrics.NewBandwidthCounter: that counter's totals move once a second,
// when go-flow-metrics sweeps its meters, too coarsely for a window of a
// few seconds; and its sweeper is a global goroutine that never ends.
type streamCounter struct {
	mu      sync.Mutex
	in, out map[protocol.ID]int64
}

var _ metrics.Reporter = (*streamCounter)(nil)

func newStreamCounter() *streamCounter {
	return &streamCounter{in: make(map[protocol.ID]int64), out: make(map[protocol.ID]int64)}
}

// LogSentMessage and LogRecvMessage are called beside their Stream
// versions, which count the same bytes.
func (c *streamCounter) LogSentMessage(int64) {}
func (c *streamCounter) LogRecvMessage(int64) {}

func (c *streamCounter) LogSentMessageStream(size int64, proto protocol.ID, _ peer.ID) {
	c.mu.Lock()
	c.out[proto] += size
	c.mu.Unlock()
}

func (c *streamCounter) LogRecvMessageStream(size int64, proto protocol.ID, _ peer.ID) {
	c.mu.Lock()
	c.in[proto] += size
	c.mu.Unlock()
}

func (c *streamCounter) GetBandwidthForPeer(peer.ID) metrics.Stats { return metrics.Stats{} }

func (c *streamCounter) GetBandwidthForProtocol(p protocol.ID) metrics.Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return metrics.Stats{TotalIn: c.in[p], TotalOut: c.out[p]}
}

func (c *streamCounter) GetBandwidthTotals() metrics.Stats {
	var t metrics.Stats
	for _, s := range c.GetBandwidthByProtocol() {
		t.TotalIn += s.TotalIn
		t.TotalOut += s.TotalOut
	}
	return t
}

func (c *streamCounter) GetBandwidthByPeer() map[peer.ID]metrics.Stats { return nil }

func (c *streamCounter) GetBandwidthByProtocol() map[protocol.ID]metrics.Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[protocol.ID]metrics.Stats)
	for p, n := range c.in {
		s := out[p]
		s.TotalIn = n
		out[p] = s
	}
	for p, n := range c.out {
		s := out[p]
		s.TotalOut = n
		out[p] = s
	}
	return out
}

func (c *streamCounter) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.in)
	clear(c.out)
}

func (c *streamCounter) TrimIdle(time.Time) {}

// countingTLS is libp2p's TLS security transport counting the bytes it
// writes to the connection: the handshake, then TLS records carrying
// yamux frames. Only the negotiation of the security protocol itself,
// before, goes uncounted.
type countingTLS struct {
	*libp2ptls.Transport
	n *atomic.Int64
}

var _ sec.SecureTransport = (*countingTLS)(nil)

func (t *countingTLS) SecureInbound(ctx context.Context, insecure net.Conn, p peer.ID) (sec.SecureConn, error) {
	return t.Transport.SecureInbound(ctx, &countingConn{Conn: insecure, n: t.n}, p)
}

func (t *countingTLS) SecureOutbound(ctx context.Context, insecure net.Conn, p peer.ID) (sec.SecureConn, error) {
	return t.Transport.SecureOutbound(ctx, &countingConn{Conn: insecure, n: t.n}, p)
}
