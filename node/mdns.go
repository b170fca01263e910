package node

import (
	"context"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/discovery/mdns"
)

// mdnsNotifee connects to the peers mDNS finds on the LAN.
type mdnsNotifee struct{ n *Node }

// HandlePeerFound is called by the mDNS service; it must not block, so the
// dial runs in the background under the node's lifetime.
func (m mdnsNotifee) HandlePeerFound(ai peer.AddrInfo) {
	n := m.n
	if ai.ID == n.h.ID() || n.ctx.Err() != nil {
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
		defer cancel()
		if err := n.h.Connect(ctx, ai); err != nil {
			n.log.Debug("mdns: connect", "peer", ai.ID, "err", err)
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
