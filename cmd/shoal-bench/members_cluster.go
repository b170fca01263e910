package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// cluster is n members of one membership protocol in this process, each
// listening on 127.0.0.1. The members benchmark drives it from one
// goroutine; the members report what they see to a recorder.
type cluster interface {
	// start creates the members (untimed). They know nobody yet.
	start(ctx context.Context) error
	// join makes every member join through member 0, all at once, and
	// returns when the joins return.
	join(ctx context.Context) error
	// converged reports whether every running member sees all n members
	// alive.
	converged() bool
	// traffic returns what the members have sent so far.
	traffic() traffic
	// crash stops member i without a word to the others.
	crash(i int) error
	// close stops every member still running and waits for them.
	close() error
}

// traffic is a snapshot of a cluster's counters, summed over its members.
type traffic struct {
	// Payload is what the protocol handed to its transport: for shoal, the
	// bytes written to libp2p streams (the host's bandwidth counter); for
	// memberlist, the UDP payloads and the bytes written to its TCP
	// connections.
	Payload int64
	// Socket is what went into the sockets: for shoal, the bytes written
	// to the TCP connections after the security handshake's negotiation
	// (TLS records carrying yamux frames); for memberlist, Payload.
	Socket int64
	// Packets counts memberlist's UDP packets (0 for shoal).
	Packets int64
	// Parts splits Payload: by libp2p protocol for shoal, UDP and TCP for
	// memberlist.
	Parts map[string]int64
	// Refutations counts the times a running member answered a suspicion
	// or death of itself.
	Refutations int64
}

// verdict is what one member believes of another.
type verdict uint8

const (
	vAlive verdict = iota + 1
	vSuspect
	vDead
	vLeft
)

// observation is one member's change of mind about another.
type observation struct {
	observer, subject int
	v                 verdict
	at                time.Time
}

// recorder collects the observations of a cluster's members. Its methods
// are safe for concurrent use and never block for long: members call add
// from their protocol goroutines.
type recorder struct {
	wake chan struct{} // a value is ready whenever something was added

	mu  sync.Mutex
	obs []observation
}

func newRecorder() *recorder { return &recorder{wake: make(chan struct{}, 1)} }

func (r *recorder) add(o observation) {
	r.mu.Lock()
	r.obs = append(r.obs, o)
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// count counts the observations of v in [from, to) about subjects other
// than except (-1: none excepted).
func (r *recorder) count(v verdict, from, to time.Time, except int) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, o := range r.obs {
		if o.v == v && o.subject != except && !o.at.Before(from) && o.at.Before(to) {
			n++
		}
	}
	return n
}

// firsts returns, for each observer, the time of its first observation
// of v about subject since from.
func (r *recorder) firsts(v verdict, subject int, from time.Time) map[int]time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[int]time.Time)
	for _, o := range r.obs {
		if o.v != v || o.subject != subject || o.at.Before(from) {
			continue
		}
		if t, ok := out[o.observer]; !ok || o.at.Before(t) {
			out[o.observer] = o.at
		}
	}
	return out
}

// waitFor checks cond whenever the recorder reports a change, and at
// least every quarter second (for changes no event reports), until it
// holds or limit passes. It returns when cond was seen to hold, and false
// if it did not within limit.
func waitFor(ctx context.Context, rec *recorder, limit time.Duration, cond func() bool) (time.Time, bool, error) {
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	poll := time.NewTicker(250 * time.Millisecond)
	defer poll.Stop()
	for {
		if cond() {
			return time.Now(), true, nil
		}
		select {
		case <-ctx.Done():
			return time.Time{}, false, ctx.Err()
		case <-deadline.C:
			return time.Time{}, false, nil
		case <-rec.wake:
		case <-poll.C:
		}
	}
}

// pause waits for d: a measurement window, not a synchronisation.
func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// SystemRun is one system's figures in one run of the members benchmark.
type SystemRun struct {
	// ConvergeSeconds runs from the start of the joins until every member
	// sees all N alive.
	ConvergeSeconds float64 `json:"converge_seconds"`
	// The quiet period runs from convergence until the crash: the settle
	// time, then the steady window.
	QuietSeconds  float64 `json:"quiet_seconds"`
	SteadySeconds float64 `json:"steady_seconds"`
	// Bytes sent per member per second in the steady window. Payload and
	// Socket as in traffic.
	BytesPerNodeSec       float64            `json:"bytes_per_node_per_s"`
	SocketBytesPerNodeSec float64            `json:"socket_bytes_per_node_per_s"`
	PacketsPerNodeSec     float64            `json:"udp_packets_per_node_per_s,omitempty"`
	PartsPerNodeSec       map[string]float64 `json:"bytes_per_node_per_s_by_part"`
	// FalsePositives counts the dead verdicts about running members in
	// the quiet period; Refutations, the times a member refuted a
	// suspicion or death of itself in it, and SteadyRefutations those in
	// the steady window.
	FalsePositives    int   `json:"false_positives"`
	Refutations       int64 `json:"refutations"`
	SteadyRefutations int64 `json:"steady_refutations"`
	// After the crash: when the first member suspected it (-1: none did,
	// or the system does not say), the first member declared it dead, and
	// the last of the others did.
	FirstSuspectSeconds float64 `json:"first_suspect_seconds"`
	FirstDeadSeconds    float64 `json:"first_dead_seconds"`
	AllDeadSeconds      float64 `json:"all_dead_seconds"`
	// Agreed counts the members that declared it dead within --limit;
	// Detected is whether all of them did.
	Agreed   int  `json:"agreed"`
	Detected bool `json:"detected"`
	// SpuriousDead counts dead verdicts about running members between the
	// crash and the last verdict.
	SpuriousDead int `json:"spurious_dead_after_crash"`
}

