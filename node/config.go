package node

import (
	"log/slog"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/peer"
	"go.opentelemetry.io/otel/trace"

	"github.com/shoalnet/shoal/node/auth"
	"github.com/shoalnet/shoal/node/membership"
	"github.com/shoalnet/shoal/transfer"
)

// DefaultPort is the TCP and UDP (QUIC) port a node listens on by default.
const DefaultPort = 4110

// Config configures a Node. Start from DefaultConfig.
type Config struct {
	// Home is the node's directory (identity, state). Required.
	Home string
	// Network is the network's name: it names the gossipsub topics and
	// the default DHT prefix. Default "default".
	Network string
	// ListenAddrs are the multiaddrs to listen on. Default: TCP and QUIC
	// on all interfaces, port DefaultPort.
	ListenAddrs []string
	// BootstrapPeers are dialled at start and seed the DHT.
	BootstrapPeers []peer.AddrInfo
	// DHTPrefix is the DHT protocol prefix. Default "/shoal/<Network>";
	// "/ipfs" joins the IPFS DHT.
	DHTPrefix string
	// DHTClientMode makes the node query the DHT without serving it (for
	// short-lived nodes). Default false.
	DHTClientMode bool
	// FindTimeout bounds the DHT search for providers of a fetch. Default
	// 30s.
	FindTimeout time.Duration
	// ProvideTimeout bounds one DHT provide. Default 1m.
	ProvideTimeout time.Duration
	// MDNS announces the node on the LAN and connects to the peers of
	// the same network found there. It sends multicast on every interface.
	// Default false.
	MDNS bool
	// Name is this member's name in the membership view. Default: the
	// host name.
	Name string
	// Roles are this member's roles, as it announces them in an open
	// network (a closed network announces the role its token proves).
	Roles []string
	// Admins, if any, make the network closed: only peers holding a token
	// signed by one of these peers (or the admins themselves) may
	// connect, and a token's role decides what they may do.
	Admins []peer.ID
	// Token is this peer's token in a closed network. Default: read from
	// <Home>/token (see TokenFile).
	Token auth.Token
	// Version is announced in the member metadata.
	Version string
	// CatalogSyncInterval is the catalog's anti-entropy period: this often
	// the node pulls a random peer's catalog, which repairs announcements
	// gossip dropped. Default 30s.
	CatalogSyncInterval time.Duration
	// Membership tunes failure detection (its Network and Meta are set by
	// the node).
	Membership membership.Config
	// Transfer tunes the transfer service.
	Transfer transfer.Config
	// Replication makes the node a storer of replicas and tunes repairs.
	Replication ReplicationConfig
	// NAT configures reaching peers behind NATs: relays, the relay
	// service, port mapping (nat.go). Hole punching and AutoNAT are on.
	NAT NATConfig
	// ConnectionGater, if set, is consulted after the node's own gater
	// (which refuses peers that failed a closed network's token exchange):
	// a connection must pass both. Use it to keep addresses or peers out.
	ConnectionGater connmgr.ConnectionGater
	// Libp2pOptions are appended to the host's options (they win; a
	// ConnectionGater among them replaces the node's: use ConnectionGater).
	Libp2pOptions []libp2p.Option
	// Logger receives the node's logs. Default: discard.
	Logger *slog.Logger
	// TracerProvider makes the spans of fetches and of the chunk requests
	// this node serves (OpenTelemetry). A fetch is one trace across the
	// peers that serve it: "shoal.fetch", the provider search, and each
	// chunk request with the serving peer's answer under it. Default:
	// OpenTelemetry's global provider, which records nothing unless the
	// program sets one. Transfer.TracerProvider, if set, wins for the
	// transfer service.
	TracerProvider trace.TracerProvider
}

// DefaultConfig returns the defaults; set Home before New.
func DefaultConfig() Config {
	return Config{
		Network: "default",
		ListenAddrs: []string{
			"/ip4/0.0.0.0/tcp/4110",
			"/ip4/0.0.0.0/udp/4110/quic-v1",
			"/ip6/::/tcp/4110",
			"/ip6/::/udp/4110/quic-v1",
		},
		FindTimeout:    30 * time.Second,
		ProvideTimeout: time.Minute,
		Name:           hostname(),
		Membership:     membership.DefaultConfig(),
		Transfer:       transfer.DefaultConfig(),
		Logger:         slog.New(slog.DiscardHandler),
	}
}
