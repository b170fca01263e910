package node

import (
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/shoalnet/shoal/node/catalog"
	"github.com/shoalnet/shoal/node/membership"
	"github.com/shoalnet/shoal/transfer/wire"
)

// Streams one peer may hold open on each of shoal's protocols, and all
// peers together. A peer past its limit has new streams refused; the
// others are not affected.
//
//	protocol            per peer   all peers
//	/shoal/xfer/1.0.0   16         1024   (one stream per root fetched)
//	/shoal/swim/1.0.0   16         1024   (short probe exchanges)
//	/shoal/sync/1.0.0   4          256    (anti-entropy pulls)
//	/shoal/auth/1.0.0   2          256    (token exchange, once per connection)
//
// Everything else follows libp2p's defaults scaled to the machine's
// memory and file descriptors. Transfer streams may use up to 256 MiB of
// yamux receive windows per peer, enough for a full window on every
// stream at loopback and LAN speeds.
var protocolLimits = []struct {
	id            protocol.ID
	perPeer, all  int
	memoryPerPeer int64
}{
	{wire.ProtocolID, 16, 1024, 256 << 20},
	{membership.ProtocolID, 16, 1024, 4 << 20},
	{catalog.SyncProtocol, 4, 256, 32 << 20},
	{AuthProtocol, 2, 256, 2 << 20},
}

// resourceManager is the libp2p resource manager with shoal's limits.
func resourceManager() (network.ResourceManager, error) {
	limits := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&limits)
	for _, l := range protocolLimits {
		limits.AddProtocolLimit(l.id,
			rcmgr.BaseLimit{Streams: l.all, StreamsInbound: l.all, StreamsOutbound: l.all, Memory: 4 * l.memoryPerPeer},
			rcmgr.BaseLimitIncrease{})
		limits.AddProtocolPeerLimit(l.id,
			rcmgr.BaseLimit{Streams: 2 * l.perPeer, StreamsInbound: l.perPeer, StreamsOutbound: l.perPeer, Memory: l.memoryPerPeer},
			rcmgr.BaseLimitIncrease{})
	}
	return rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(limits.AutoScale()))
}

// bothGaters admits what both gaters admit; second may be nil.
type bothGaters struct {
	first  connmgr.ConnectionGater
	second connmgr.ConnectionGater
}

func (g bothGaters) InterceptPeerDial(p peer.ID) bool {
	return g.first.InterceptPeerDial(p) && (g.second == nil || g.second.InterceptPeerDial(p))
}

func (g bothGaters) InterceptAddrDial(p peer.ID, a ma.Multiaddr) bool {
	return g.first.InterceptAddrDial(p, a) && (g.second == nil || g.second.InterceptAddrDial(p, a))
}

func (g bothGaters) InterceptAccept(c network.ConnMultiaddrs) bool {
	return g.first.InterceptAccept(c) && (g.second == nil || g.second.InterceptAccept(c))
}

func (g bothGaters) InterceptSecured(d network.Direction, p peer.ID, c network.ConnMultiaddrs) bool {
	return g.first.InterceptSecured(d, p, c) && (g.second == nil || g.second.InterceptSecured(d, p, c))
}

func (g bothGaters) InterceptUpgraded(c network.Conn) (bool, control.DisconnectReason) {
	if ok, r := g.first.InterceptUpgraded(c); !ok {
		return ok, r
	}
	if g.second == nil {
		return true, 0
	}
	return g.second.InterceptUpgraded(c)
}
