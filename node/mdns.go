package node

import (
	"context"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/discovery/mdns"
)

// mdnsBackoff is how long the peer with the greater ID waits before it dials
// a peer mDNS found, and the pause between attempts after a failure.
const mdnsBackoff = 2 * time.Second

// mdnsNotifee connects to the peers mDNS finds on the LAN.
type mdnsNotifee struct{ n *Node }

// HandlePeerFound is called by the mDNS service; it must not block, so the
// dial runs in the background under the node's lifetime.
//
// Both peers of a pair find each other at the same moment. If both dialed at
// once from their (reused) listen ports, TCP could open one connection in
// which each side believes it is the initiator, and the security handshake
// fails on both. So the peer with the smaller ID dials at once; the other
// waits, and dials only if no connection came. Failed dials are retried a
// few times.
func (m mdnsNotifee) HandlePeerFound(ai peer.AddrInfo) {
	n := m.n
	if ai.ID == n.h.ID() || n.ctx.Err() != nil {
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		wait := time.Duration(0)
		if n.h.ID() > ai.ID {
			wait = mdnsBackoff
		}
		for attempt := 0; attempt < 4; attempt++ {
			if wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-n.ctx.Done():
					t.Stop()
					return
				case <-t.C:
				}
			}
			if n.h.Network().Connectedness(ai.ID) == network.Connected {
				n.joinMembers([]peer.ID{ai.ID})
				return
			}
			ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
			err := n.h.Connect(ctx, ai)
			cancel()
			if err == nil {
				n.joinMembers([]peer.ID{ai.ID})
				return
			}
			n.log.Debug("mdns: connect", "peer", ai.ID, "attempt", attempt+1, "err", err)
			wait = mdnsBackoff
		}
	}()
}

// startMDNS announces the node on the LAN and connects to the peers of the
// same network it finds there. It multicasts on every interface, so it is
// opt-in (Config.MDNS).
func (n *Node) startMDNS() error {
	svc := mdns.NewMdnsService(n.h, "shoal-"+n.cfg.Network, mdnsNotifee{n})
	if err := svc.Start(); err != nil {
		return err
	}
	n.mdns = svc
	return nil
}
