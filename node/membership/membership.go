package membership

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"
)

// State is a member's state in this node's view.
type State uint8

// States.
const (
	Alive   State = 1
	Suspect State = 2
	Dead    State = 3
	Left    State = 4
)

func (s State) String() string {
	switch s {
	case Alive:
		return "alive"
	case Suspect:
		return "suspect"
	case Dead:
		return "dead"
	case Left:
		return "left"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// MarshalText writes the state's name ("" for none).
func (s State) MarshalText() ([]byte, error) {
	if s == 0 {
		return nil, nil
	}
	return []byte(s.String()), nil
}

// UnmarshalText reads a state's name.
func (s *State) UnmarshalText(b []byte) error {
	for _, c := range []State{0, Alive, Suspect, Dead, Left} {
		if t, _ := c.MarshalText(); string(t) == string(b) {
			*s = c
			return nil
		}
	}
	return fmt.Errorf("membership: unknown state %q", b)
}

// Member is one member as this node sees it.
type Member struct {
	ID          peer.ID   `json:"id"`
	State       State     `json:"state"`
	Incarnation uint64    `json:"incarnation"`
	Meta        Meta      `json:"meta"`
	Changed     time.Time `json:"changed"` // when this node last saw the state change
}

// Event is a change of a member's state or metadata.
type Event struct {
	Member Member `json:"member"`
	Prev   State  `json:"prev"` // 0 for a member seen for the first time
}

// ProtocolID is the probe protocol.
const ProtocolID = "/shoal/swim/1.0.0"

// Topic returns the members topic of a network.
func Topic(network string) string { return "shoal/" + network + "/members" }

type member struct {
	Member
	suspicion *suspicion // while Suspect
}

// Membership is one node's membership protocol. Its methods are safe for
// concurrent use.
type Membership struct {
	h     host.Host
	ps    *pubsub.PubSub
	topic *pubsub.Topic
	sub   *pubsub.Subscription
	cfg   Config
	log   *slog.Logger
	self  peer.ID

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex // guards everything below
	members map[peer.ID]*member
	order   []peer.ID // probe order
	next    int
	health  int // Lifeguard local health score, 0..AwarenessMax-1
	subs    map[chan Event]struct{}
	closed  bool

	seq     atomic.Uint64
	dropped atomic.Int64
}

// New starts the protocol on h, joining the members topic on ps. It does
// not contact anyone: Join does. Close leaves gracefully.
func New(h host.Host, ps *pubsub.PubSub, cfg Config) (*Membership, error) {
	cfg.fill()
	m := &Membership{
		h: h, ps: ps, cfg: cfg, log: cfg.Logger, self: h.ID(),
		members: make(map[peer.ID]*member),
		subs:    make(map[chan Event]struct{}),
	}
	meta := cfg.Meta
	if len(meta.Addrs) == 0 {
		for _, a := range h.Addrs() {
			meta.Addrs = append(meta.Addrs, a.String())
		}
	}
	m.cfg.Meta = meta
	m.members[m.self] = &member{Member: Member{ID: m.self, State: Alive, Incarnation: firstIncarnation(time.Now()), Meta: meta, Changed: time.Now()}}

	name := Topic(cfg.Network)
	if err := ps.RegisterTopicValidator(name, m.validate); err != nil {
		return nil, fmt.Errorf("membership: %w", err)
	}
	t, err := ps.Join(name)
	if err != nil {
		ps.UnregisterTopicValidator(name)
		return nil, fmt.Errorf("membership: join %s: %w", name, err)
	}
	sub, err := t.Subscribe()
	if err != nil {
		t.Close()
		ps.UnregisterTopicValidator(name)
		return nil, fmt.Errorf("membership: subscribe: %w", err)
	}
	m.topic, m.sub = t, sub
	m.ctx, m.cancel = context.WithCancel(context.Background())
	h.SetStreamHandler(ProtocolID, m.handleProbe)
	m.wg.Add(3)
	go func() { defer m.wg.Done(); m.receive() }()
	go func() { defer m.wg.Done(); m.probeLoop() }()
	go func() { defer m.wg.Done(); m.syncLoop() }()
	return m, nil
}

// Close announces that this member leaves, stops the protocol and waits
// for its goroutines. It may be called twice.
func (m *Membership) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	me := m.members[m.self]
	me.State = Left
	u := update{Kind: KindLeft, ID: []byte(m.self), Inc: me.Incarnation}
	for _, s := range m.members {
		if s.suspicion != nil {
			s.suspicion.stop()
		}
	}
	m.mu.Unlock()

	// Tell the others: gossip, and a push of the view (which says we
	// left) to a few members directly, so the news does not depend on a
	// gossip message still queued when the host closes.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	err := m.publish(ctx, u)
	var wg sync.WaitGroup
	for _, p := range m.helpers(m.self, m.cfg.IndirectChecks) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.pushPull(ctx, p)
		}()
	}
	wg.Wait()
	cancel()

	m.h.RemoveStreamHandler(ProtocolID)
	m.cancel()
	m.sub.Cancel()
	m.wg.Wait()
	m.mu.Lock()
	for ch := range m.subs {
		close(ch)
		delete(m.subs, ch)
	}
	m.mu.Unlock()
	return errors.Join(err, m.topic.Close(), m.ps.UnregisterTopicValidator(Topic(m.cfg.Network)))
}

