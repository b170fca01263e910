package transfer

import (
	"errors"

	"github.com/libp2p/go-libp2p/core/event"
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

// watchDirect moves relayed sessions to each direct connection once it
// is identified (usable: a stream opened on a connection still being
// set up waits for it), until sub closes.
func (s *Service) watchDirect(sub event.Subscription) {
	for e := range sub.Out() {
		id, ok := e.(event.EvtPeerIdentificationCompleted)
		if !ok || id.Conn == nil || isRelayed(id.Conn.RemoteMultiaddr()) {
			continue
		}
		s.mu.Lock()
		var fetches []*fetch
		for _, f := range s.active {
			fetches = append(fetches, f)
		}
		s.mu.Unlock()
		for _, f := range fetches {
			f.moveDirect(id.Peer)
		}
	}
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
	// Not starved meanwhile: the new session comes next.
	f.retrying++
	f.dropLocked(s, errMovedDirect, false)
	f.attempts[p]-- // not a failed attempt
	ctx := f.ctx
	f.mu.Unlock()
	f.s.log.Debug("provider now reached directly: session moved off the relay", "root", f.root, "peer", p)
	f.addPeer(ctx, p)
	f.mu.Lock()
	f.retrying--
	f.checkStarved()
	f.mu.Unlock()
}
