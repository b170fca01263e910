package membership

import (
	"bufio"
	"context"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// multiplier is the Lifeguard local health factor (m.mu held).
func (m *Membership) multiplier() time.Duration { return time.Duration(m.health + 1) }

func (m *Membership) probeLoop() {
	t := time.NewTimer(m.cfg.ProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
		}
		m.mu.Lock()
		interval := m.cfg.ProbeInterval * m.multiplier()
		target := m.nextTargetLocked()
		m.mu.Unlock()
		start := time.Now()
		if target != "" {
			m.probe(target, interval)
		}
		t.Reset(max(interval-time.Since(start), 0))
	}
}

// nextTargetLocked returns the next member to probe, round-robin over a
// list reshuffled at every pass.
func (m *Membership) nextTargetLocked() peer.ID {
	for pass := 0; pass < 2; pass++ {
		for m.next < len(m.order) {
			id := m.order[m.next]
			m.next++
			if mb := m.members[id]; mb != nil && (mb.State == Alive || mb.State == Suspect) {
				return id
			}
		}
		var ids []peer.ID
		for id, mb := range m.members {
			if id != m.self && mb.State != Left {
				ids = append(ids, id)
			}
		}
		m.order, m.next = shuffle(ids), 0
	}
	return ""
}

// probe checks one member: a direct ping, then ping-reqs through others;
// a member nobody reached is suspected.
func (m *Membership) probe(target peer.ID, interval time.Duration) {
	m.mu.Lock()
	timeout := m.cfg.ProbeTimeout * m.multiplier()
	tm := m.members[target]
	if tm == nil {
		m.mu.Unlock()
		return
	}
	inc := tm.Incarnation
	m.mu.Unlock()

	deadline := time.Now().Add(interval)
	if m.ping(target, timeout) == nil {
		m.mu.Lock()
		m.health = max(m.health-1, 0)
		m.mu.Unlock()
		return
	}
	if m.ctx.Err() != nil {
		return
	}
	// Indirect probes, answered by the end of the protocol period.
	helpers := m.helpers(target, m.cfg.IndirectChecks)
	type answer struct{ ack, answered bool }
	answers := make(chan answer, len(helpers))
	ctx, cancel := context.WithDeadline(m.ctx, deadline)
	defer cancel()
	for _, h := range helpers {
		go func() {
			ack, answered := m.pingReq(ctx, h, target, timeout)
			answers <- answer{ack, answered}
		}()
	}
	reached, nacks := false, 0
	for range helpers {
		a := <-answers
		reached = reached || a.ack
		if a.answered && !a.ack {
			nacks++
		}
	}
	if reached {
		return
	}
	if m.ctx.Err() != nil {
		return
	}
	m.mu.Lock()
	if nacks < len(helpers) {
		// Helpers that did not even answer (Lifeguard's missing nacks)
		// hint that this node is the slow one: widen its timeouts.
		m.health = min(m.health+1, m.cfg.AwarenessMax-1)
	}
	cur := m.members[target]
	if cur == nil || cur.Incarnation != inc {
		m.mu.Unlock()
		return
	}
	switch {
	case cur.State == Alive:
		m.suspectLocked(cur, inc, m.self)
		m.tellSuspectLocked(target)
	case cur.State == Suspect && cur.suspicion != nil && cur.suspicion.confirm(m.self):
		// An independent confirmation: say so, so that every suspicion
		// timer shrinks (Lifeguard).
	default:
		m.mu.Unlock()
		return
	}
	m.mu.Unlock()
	m.publishAsync(update{Kind: KindSuspect, ID: []byte(target), Inc: inc})
}

// helpers picks up to k live members other than target and self.
func (m *Membership) helpers(target peer.ID, k int) []peer.ID {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ids []peer.ID
	for id, mb := range m.members {
		if id != m.self && id != target && mb.State == Alive {
			ids = append(ids, id)
		}
	}
	ids = shuffle(ids)
	if len(ids) > k {
		ids = ids[:k]
	}
	return ids
}

// ping sends a ping and waits for the ack.
func (m *Membership) ping(target peer.ID, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(m.ctx, timeout)
	defer cancel()
	p, err := m.exchange(ctx, target, probe{Type: probePing, Seq: m.seq.Add(1)})
	if err != nil {
		return err
	}
	if p.Type != probeAck {
		return invalid("answer to ping is type %d", p.Type)
	}
	return nil
}

// pingReq asks helper to ping target; it reports whether target was
// reached and whether helper answered at all.
func (m *Membership) pingReq(ctx context.Context, helper, target peer.ID, timeout time.Duration) (ack, answered bool) {
	p, err := m.exchange(ctx, helper, probe{Type: probePingReq, Seq: m.seq.Add(1), Target: []byte(target)})
	if err != nil {
		return false, false
	}
	return p.Type == probeAck, true
}

// exchange sends one probe message on a new stream and reads the answer.
func (m *Membership) exchange(ctx context.Context, p peer.ID, req probe) (probe, error) {
	s, err := m.h.NewStream(network.WithAllowLimitedConn(ctx, "membership probe"), p, ProtocolID)
	if err != nil {
		return probe{}, err
	}
	defer s.Close()
	if d, ok := ctx.Deadline(); ok {
		s.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { s.Reset() })
	defer stop()
	if err := writeFrame(s, req); err != nil {
		s.Reset()
		return probe{}, err
	}
	data, err := readFrame(bufio.NewReaderSize(s, maxProbeSize+8), maxProbeSize)
	if err != nil {
		s.Reset()
		return probe{}, err
	}
	ans, err := decodeProbe(data)
	if err != nil {
		s.Reset()
		return probe{}, err
	}
	if ans.Seq != req.Seq {
		return probe{}, invalid("answer for seq %d, want %d", ans.Seq, req.Seq)
	}
	return ans, nil
}

func (m *Membership) handleProbe(s network.Stream) {
	defer s.Close()
	s.SetDeadline(time.Now().Add(m.cfg.ProbeInterval * 2))
	data, err := readFrame(bufio.NewReaderSize(s, maxProbeSize+8), maxProbeSize)
	if err != nil {
		s.Reset()
		return
	}
	req, err := decodeProbe(data)
	if err != nil {
		s.Reset()
		return
	}
	switch req.Type {
	case probePing:
		writeFrame(s, probe{Type: probeAck, Seq: req.Seq})
	case probePingReq:
		target, _ := peer.IDFromBytes(req.Target)
		ans := probe{Type: probeNack, Seq: req.Seq}
		m.mu.Lock()
		timeout := m.cfg.ProbeTimeout * m.multiplier()
		m.mu.Unlock()
		if target != m.self && m.ping(target, timeout) == nil {
			ans.Type = probeAck
		}
		writeFrame(s, ans)
	default:
		s.Reset()
	}
}

// tellSuspectLocked pushes and pulls views with target, just suspected by
// this node (m.mu held): if it is alive but slow it learns of the
// suspicion at once, not when gossip reaches it, and its answer carries
// its refutation back. A dead target costs a failed dial.
func (m *Membership) tellSuspectLocked(target peer.ID) {
	if m.closed {
		return
	}
	minT, _ := m.suspicionTimeouts()
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		ctx, cancel := context.WithTimeout(m.ctx, minT)
		defer cancel()
		if err := m.pushPull(ctx, target); err != nil && m.ctx.Err() == nil {
			m.log.Debug("telling a suspect", "member", target, "err", err)
		}
	}()
}
