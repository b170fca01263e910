package transfer

import (
	"errors"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// Direct paths first. A provider reached through a relay may become
// reachable directly (hole punching, or it dialled this node): its
// session over the relay then ends, its requests go back to the
// scheduler, and a new session opens, which libp2p puts on the direct
// connection. A relayed connection that bounds data or time is never
// used for a transfer (session.open).

// errMovedDirect ends a relayed session when a direct connection opens.
var errMovedDirect = errors.New("moved to a direct connection")

// errLimitedRelay: the provider is reached only through a relay that
// bounds what it relays, and no direct connection opened.
var errLimitedRelay = errors.New("reached only through a relay that limits what it relays, and no direct connection opened (hole punching failed or is impossible between these NATs): not used for the transfer")

// limitedOnly reports whether conns are all limited (through a bounded
// relay), and there is one.
func limitedOnly(conns []network.Conn) bool {
	for _, c := range conns {
		if !c.Stat().Limited {
			return false
		}
	}
	return len(conns) > 0
}

// isRelayed reports whether a is an address through a relay.
func isRelayed(a ma.Multiaddr) bool {
	_, err := a.ValueForProtocol(ma.P_CIRCUIT)
	return err == nil
}

// directNotifee tells the service of direct connections.
type directNotifee struct {
	network.NoopNotifiee
	s *Service
}

func (d *directNotifee) Connected(_ network.Network, c network.Conn) {
	if isRelayed(c.RemoteMultiaddr()) {
		return
	}
	s := d.s
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	var fetches []*fetch
	for _, f := range s.active {
		fetches = append(fetches, f)
	}
	s.wg.Add(1)
	s.mu.Unlock()
	// Not on the notifier's goroutine: opening a stream may take a while.
	go func() {
		defer s.wg.Done()
		for _, f := range fetches {
			f.moveDirect(c.RemotePeer())
		}
	}()
}

// moveDirect ends the session with p if it runs over a relay, and opens
// another, which takes the direct connection.
func (f *fetch) moveDirect(p peer.ID) {
	f.mu.Lock()
	s := f.sessions[p]
	if s == nil || s.st == nil || f.stopping || f.ctx == nil || !isRelayed(s.st.Conn().RemoteMultiaddr()) {
		f.mu.Unlock()
		return
	}
	f.dropLocked(s, errMovedDirect, false)
	f.attempts[p]-- // not a failed attempt
	ctx := f.ctx
	f.mu.Unlock()
	f.s.log.Debug("provider now reached directly: session moved off the relay", "root", f.root, "peer", p)
	f.addPeer(ctx, p)
}