// Members returns a snapshot of the view, this node included, sorted by
// ID.
func (m *Membership) Members() []Member {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Member, 0, len(m.members))
	for _, mb := range m.members {
		c := mb.Member
		c.Meta.Roles = slices.Clone(c.Meta.Roles)
		c.Meta.Addrs = slices.Clone(c.Meta.Addrs)
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b Member) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return out
}

// Subscribe returns a channel of membership events and a function that
// ends the subscription. Events are dropped, never waited for, when the
// reader falls more than buffer events behind; Dropped counts them. The
// channel is closed by cancel or Close.
func (m *Membership) Subscribe(buffer int) (<-chan Event, func()) {
	if buffer < 1 {
		buffer = 256
	}
	ch := make(chan Event, buffer)
	m.mu.Lock()
	if m.closed {
		close(ch)
	} else {
		m.subs[ch] = struct{}{}
	}
	m.mu.Unlock()
	return ch, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if _, ok := m.subs[ch]; ok {
			delete(m.subs, ch)
			close(ch)
		}
	}
}

// Dropped is the number of events lost by slow subscribers.
func (m *Membership) Dropped() int64 { return m.dropped.Load() }

// emit hands an event to the subscribers (m.mu held).
func (m *Membership) emit(mb *member, prev State) {
	e := Event{Member: mb.Member, Prev: prev}
	for ch := range m.subs {
		select {
		case ch <- e:
		default:
			m.dropped.Add(1)
		}
	}
}

// setState changes a member's state (m.mu held).
func (m *Membership) setState(mb *member, s State, inc uint64) {
	prev := mb.State
	mb.State, mb.Incarnation, mb.Changed = s, inc, time.Now()
	if s != Suspect && mb.suspicion != nil {
		mb.suspicion.stop()
		mb.suspicion = nil
	}
	if prev != s {
		m.log.Debug("member state", "member", mb.ID, "state", s, "prev", prev, "incarnation", inc)
	}
	m.emit(mb, prev)
}

// aliveCount counts members not dead or left (m.mu held).
func (m *Membership) aliveCount() int {
	n := 0
	for _, mb := range m.members {
		if mb.State == Alive || mb.State == Suspect {
			n++
		}
	}
	return n
}

// apply applies an update from author (the gossip author, or "" for an
// update learned by anti-entropy, which carries no proof of who said it).
// It returns whether the view changed.
func (m *Membership) apply(u update, id peer.ID, author peer.ID) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false
	}
	if id == m.self {
		return m.refuteLocked(u)
	}
	mb := m.members[id]
	switch u.Kind {
	case KindAlive:
		if m.cfg.Admit != nil {
			if u.Meta == nil && mb == nil {
				return false
			}
			if u.Meta != nil {
				if err := m.cfg.Admit(id, *u.Meta); err != nil {
					m.log.Debug("membership: member refused", "member", id, "err", err)
					return false
				}
			}
		}
		if mb == nil {
			mb = &member{Member: Member{ID: id}}
			m.members[id] = mb
			m.order = append(m.order, id)
			if u.Meta != nil {
				mb.Meta = *u.Meta
				m.learnAddrs(id, u.Meta.Addrs)
			}
			m.setState(mb, Alive, u.Inc)
			return true
		}
		if u.Inc <= mb.Incarnation {
			return false
		}
		if u.Meta != nil {
			mb.Meta = *u.Meta
			m.learnAddrs(id, u.Meta.Addrs)
		}
		m.setState(mb, Alive, u.Inc)
		return true
	case KindSuspect:
		if mb == nil || u.Inc < mb.Incarnation || mb.State == Dead || mb.State == Left {
			return false
		}
		if mb.State == Suspect && u.Inc == mb.Incarnation {
			if author != "" && mb.suspicion != nil {
				mb.suspicion.confirm(author)
			}
			return false
		}
		m.suspectLocked(mb, u.Inc, author)
		return true
	case KindDead, KindLeft:
		if mb == nil {
			return false
		}
		if u.Inc < mb.Incarnation || mb.State == Left || (mb.State == Dead && u.Kind == KindDead) {
			return false
		}
		s := Dead
		if u.Kind == KindLeft {
			s = Left
		}
		m.setState(mb, s, u.Inc)
		return true
	}
	return false
}

// firstIncarnation is the incarnation a member starts with: the time in
// nanoseconds, so that a member that comes back (same peer ID, a new
// process) starts above every incarnation its earlier run announced, its
// "left" or "dead" included, and is taken for alive again at once. A
// clock set back is covered by refuting: a claim of leave or death about
// a running member at or above its incarnation is answered with a higher
// one.
func firstIncarnation(now time.Time) uint64 {
	return max(1, uint64(now.UnixNano()))
}

