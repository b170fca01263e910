package node

import (
	"context"
	"io"
	"os"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/shoalnet/shoal/node/catalog"
	"github.com/shoalnet/shoal/node/membership"
)

// handleSync routes /shoal/sync/1.0.0 streams by their first byte to the
// catalog or the membership.
func (n *Node) handleSync(s network.Stream) {
	s.SetReadDeadline(time.Now().Add(10 * time.Second))
	var b [1]byte
	if _, err := io.ReadFull(s, b[:]); err != nil {
		s.Reset()
		return
	}
	switch b[0] {
	case catalog.SyncRequest:
		n.cat.ServeSync(s)
	case membership.SyncRequest:
		n.members.ServeSync(s)
	case PeersRequest:
		n.servePeers(s)
	default:
		s.Reset()
	}
}

// Members returns the membership view, this node included.
func (n *Node) Members() []membership.Member { return n.members.Members() }

// SubscribeMembers returns a channel of membership changes and a function
// that ends the subscription; a slow reader loses events, it never slows
// the protocol.
func (n *Node) SubscribeMembers(buffer int) (<-chan membership.Event, func()) {
	return n.members.Subscribe(buffer)
}

// meta is this node's member metadata now.
func (n *Node) meta() membership.Meta {
	m := membership.Meta{
		Name:    n.cfg.Name,
		Network: n.cfg.Network,
		Roles:   n.cfg.Roles,
		Version: n.cfg.Version,
		Shares:  n.servedShares(),
	}
	if n.access.closed() {
		m.Token = n.access.tokenBytes()
		m.Roles = nil
		if r, err := n.Role(); err == nil {
			m.Roles = []string{string(r)}
		}
	}
	for _, a := range n.h.Addrs() {
		if len(m.Addrs) < 16 {
			m.Addrs = append(m.Addrs, a.String())
		}
	}
	if free, ok := freeStorage(n.cfg.Home); ok {
		m.FreeStorage = free
	}
	if rc := n.cfg.Replication; rc.Storer {
		m.Storer = true
		m.StoreUsed = uint64(max(n.storeUsed(), 0))
		m.StoreQuota = uint64(max(rc.Quota, 0))
		m.StoreFull = n.repl.storeFull()
	}
	return m
}

// refreshMeta announces changed metadata (share count, free storage).
func (n *Node) refreshMeta() {
	if err := n.members.UpdateMeta(n.meta()); err != nil && n.ctx.Err() == nil {
		n.log.Debug("update member metadata", "err", err)
	}
}

// watchMembers tells the transfer service at once when a member is
// declared dead or leaves, so fetches re-assign its chunks without waiting
// for timeouts; pulls the catalog of a member that comes back; and asks
// the replicator to check placement.
func (n *Node) watchMembers(events <-chan membership.Event) {
	for e := range events {
		if e.Member.State == membership.Dead || e.Member.State == membership.Left {
			n.xfer.PeerGone(e.Member.ID)
		}
		if e.Member.State == membership.Alive && (e.Prev == membership.Dead || e.Prev == membership.Left) {
			// Back after a crash or a partition: what it announced
			// meanwhile did not reach this side.
			n.syncCatalogSoon(e.Member.ID)
		}
		if e.Member.State != e.Prev {
			n.metrics.transitions.WithLabelValues(e.Member.State.String()).Inc()
		}
		if e.Member.State != e.Prev || e.Member.Meta.Storer {
			n.repl.poke()
		}
	}
}

// syncCatalogSoon pulls p's catalog in the background.
func (n *Node) syncCatalogSoon(p peer.ID) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		ctx, cancel := context.WithTimeout(n.ctx, 30*time.Second)
		defer cancel()
		if err := n.cat.Sync(ctx, p); err != nil && n.ctx.Err() == nil {
			n.log.Debug("catalog sync with a returning member", "peer", p, "err", err)
		}
		n.repl.poke()
	}()
}

// joinMembers pushes and pulls the member view with peers in the
// background.
func (n *Node) joinMembers(peers []peer.ID) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		ctx, cancel := context.WithTimeout(n.ctx, 30*time.Second)
		defer cancel()
		if err := n.members.Join(ctx, peers); err != nil && n.ctx.Err() == nil {
			n.log.Warn("join members", "err", err)
		}
	}()
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return ""
	}
	return h
}

// servedShares counts the shares served (stale ones are not).
func (n *Node) servedShares() int {
	k := 0
	for _, s := range n.xfer.Shares() {
		if s.Stale == "" {
			k++
		}
	}
	return k
}