// measureOptions is what measureCluster needs of the benchmark's options.
type measureOptions struct {
	Interval, Settle, Steady, Limit time.Duration
}

// settleTime is the wait between convergence and the steady window: one
// probe round (n·interval), in which each member probes every other one
// once, and so opens its connections to them (shoal), then settle.
func settleTime(n int, interval, settle time.Duration) time.Duration {
	return time.Duration(n)*interval + settle
}

// measureCluster runs one system through a run: join, quiet period with
// its steady window, crash of member victim, detection. It closes the
// cluster, also on error.
func measureCluster(ctx context.Context, c cluster, rec *recorder, n, victim int, o measureOptions) (r SystemRun, err error) {
	defer func() { err = errors.Join(err, c.close()) }()
	if err := c.start(ctx); err != nil {
		return r, fmt.Errorf("start %d members: %w", n, err)
	}

	start := time.Now()
	if err := c.join(ctx); err != nil {
		return r, err
	}
	conv, ok, err := waitFor(ctx, rec, o.Limit, c.converged)
	if err != nil {
		return r, err
	}
	if !ok {
		return r, fmt.Errorf("members did not all see %d alive within %v (raise --limit, or lower --n on a busy machine)", n, o.Limit)
	}
	r.ConvergeSeconds = conv.Sub(start).Seconds()

	quiet := c.traffic()
	if err := pause(ctx, settleTime(n, o.Interval, o.Settle)); err != nil {
		return r, err
	}
	t0, s0 := time.Now(), c.traffic()
	if err := pause(ctx, o.Steady); err != nil {
		return r, err
	}
	t1, s1 := time.Now(), c.traffic()
	secs := t1.Sub(t0).Seconds()
	per := float64(n) * secs
	r.SteadySeconds = secs
	r.QuietSeconds = t1.Sub(conv).Seconds()
	r.BytesPerNodeSec = float64(s1.Payload-s0.Payload) / per
	r.SocketBytesPerNodeSec = float64(s1.Socket-s0.Socket) / per
	r.PacketsPerNodeSec = float64(s1.Packets-s0.Packets) / per
	r.PartsPerNodeSec = make(map[string]float64)
	for k, v := range s1.Parts {
		if d := v - s0.Parts[k]; d != 0 {
			r.PartsPerNodeSec[k] = float64(d) / per
		}
	}
	r.FalsePositives = rec.count(vDead, conv, t1, -1)
	r.Refutations = s1.Refutations - quiet.Refutations
	r.SteadyRefutations = s1.Refutations - s0.Refutations

	crashed := time.Now()
	if err := c.crash(victim); err != nil {
		return r, fmt.Errorf("crash member %d: %w", victim, err)
	}
	others := n - 1
	_, ok, err = waitFor(ctx, rec, o.Limit, func() bool {
		d := rec.firsts(vDead, victim, crashed)
		delete(d, victim)
		return len(d) == others
	})
	if err != nil {
		return r, err
	}
	end := time.Now()
	dead := rec.firsts(vDead, victim, crashed)
	delete(dead, victim)
	suspect := rec.firsts(vSuspect, victim, crashed)
	delete(suspect, victim)
	r.Agreed, r.Detected = len(dead), ok
	since := func(ts map[int]time.Time, last bool) float64 {
		if len(ts) == 0 {
			return -1
		}
		all := slices.Collect(maps.Values(ts))
		t := slices.MinFunc(all, time.Time.Compare)
		if last {
			t = slices.MaxFunc(all, time.Time.Compare)
		}
		return t.Sub(crashed).Seconds()
	}
	r.FirstSuspectSeconds = since(suspect, false)
	r.FirstDeadSeconds = since(dead, false)
	r.AllDeadSeconds = -1
	if ok {
		r.AllDeadSeconds = since(dead, true)
	}
	r.SpuriousDead = rec.count(vDead, crashed, end, victim)
	return r, nil
}

// countingConn counts the bytes written to a connection.
type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.n.Add(int64(n))
	return n, err
}
