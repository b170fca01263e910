package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// mlCluster is n hashicorp/memberlist members, each with its own UDP and
// TCP listener on 127.0.0.1.
type mlCluster struct {
	n                       int
	interval, timeout, sync time.Duration
	rec                     *recorder
	nodes                   []*mlNode
	refuted                 atomic.Int64
}

type mlNode struct {
	ml      *memberlist.Memberlist
	tr      *countingTransport
	stopped bool
}

func newMLCluster(n int, interval, timeout, sync time.Duration, rec *recorder) *mlCluster {
	return &mlCluster{n: n, interval: interval, timeout: timeout, sync: sync, rec: rec}
}

func (c *mlCluster) start(ctx context.Context) error {
	for i := range c.n {
		if err := ctx.Err(); err != nil {
			return err
		}
		logger := log.New(&mlLog{c: c, observer: i}, "", 0)
		nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
			BindAddrs: []string{"127.0.0.1"}, BindPort: 0, Logger: logger,
		})
		if err != nil {
			return fmt.Errorf("member %d: transport: %w", i, err)
		}
		tr := newCountingTransport(nt)
		cfg := memberlist.DefaultLANConfig()
		cfg.Name = mlName(i)
		cfg.Transport = tr
		cfg.ProbeInterval = c.interval
		cfg.ProbeTimeout = c.timeout
		cfg.SuspicionMult = 4
		cfg.SuspicionMaxTimeoutMult = 6
		cfg.IndirectChecks = 3
		cfg.PushPullInterval = c.sync
		cfg.Events = &mlEvents{rec: c.rec, observer: i}
		// Instead of LogOutput io.Discard: a log that discards too, but
		// watches for suspicions and refutations.
		cfg.Logger = logger
		ml, err := memberlist.Create(cfg)
		if err != nil {
			return errors.Join(fmt.Errorf("member %d: %w", i, err), tr.Shutdown())
		}
		c.nodes = append(c.nodes, &mlNode{ml: ml, tr: tr})
	}
	return nil
}

func (c *mlCluster) join(ctx context.Context) error {
	boot := fmt.Sprintf("127.0.0.1:%d", c.nodes[0].tr.GetAutoBindPort())
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for i, mn := range c.nodes[1:] {
		wg.Go(func() {
			// Join takes no context; it gives up after the config's
			// TCPTimeout (10 s).
			if _, err := mn.ml.Join([]string{boot}); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("member %d: join: %w", i+1, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(ctx.Err(), errors.Join(errs...))
}

// converged counts the members each member neither believes dead nor
// knows to have left: memberlist exposes no race-free way to tell alive
// from suspect (Members returns pointers into its live state).
func (c *mlCluster) converged() bool {
	for _, mn := range c.nodes {
		if !mn.stopped && mn.ml.NumMembers() != c.n {
			return false
		}
	}
	return true
}

func (c *mlCluster) traffic() traffic {
	var udp, tcp, packets int64
	for _, mn := range c.nodes {
		udp += mn.tr.udp.Load()
		tcp += mn.tr.tcp.Load()
		packets += mn.tr.packets.Load()
	}
	return traffic{
		Payload: udp + tcp, Socket: udp + tcp, Packets: packets,
		Parts:       map[string]int64{"UDP": udp, "TCP": tcp},
		Refutations: c.refuted.Load(),
	}
}

// crash shuts member i down without Leave: its listeners close, and
// nobody hears from it again.
func (c *mlCluster) crash(i int) error {
	mn := c.nodes[i]
	mn.stopped = true
	return mn.ml.Shutdown()
}

func (c *mlCluster) close() error {
	var errs []error
	for _, mn := range c.nodes {
		if !mn.stopped {
			mn.stopped = true
			errs = append(errs, mn.ml.Shutdown())
		}
	}
	return errors.Join(errs...)
}

func mlName(i int) string { return fmt.Sprintf("node-%d", i) }

func mlIndex(name string) (int, bool) {
	s, ok := strings.CutPrefix(name, "node-")
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(s)
	return i, err == nil
}

// mlEvents records a member's view. memberlist calls it from its
// protocol goroutines, one call at a time.
type mlEvents struct {
	rec      *recorder
	observer int
}

func (e *mlEvents) NotifyJoin(n *memberlist.Node) { e.add(n, vAlive) }

// NotifyLeave is called for a member declared dead and for one that left.
func (e *mlEvents) NotifyLeave(n *memberlist.Node) {
	v := vDead
	if n.State == memberlist.StateLeft {
		v = vLeft
	}
	e.add(n, v)
}

func (e *mlEvents) NotifyUpdate(*memberlist.Node) {}

func (e *mlEvents) add(n *memberlist.Node, v verdict) {
	if j, ok := mlIndex(n.Name); ok {
		e.rec.add(observation{observer: e.observer, subject: j, v: v, at: time.Now()})
	}
}

// mlLog is a member's log. memberlist reports no suspicion in its events,
// but logs the suspicions it raises itself ("Suspect node-3 has failed, no
// acks received") and its refutations; mlLog records those and discards
// the rest. log.Logger calls Write once per line, one at a time.
type mlLog struct {
	c        *mlCluster
	observer int
}

func (w *mlLog) Write(p []byte) (int, error) {
	line := string(p)
	if _, rest, ok := strings.Cut(line, "memberlist: Suspect "); ok {
		name, _, _ := strings.Cut(rest, " ")
		if j, ok := mlIndex(name); ok {
			w.c.rec.add(observation{observer: w.observer, subject: j, v: vSuspect, at: time.Now()})
		}
	}
	if strings.Contains(line, "Refuting a suspect message") || strings.Contains(line, "Refuting a dead message") {
		w.c.refuted.Add(1)
	}
	return len(p), nil
}

// countingTransport is memberlist's own UDP+TCP transport, counting what
// it sends: UDP payloads, and the bytes written to the TCP connections it
// dials and accepts.
type countingTransport struct {
	*memberlist.NetTransport
	udp, packets, tcp atomic.Int64

	streams chan net.Conn // accepted connections, counted
	done    chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
}

var _ memberlist.NodeAwareTransport = (*countingTransport)(nil)

func newCountingTransport(nt *memberlist.NetTransport) *countingTransport {
	t := &countingTransport{NetTransport: nt, streams: make(chan net.Conn), done: make(chan struct{})}
	t.wg.Go(t.forward)
	return t
}

func (t *countingTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

func (t *countingTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	ts, err := t.NetTransport.WriteToAddress(b, a)
	if err == nil {
		t.udp.Add(int64(len(b)))
		t.packets.Add(1)
	}
	return ts, err
}

func (t *countingTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

func (t *countingTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	conn, err := t.NetTransport.DialAddressTimeout(a, timeout)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: conn, n: &t.tcp}, nil
}

func (t *countingTransport) StreamCh() <-chan net.Conn { return t.streams }

// forward passes the accepted connections on, counted.
func (t *countingTransport) forward() {
	in := t.NetTransport.StreamCh()
	for {
		select {
		case conn := <-in:
			select {
			case t.streams <- &countingConn{Conn: conn, n: &t.tcp}:
			case <-t.done:
				conn.Close()
				return
			}
		case <-t.done:
			return
		}
	}
}

// Shutdown closes the listeners, then stops forwarding. memberlist calls
// it before it stops reading StreamCh, so a connection accepted meanwhile
// is still handed on. It may be called twice.
func (t *countingTransport) Shutdown() error {
	err := t.NetTransport.Shutdown()
	t.once.Do(func() { close(t.done) })
	t.wg.Wait()
	return err
}
