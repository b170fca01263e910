package node

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/host/autorelay"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/shoalnet/shoal/transfer/wire"
)

// Reaching peers behind NATs and firewalls. Every node learns whether it
// can be dialled from the internet (AutoNAT v2: other peers dial its
// addresses back) and punches holes through NATs (DCUtR): when a peer
// reaches it through a relay, both dial each other at once, and the
// relayed connection is replaced by a direct one where the NATs allow.
// A node that is not reachable reserves a slot on the relays it is given
// (circuit relay v2) and announces addresses through them; a public node
// may offer to be such a relay.
//
// A relay may bound what it relays (data, duration): connections through
// it are then "limited". Shoal's small exchanges (the token exchange,
// membership probes, catalog and topology pulls) go over limited
// connections; a transfer does not, as the relay would cut it: it waits
// for the direct connection hole punching gives, and a peer that cannot
// be reached directly is left to the fetch's other providers. Through a
// relay that bounds nothing (shoal's own, by default) transfers go
// relayed when no direct path opens.

// NATConfig configures NAT traversal.
type NATConfig struct {
	// Relays are circuit relay v2 peers (with their addresses) this node
	// reserves a slot on when it is not publicly reachable; others then
	// reach it at <relay address>/p2p-circuit/p2p/<this peer>.
	Relays []peer.AddrInfo
	// RelayService offers this node as a relay to the network's peers.
	// A relay runs on a machine known to be public: unless Reachability
	// says otherwise, it is taken as "public" (libp2p runs the relay only
	// on a node it believes public).
	RelayService bool
	// RelayMaxData and RelayMaxDuration bound each connection relayed
	// through this node (data in each direction, time); 0 is no bound.
	// A bounded relay carries shoal's control messages but no transfers.
	RelayMaxData     int64
	RelayMaxDuration time.Duration
	// PortMap asks the LAN's router for a port mapping (UPnP IGD,
	// NAT-PMP). Off by default: it sends multicast on the LAN.
	PortMap bool
	// Reachability is "" to find out (AutoNAT), or "public" or "private"
	// to say so: a node known to be behind a NAT reserves relay slots at
	// once instead of after its first probes.
	Reachability string
}

// RelayBufferSize is the relay service's copy buffer per direction of a
// circuit.
const RelayBufferSize = 64 << 10

// Reachability values.
const (
	ReachPublic  = "public"
	ReachPrivate = "private"
)

func (c NATConfig) check() error {
	switch c.Reachability {
	case "", ReachPublic, ReachPrivate:
	default:
		return fmt.Errorf("node: reachability %q: want public, private or empty (found out)", c.Reachability)
	}
	if c.RelayMaxData < 0 || c.RelayMaxDuration < 0 {
		return fmt.Errorf("node: relay limits must not be negative")
	}
	for _, r := range c.Relays {
		if len(r.Addrs) == 0 {
			return fmt.Errorf("node: relay %s has no address", r.ID)
		}
	}
	return nil
}

// options are the host's NAT traversal options. Relays are offered once
// listening is closed: a connection to a relay dialled from the listening
// port is the one whose address the relay observes and the NAT keeps,
// which hole punching needs (dialled before, it would come from another
// port).
func (c NATConfig) options(listening <-chan struct{}) []libp2p.Option {
	opts := []libp2p.Option{
		libp2p.EnableRelay(), // the relay transport: dial and accept through relays
		libp2p.EnableHolePunching(),
		// Find out which addresses peers can dial (they dial back), and
		// answer their probes. (AutoNAT v1's service is left off: libp2p
		// never closes the extra host it runs for it.)
		libp2p.EnableAutoNATv2(),
	}
	if len(c.Relays) > 0 {
		relays := c.Relays
		source := func(ctx context.Context, num int) <-chan peer.AddrInfo {
			ch := make(chan peer.AddrInfo, len(relays))
			select {
			case <-listening:
				for _, r := range relays[:min(num, len(relays))] {
					ch <- r
				}
			case <-ctx.Done():
			}
			close(ch)
			return ch
		}
		opts = append(opts, libp2p.EnableAutoRelayWithPeerSource(source,
			autorelay.WithBootDelay(0), autorelay.WithMinCandidates(1), autorelay.WithMinInterval(10*time.Second)))
	}
	if c.RelayService {
		res := relayv2.DefaultResources()
		res.Limit = nil // no bound: transfers may cross
		// Relayed chunks are copied in pieces of BufferSize: with libp2p's
		// 2 KiB a relay carried a third less (BENCHMARKS.md); at 64 KiB
		// each circuit holds 128 KiB.
		res.BufferSize = RelayBufferSize
		if c.RelayMaxData > 0 || c.RelayMaxDuration > 0 {
			res.Limit = &relayv2.RelayLimit{Data: c.RelayMaxData, Duration: c.RelayMaxDuration}
			if res.Limit.Data == 0 {
				res.Limit.Data = 1 << 62
			}
			if res.Limit.Duration == 0 {
				res.Limit.Duration = 100 * 365 * 24 * time.Hour
			}
		}
		opts = append(opts, libp2p.EnableRelayService(relayv2.WithResources(res)))
	}
	if c.PortMap {
		opts = append(opts, libp2p.NATPortMap())
	}
	reach := c.Reachability
	if reach == "" && c.RelayService {
		reach = ReachPublic
	}
	switch reach {
	case ReachPublic:
		opts = append(opts, libp2p.ForceReachabilityPublic())
	case ReachPrivate:
		opts = append(opts, libp2p.ForceReachabilityPrivate())
	}
	return opts
}