// refuteLocked answers a statement about this node: a suspicion, death or
// leave at our incarnation or above is refuted with a higher incarnation
// (this node runs, so it has not left).
func (m *Membership) refuteLocked(u update) bool {
	me := m.members[m.self]
	if u.Kind != KindSuspect && u.Kind != KindDead && u.Kind != KindLeft {
		return false
	}
	if u.Inc < me.Incarnation {
		return false
	}
	me.Incarnation = u.Inc + 1
	me.Changed = time.Now()
	m.health = min(m.health+1, m.cfg.AwarenessMax-1)
	m.log.Debug("refuting", "claim", u.Kind, "incarnation", me.Incarnation)
	a := m.aliveUpdateLocked()
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.publish(m.ctx, a)
	}()
	return true
}

func (m *Membership) aliveUpdateLocked() update {
	me := m.members[m.self]
	meta := me.Meta
	return update{Kind: KindAlive, ID: []byte(m.self), Inc: me.Incarnation, Meta: &meta}
}

// learnAddrs keeps a member's advertised addresses for probing.
func (m *Membership) learnAddrs(id peer.ID, addrs []string) {
	var mas []ma.Multiaddr
	for _, s := range addrs {
		if a, err := ma.NewMultiaddr(s); err == nil {
			mas = append(mas, a)
		}
	}
	if len(mas) > 0 {
		m.h.Peerstore().AddAddrs(id, mas, peerstore.RecentlyConnectedAddrTTL)
	}
}

// suspicionTimeouts returns the shortest and longest suspicion timeouts
// for the current size of the view (m.mu held).
func (m *Membership) suspicionTimeouts() (time.Duration, time.Duration) {
	n := float64(max(m.aliveCount(), 1))
	scale := math.Max(1, math.Log10(n))
	minT := time.Duration(float64(m.cfg.SuspicionMult) * scale * float64(m.cfg.ProbeInterval))
	return minT, minT * time.Duration(m.cfg.SuspicionMaxMult)
}

// suspectLocked marks mb suspect and starts its suspicion timer.
func (m *Membership) suspectLocked(mb *member, inc uint64, from peer.ID) {
	m.setState(mb, Suspect, inc)
	minT, maxT := m.suspicionTimeouts()
	k := max(m.cfg.SuspicionMult-2, 0)
	if m.aliveCount() < k+2 {
		k = 0
	}
	id := mb.ID
	mb.suspicion = newSuspicion(from, k, minT, maxT, func(confirmations int) {
		m.mu.Lock()
		cur := m.members[id]
		if cur == nil || cur.State != Suspect || cur.Incarnation != inc || m.closed {
			m.mu.Unlock()
			return
		}
		m.log.Debug("suspicion expired", "member", id, "confirmations", confirmations)
		m.setState(cur, Dead, inc)
		m.mu.Unlock()
		m.publishAsync(update{Kind: KindDead, ID: []byte(id), Inc: inc})
	})
}

func (m *Membership) publishAsync(u update) {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	m.wg.Add(1)
	m.mu.Unlock()
	go func() {
		defer m.wg.Done()
		if err := m.publish(m.ctx, u); err != nil && m.ctx.Err() == nil {
			m.log.Debug("publish", "err", err)
		}
	}()
}

func (m *Membership) publish(ctx context.Context, u update) error {
	data, err := encMode.Marshal(u)
	if err != nil {
		return err
	}
	return m.topic.Publish(ctx, data)
}

// validate accepts only well-formed updates in which a member speaks for
// itself when it says it is alive or leaving.
func (m *Membership) validate(ctx context.Context, from peer.ID, msg *pubsub.Message) bool {
	u, id, err := decodeUpdate(msg.Data)
	if err != nil {
		return false
	}
	if (u.Kind == KindAlive || u.Kind == KindLeft) && id != msg.GetFrom() {
		return false
	}
	return true
}

func (m *Membership) receive() {
	for {
		msg, err := m.sub.Next(m.ctx)
		if err != nil {
			return
		}
		if msg.Local {
			continue
		}
		u, id, err := decodeUpdate(msg.Data)
		if err != nil {
			continue
		}
		m.apply(u, id, msg.GetFrom())
	}
}

// shuffle returns a random permutation of ids.
func shuffle(ids []peer.ID) []peer.ID {
	out := slices.Clone(ids)
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// UpdateMeta replaces this member's metadata and announces it with a new
// incarnation.
func (m *Membership) UpdateMeta(meta Meta) error {
	if err := meta.check(); err != nil {
		return err
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return errors.New("membership: closed")
	}
	me := m.members[m.self]
	me.Meta = meta
	me.Incarnation++
	me.Changed = time.Now()
	m.emit(me, me.State)
	a := m.aliveUpdateLocked()
	m.mu.Unlock()
	m.publishAsync(a)
	return nil
}

// Self returns this member's own entry.
func (m *Membership) Self() Member {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.members[m.self].Member
}
