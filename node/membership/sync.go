package membership

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// SyncProtocol is the anti-entropy protocol, shared with the catalog: the
// first byte of a stream says what is synced.
const SyncProtocol = "/shoal/sync/1.0.0"

// SyncRequest is the first byte of a membership push-pull on
// SyncProtocol.
const SyncRequest byte = 2

// digestLocked is the full view (m.mu held).
func (m *Membership) digestLocked() digest {
	d := digest{Members: make([]update, 0, len(m.members))}
	for id, mb := range m.members {
		u := update{ID: []byte(id), Inc: mb.Incarnation}
		switch mb.State {
		case Alive:
			u.Kind = KindAlive
			meta := mb.Meta
			u.Meta = &meta
		case Suspect:
			u.Kind = KindSuspect
		case Dead:
			u.Kind = KindDead
		case Left:
			u.Kind = KindLeft
		}
		d.Members = append(d.Members, u)
	}
	return d
}

func (m *Membership) merge(d digest) {
	for _, u := range d.Members {
		id, err := peer.IDFromBytes(u.ID)
		if err != nil {
			continue
		}
		m.apply(u, id, "")
	}
}

// ServeSync answers a push-pull whose request byte was read already.
func (m *Membership) ServeSync(s network.Stream) {
	s.SetDeadline(time.Now().Add(30 * time.Second))
	data, err := readFrame(bufio.NewReader(s), maxDigestSize)
	if err != nil {
		s.Reset()
		return
	}
	theirs, err := decodeDigest(data)
	if err != nil {
		s.Reset()
		return
	}
	// Merge first: the answer then carries what the merge changed here,
	// such as this node's refutation of a suspicion the asker holds.
	m.merge(theirs)
	m.mu.Lock()
	ours := m.digestLocked()
	m.mu.Unlock()
	if err := writeFrame(s, ours); err != nil {
		s.Reset()
		return
	}
	s.Close()
}

// pushPull exchanges full views with p.
func (m *Membership) pushPull(ctx context.Context, p peer.ID) error {
	s, err := m.h.NewStream(network.WithAllowLimitedConn(ctx, "membership sync"), p, SyncProtocol)
	if err != nil {
		return err
	}
	defer s.Close()
	s.SetDeadline(time.Now().Add(30 * time.Second))
	stop := context.AfterFunc(ctx, func() { s.Reset() })
	defer stop()
	m.mu.Lock()
	ours := m.digestLocked()
	m.mu.Unlock()
	w := bufio.NewWriter(s)
	w.WriteByte(SyncRequest)
	if err := writeFrame(w, ours); err != nil {
		s.Reset()
		return err
	}
	if err := w.Flush(); err != nil {
		s.Reset()
		return err
	}
	s.CloseWrite()
	data, err := readFrame(bufio.NewReader(s), maxDigestSize)
	if err != nil {
		s.Reset()
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("membership: %s closed the sync", p)
		}
		return err
	}
	theirs, err := decodeDigest(data)
	if err != nil {
		s.Reset()
		return err
	}
	m.merge(theirs)
	return nil
}

// Join pushes and pulls the view with each of peers (in parallel), then
// announces this member. It fails only if peers were given and none
// answered. It blocks until the exchanges end.
func (m *Membership) Join(ctx context.Context, peers []peer.ID) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		ok   int
	)
	for _, p := range peers {
		if p == m.self {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := m.pushPull(ctx, p)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", p, err))
				return
			}
			ok++
		}()
	}
	wg.Wait()
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return errors.New("membership: closed")
	}
	a := m.aliveUpdateLocked()
	m.wg.Add(1) // the repeats below; Close waits for them
	m.mu.Unlock()
	if err := m.publish(ctx, a); err != nil {
		m.wg.Done()
		return fmt.Errorf("membership: announce: %w", err)
	}
	// The gossip mesh of a newcomer forms over the next heartbeats: the
	// first announcement may reach only the peers it joined through. Say
	// it again once the mesh has formed.
	go func() {
		defer m.wg.Done()
		for _, d := range []time.Duration{time.Second, 3 * time.Second} {
			t := time.NewTimer(d)
			select {
			case <-m.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			m.mu.Lock()
			a := m.aliveUpdateLocked()
			m.mu.Unlock()
			m.publishAsync(a)
		}
	}()
	if ok == 0 && len(errs) > 0 {
		return fmt.Errorf("membership: join: no member answered: %w", errors.Join(errs...))
	}
	return nil
}

// warmRounds is how many fast anti-entropy rounds a node runs at start.
const warmRounds = 8

// syncLoop runs anti-entropy: every SyncInterval a push-pull with a random
// live member, or now and then with one believed dead, so that a healed
// partition finds itself again.
func (m *Membership) syncLoop() {
	// A node that has just started syncs every other protocol period for
	// its first rounds, so a newcomer and the members it missed find each
	// other within seconds even when gossip dropped their announcements.
	warm := min(m.cfg.SyncInterval, 2*m.cfg.ProbeInterval)
	t := time.NewTimer(warm)
	defer t.Stop()
	for round := 1; ; round++ {
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
		}
		if round < warmRounds {
			t.Reset(warm)
		} else {
			t.Reset(m.cfg.SyncInterval)
		}
		m.reap(time.Now())
		p := m.syncTarget()
		if p == "" {
			continue
		}
		ctx, cancel := context.WithTimeout(m.ctx, 10*time.Second)
		if err := m.pushPull(ctx, p); err != nil && m.ctx.Err() == nil {
			m.log.Debug("anti-entropy", "peer", p, "err", err)
		}
		cancel()
	}
}

func (m *Membership) syncTarget() peer.ID {
	m.mu.Lock()
	defer m.mu.Unlock()
	var live, dead []peer.ID
	for id, mb := range m.members {
		switch {
		case id == m.self:
		case mb.State == Alive || mb.State == Suspect:
			live = append(live, id)
		case mb.State == Dead:
			dead = append(dead, id)
		}
	}
	if len(dead) > 0 && (len(live) == 0 || rand.IntN(4) == 0) {
		return dead[rand.IntN(len(dead))]
	}
	if len(live) == 0 {
		return ""
	}
	return live[rand.IntN(len(live))]
}

// reap forgets members dead or gone for longer than ReapAfter, so the view
// does not grow without bound under churn.
func (m *Membership) reap(now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, mb := range m.members {
		if (mb.State == Dead || mb.State == Left) && now.Sub(mb.Changed) > m.cfg.ReapAfter {
			delete(m.members, id)
		}
	}
}
