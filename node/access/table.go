package access

import (
	"context"
	"maps"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/shoalnet/shoal/node/auth"
)

// Admission is the outcome of one peer's exchange, once Done is closed.
type Admission struct {
	done    chan struct{}
	once    sync.Once
	err     error
	role    auth.Role
	token   auth.TokenID
	expires time.Time
}

// Finish records the outcome: the peer's role and token, or why it was
// not admitted. Only the first call counts; it reports whether it was the
// first.
func (a *Admission) Finish(role auth.Role, t auth.Token, err error) bool {
	first := false
	a.once.Do(func() {
		first = true
		a.role, a.err = role, err
		if !t.IsZero() {
			a.token, a.expires = t.ID(), t.Expires
		}
		close(a.done)
	})
	return first
}

// Done is closed once the outcome is known.
func (a *Admission) Done() <-chan struct{} { return a.done }

// Wait waits for the outcome and returns the peer's role, or why it has
// none.
func (a *Admission) Wait(ctx context.Context) (auth.Role, error) {
	select {
	case <-a.done:
		return a.role, a.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// admitted reports, without waiting, whether the peer was admitted.
func (a *Admission) admitted() bool {
	select {
	case <-a.done:
		return a.err == nil
	default:
		return false
	}
}

// Table holds the admission of every connected peer. It is safe for
// concurrent use.
type Table struct {
	mu    sync.Mutex
	peers map[peer.ID]*Admission
}

// NewTable returns an empty table.
func NewTable() *Table { return &Table{peers: make(map[peer.ID]*Admission)} }

// Track returns p's admission; isNew reports that it was just created, so
// the caller starts the exchange.
func (t *Table) Track(p peer.ID) (a *Admission, isNew bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if a = t.peers[p]; a != nil {
		return a, false
	}
	a = &Admission{done: make(chan struct{})}
	t.peers[p] = a
	return a, true
}

// Forget drops p (its last connection closed); its next connection runs
// the exchange again.
func (t *Table) Forget(p peer.ID) {
	t.mu.Lock()
	delete(t.peers, p)
	t.mu.Unlock()
}

// Admitted reports whether p completed the exchange and was admitted. It
// never waits (gossipsub's peer filter calls it).
func (t *Table) Admitted(p peer.ID) bool {
	t.mu.Lock()
	a := t.peers[p]
	t.mu.Unlock()
	return a != nil && a.admitted()
}

// Lapsed returns the admitted peers whose tokens v knows to be revoked or
// that expired by now. An admin named in the network's configuration needs
// no token and never lapses.
func (t *Table) Lapsed(v *auth.Verifier, now time.Time) []peer.ID {
	t.mu.Lock()
	peers := make(map[peer.ID]*Admission, len(t.peers))
	maps.Copy(peers, t.peers)
	t.mu.Unlock()
	var out []peer.ID
	for p, a := range peers {
		if !a.admitted() || a.role == auth.RoleAdmin && v.IsAdmin(p) {
			continue
		}
		if v.Revoked(a.token) || (!a.expires.IsZero() && !now.Before(a.expires)) {
			out = append(out, p)
		}
	}
	return out
}

// Gater refuses, at dial and at the handshake, peers that recently failed
// the exchange or whose token was revoked. It is a libp2p
// ConnectionGater, safe for concurrent use.
type Gater struct {
	mu      sync.Mutex
	refused map[peer.ID]time.Time // until
	now     func() time.Time
}

// NewGater returns a gater that refuses nobody.
func NewGater() *Gater { return &Gater{refused: make(map[peer.ID]time.Time), now: time.Now} }

// Refuse refuses p for d (longer if it is refused longer already).
func (g *Gater) Refuse(p peer.ID, d time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	until := g.now().Add(d)
	if until.After(g.refused[p]) {
		g.refused[p] = until
	}
}

// Refused reports whether p is refused now.
func (g *Gater) Refused(p peer.ID) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	until, ok := g.refused[p]
	if !ok {
		return false
	}
	if g.now().After(until) {
		delete(g.refused, p)
		return false
	}
	return true
}

// Count returns how many peers are refused (some may have served their
// time and not been asked about since).
func (g *Gater) Count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.refused)
}

func (g *Gater) InterceptPeerDial(p peer.ID) bool                                { return !g.Refused(p) }
func (g *Gater) InterceptAddrDial(peer.ID, ma.Multiaddr) bool                    { return true }
func (g *Gater) InterceptAccept(network.ConnMultiaddrs) bool                     { return true }
func (g *Gater) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) { return true, 0 }
func (g *Gater) InterceptSecured(_ network.Direction, p peer.ID, _ network.ConnMultiaddrs) bool {
	return !g.Refused(p)
}