// reachWatch keeps what the host learns of its reachability.
type reachWatch struct {
	mu          sync.Mutex
	reach       network.Reachability
	reachable   []ma.Multiaddr // addresses AutoNAT v2 confirmed
	unreachable []ma.Multiaddr // addresses peers could not dial back
}

// run follows the host's reachability events until sub closes.
func (w *reachWatch) run(sub event.Subscription) {
	for e := range sub.Out() {
		w.mu.Lock()
		switch e := e.(type) {
		case event.EvtLocalReachabilityChanged:
			w.reach = e.Reachability
		case event.EvtHostReachableAddrsChanged:
			w.reachable = slices.Clone(e.Reachable)
			w.unreachable = slices.Clone(e.Unreachable)
		}
		w.mu.Unlock()
	}
}

// NATStatus is how this node is reached.
type NATStatus struct {
	// Reachability is "public" (peers can dial it), "private" (behind a
	// NAT or firewall: reached through relays) or "unknown" (not found
	// out yet).
	Reachability string `json:"reachability"`
	// PublicAddrs are the node's public addresses: its own, mapped by
	// the router, or observed by peers.
	PublicAddrs []string `json:"public_addrs,omitempty"`
	// ConfirmedAddrs are those that peers dialled back (AutoNAT v2).
	ConfirmedAddrs []string `json:"confirmed_addrs,omitempty"`
	// RelayAddrs are addresses through relays this node holds a slot on.
	RelayAddrs []string `json:"relay_addrs,omitempty"`
	// Direct and Relayed count the connections to peers now.
	Direct  int `json:"direct_connections"`
	Relayed int `json:"relayed_connections"`
	// RelayService says whether this node offers to relay.
	RelayService bool `json:"relay_service,omitempty"`
}

// NAT reports how this node is reached: its reachability, addresses and
// connections, direct and relayed.
func (n *Node) NAT() NATStatus {
	n.reach.mu.Lock()
	st := NATStatus{Reachability: "unknown", RelayService: n.cfg.NAT.RelayService}
	switch {
	case n.reach.reach == network.ReachabilityPublic:
		st.Reachability = ReachPublic
	case n.reach.reach == network.ReachabilityPrivate:
		st.Reachability = ReachPrivate
	// Else what AutoNAT v2 found, address by address.
	case len(n.reach.reachable) > 0:
		st.Reachability = ReachPublic
	case len(n.reach.unreachable) > 0:
		st.Reachability = ReachPrivate
	}
	for _, a := range n.reach.reachable {
		st.ConfirmedAddrs = append(st.ConfirmedAddrs, a.String())
	}
	n.reach.mu.Unlock()
	for _, a := range n.h.Addrs() {
		if isRelayed(a) {
			st.RelayAddrs = append(st.RelayAddrs, a.String()+"/p2p/"+n.h.ID().String())
		}
	}
	// Behind a NAT, Addrs leaves out the public addresses peers observe
	// (they are not dialable); they are what hole punching uses.
	direct := n.h.Addrs()
	if h, ok := n.h.(interface{ AllAddrs() []ma.Multiaddr }); ok {
		direct = h.AllAddrs()
	}
	for _, a := range direct {
		if !isRelayed(a) && manet.IsPublicAddr(a) {
			st.PublicAddrs = append(st.PublicAddrs, a.String())
		}
	}
	for _, c := range n.h.Network().Conns() {
		if isRelayed(c.RemoteMultiaddr()) {
			st.Relayed++
		} else {
			st.Direct++
		}
	}
	return st
}

// isRelayed reports whether a is an address through a relay.
func isRelayed(a ma.Multiaddr) bool {
	_, err := a.ValueForProtocol(ma.P_CIRCUIT)
	return err == nil
}

// Hole punching is tried when a connection through a relay opens, on the
// side that accepted it, and only once that side knows the public address
// its NAT gives it (the relay tells it, soon after start). A relayed
// connection accepted before is never tried, and in a network joined
// through a relay that is the common case: the members learn of each
// other at once. So a relayed connection this node accepted, with no
// direct one beside it, repunchAfter after it opened, is closed (when no
// transfer runs on it); the peer dials again when it needs to, through
// the relay, and the new connection is tried. At most repunchTries times
// per peer.
const (
	repunchAfter = 10 * time.Second
	repunchTries = 3
)

func (n *Node) repunchLoop() {
	t := time.NewTicker(repunchAfter / 2)
	defer t.Stop()
	tries := make(map[peer.ID]int)
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		for _, p := range n.h.Network().Peers() {
			var accepted network.Conn
			direct := false
			for _, c := range n.h.Network().ConnsToPeer(p) {
				switch {
				case !isRelayed(c.RemoteMultiaddr()):
					direct = true
				case c.Stat().Direction == network.DirInbound && time.Since(c.Stat().Opened) > repunchAfter:
					accepted = c
				}
			}
			if direct {
				delete(tries, p)
				continue
			}
			if accepted == nil || tries[p] >= repunchTries || carriesTransfer(accepted) {
				continue
			}
			tries[p]++
			n.log.Debug("relayed connection never hole punched: closing it so that the next one is", "peer", p, "try", tries[p])
			accepted.Close()
		}
	}
}

// carriesTransfer reports whether c has a transfer stream open.
func carriesTransfer(c network.Conn) bool {
	for _, s := range c.GetStreams() {
		if s.Protocol() == wire.ProtocolID {
			return true
		}
	}
	return false
}
