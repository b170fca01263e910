package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	kaddht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/shoalnet/shoal/node"
)

// configName is the daemon's configuration file in the home directory.
const configName = "config.toml"

// fileConfig is config.toml. Every daemon setting lives here; flags given
// to `shoal daemon` override it.
type fileConfig struct {
	Network     string   `toml:"network"`
	Listen      []string `toml:"listen"`
	Bootstrap   []string `toml:"bootstrap"`
	DHTPrefix   string   `toml:"dht_prefix"`
	MDNS        bool     `toml:"mdns"`
	LogLevel    string   `toml:"log_level"`
	UploadRate  int64    `toml:"upload_rate"`
	FindTimeout string   `toml:"find_timeout"`
	Admins      []string `toml:"admins"`
	APIListen   string   `toml:"api_listen"`
	MaxUploads  int      `toml:"max_uploads"`
	MaxFetches  int      `toml:"max_fetches"`
	// Membership and the catalog's anti-entropy.
	ProbeInterval string `toml:"probe_interval"`
	CatalogSync   string `toml:"catalog_sync"`
	// Replication.
	Storer       bool   `toml:"storer"`
	StoreQuota   string `toml:"store_quota"`
	ReplicaGrace string `toml:"replica_grace"`
	Repairs      int    `toml:"repairs"`
	// NAT traversal.
	Relays           []string `toml:"relays"`
	RelayService     bool     `toml:"relay_service"`
	RelayMaxData     string   `toml:"relay_max_data"`
	RelayMaxDuration string   `toml:"relay_max_duration"`
	NATPortMap       bool     `toml:"nat_portmap"`
	Reachability     string   `toml:"reachability"`
}

func defaultFileConfig(network string) fileConfig {
	return fileConfig{
		Network:       network,
		Listen:        node.DefaultConfig().ListenAddrs,
		Bootstrap:     []string{},
		Admins:        []string{},
		LogLevel:      "info",
		FindTimeout:   "30s",
		MaxUploads:    node.DefaultConfig().Transfer.MaxUploads,
		MaxFetches:    node.DefaultConfig().Transfer.MaxFetches,
		ProbeInterval: "1s",
		CatalogSync:   "30s",
		StoreQuota:    "0",
		ReplicaGrace:  "10m",
		Repairs:       2,
		Relays:        []string{},
		RelayMaxData:  "0",
	}
}

const configHeader = `# shoal daemon configuration. Flags given to "shoal daemon" override these.
#
# network       name of the network: gossip topics and the default DHT prefix
# listen        multiaddrs to listen on (TCP and QUIC, port 4110, by default)
# bootstrap     multiaddrs (with /p2p/<peer id>) of peers to join through; "ipfs"
#               stands for the public IPFS bootstrap peers (with dht_prefix /ipfs)
# dht_prefix    DHT protocol prefix; empty means /shoal/<network>, /ipfs joins the IPFS DHT
# mdns          find peers on the LAN by multicast DNS (sends multicast on every interface)
# log_level     debug, info, warn or error
# upload_rate   bytes per second sent to all peers together; 0 is unlimited
# find_timeout  how long a fetch searches the DHT for providers
# admins        peer IDs of the network's admins; any makes the network closed:
#               only peers holding a token signed by an admin may connect
#               (shoal token issue / shoal token add)
# api_listen    host:port of an extra HTTP API listener (dashboards, metrics);
#               it requires the bearer token in <home>/api.token
# max_uploads   transfer streams served at once, all peers together; past it
#               peers are told "busy" and come back later
# max_fetches   fetches run at once; more wait for a slot
# probe_interval  failure detection period: a crashed member is declared dead
#               within about 10 periods (a few more in large networks)
# catalog_sync  how often the catalog of a random peer is pulled, to repair
#               announcements gossip dropped
# storer        keep replicas for the network (share --replicas, shoal pin)
# store_quota   most the store may hold (replicas and content kept for
#               reading), such as 500GiB or 2TB; 0 is no quota but the disk;
#               a replica that does not fit is refused and others take it
# replica_grace how long a replica no longer placed here is kept before it is
#               released (only once the members placed for it hold it)
# repairs       replicas fetched at once, fewest live copies first
# relays        multiaddrs (with /p2p/<peer id>) of circuit relays to hold a slot
#               on when this node is behind a NAT; peers then reach it through
#               them, and hole punching turns such connections direct
# relay_service relay for other peers (the node is taken to be public unless
#               reachability says otherwise)
# relay_max_data, relay_max_duration
#               bound each connection relayed through this node ("0": none,
#               the default); through a bounded relay peers exchange control
#               messages but transfer only over direct connections
# nat_portmap   ask the router for a port mapping (UPnP, NAT-PMP; multicasts)
# reachability  "public" or "private" to say so; empty: found out (AutoNAT)

`

func writeConfig(home string, c fileConfig) error {
	var buf bytes.Buffer
	buf.WriteString(configHeader)
	if err := toml.NewEncoder(&buf).Encode(c); err != nil {
		return err
	}
	p := filepath.Join(home, configName)
	if err := os.WriteFile(p, buf.Bytes(), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return nil
}

// maxConfigSize caps config.toml.
const maxConfigSize = 1 << 20

// readConfig reads home's config.toml; a missing file gives the defaults.
func readConfig(home string) (fileConfig, bool, error) {
	p := filepath.Join(home, configName)
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return defaultFileConfig("default"), false, nil
	}
	if err != nil {
		return defaultFileConfig("default"), true, err
	}
	c, err := parseConfig(data)
	if err != nil {
		return c, true, fmt.Errorf("%s: %w", p, err)
	}
	return c, true, nil
}

// parseConfig parses the text of config.toml; unknown settings are errors.
func parseConfig(data []byte) (fileConfig, error) {
	c := defaultFileConfig("default")
	if len(data) > maxConfigSize {
		return c, fmt.Errorf("%d bytes exceeds %d", len(data), maxConfigSize)
	}
	md, err := toml.Decode(string(data), &c)
	if err != nil {
		return c, err
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return c, fmt.Errorf("unknown setting(s): %s", strings.Join(keys, ", "))
	}
	return c, nil
}

// nodeConfig turns the file's settings into a node configuration.
func (c fileConfig) nodeConfig(home string) (node.Config, error) {
	cfg := node.DefaultConfig()
	cfg.Home = home
	if c.Network != "" {
		cfg.Network = c.Network
	}
	if len(c.Listen) > 0 {
		cfg.ListenAddrs = c.Listen
	}
	cfg.DHTPrefix = c.DHTPrefix
	cfg.MDNS = c.MDNS
	if c.UploadRate < 0 {
		return cfg, fmt.Errorf("upload_rate %d is negative", c.UploadRate)
	}
	cfg.Transfer.UploadRate = c.UploadRate
	if c.MaxUploads < 0 || c.MaxFetches < 0 {
		return cfg, fmt.Errorf("max_uploads and max_fetches must not be negative")
	}
	if c.MaxUploads > 0 {
		cfg.Transfer.MaxUploads = c.MaxUploads
	}
	if c.MaxFetches > 0 {
		cfg.Transfer.MaxFetches = c.MaxFetches
	}
	if c.FindTimeout != "" {
		d, err := time.ParseDuration(c.FindTimeout)
		if err != nil || d <= 0 {
			return cfg, fmt.Errorf("find_timeout %q: want a duration such as 30s", c.FindTimeout)
		}
		cfg.FindTimeout = d
	}
	peers, err := parsePeers(c.Bootstrap, "bootstrap")
	if err != nil {
		return cfg, err
	}
	cfg.BootstrapPeers = peers
	for _, a := range c.Admins {
		id, err := peer.Decode(strings.TrimSpace(a))
		if err != nil {
			return cfg, fmt.Errorf("admins: %q is not a peer ID: %w", a, err)
		}
		if _, err := id.ExtractPublicKey(); err != nil {
			return cfg, fmt.Errorf("admins: %q does not embed its public key (want an Ed25519 peer ID, 12D3KooW...)", a)
		}
		cfg.Admins = append(cfg.Admins, id)
	}
	if c.ProbeInterval != "" {
		d, err := time.ParseDuration(c.ProbeInterval)
		if err != nil || d < 10*time.Millisecond || d > time.Minute {
			return cfg, fmt.Errorf("probe_interval %q: want a duration from 10ms to 1m, such as 1s", c.ProbeInterval)
		}
		cfg.Membership.ProbeInterval = d
		cfg.Membership.ProbeTimeout = min(cfg.Membership.ProbeTimeout, d/2)
	}
	if c.CatalogSync != "" {
		d, err := time.ParseDuration(c.CatalogSync)
		if err != nil || d < 100*time.Millisecond {
			return cfg, fmt.Errorf("catalog_sync %q: want a duration of 100ms or more, such as 30s", c.CatalogSync)
		}
		cfg.CatalogSyncInterval = d
	}
	if cfg.NAT.Relays, err = parsePeers(c.Relays, "relays"); err != nil {
		return cfg, err
	}
	cfg.NAT.RelayService = c.RelayService
	if c.RelayMaxData != "" {
		if cfg.NAT.RelayMaxData, err = parseSize(c.RelayMaxData); err != nil {
			return cfg, fmt.Errorf("relay_max_data: %w", err)
		}
	}
	if c.RelayMaxDuration != "" && c.RelayMaxDuration != "0" {
		d, err := time.ParseDuration(c.RelayMaxDuration)
		if err != nil || d < 0 {
			return cfg, fmt.Errorf("relay_max_duration %q: want a duration such as 2m, or 0 for none", c.RelayMaxDuration)
		}
		cfg.NAT.RelayMaxDuration = d
	}
	cfg.NAT.PortMap = c.NATPortMap
	switch c.Reachability {
	case "", node.ReachPublic, node.ReachPrivate:
		cfg.NAT.Reachability = c.Reachability
	default:
		return cfg, fmt.Errorf("reachability %q: want public, private, or empty to find out", c.Reachability)
	}
	cfg.Replication.Storer = c.Storer
	if c.StoreQuota != "" {
		q, err := parseSize(c.StoreQuota)
		if err != nil {
			return cfg, fmt.Errorf("store_quota: %w", err)
		}
		cfg.Replication.Quota = q
	}
	if c.ReplicaGrace != "" {
		d, err := time.ParseDuration(c.ReplicaGrace)
		if err != nil || d < 0 {
			return cfg, fmt.Errorf("replica_grace %q: want a duration such as 10m", c.ReplicaGrace)
		}
		cfg.Replication.Grace = d
	}
	if c.Repairs < 0 {
		return cfg, fmt.Errorf("repairs %d is negative", c.Repairs)
	}
	cfg.Replication.Repairs = c.Repairs
	if c.APIListen != "" {
		if _, _, err := net.SplitHostPort(c.APIListen); err != nil {
			return cfg, fmt.Errorf("api_listen %q: want host:port: %w", c.APIListen, err)
		}
	}
	return cfg, nil
}

func parsePeers(addrs []string, what string) ([]peer.AddrInfo, error) {
	var out []peer.AddrInfo
	for _, s := range addrs {
		if s == ipfsBootstrap && what == "bootstrap" {
			out = append(out, kaddht.GetDefaultBootstrapPeerAddrInfos()...)
			continue
		}
		ai, err := peer.AddrInfoFromString(s)
		if err != nil {
			return nil, fmt.Errorf("%s %q: %w (want a multiaddr ending in /p2p/<peer id>)", what, s, err)
		}
		out = append(out, *ai)
	}
	return out, nil
}

// ipfsBootstrap, as a bootstrap peer, stands for the public IPFS
// network's bootstrap peers (with dht_prefix /ipfs).
const ipfsBootstrap = "ipfs"

// parseSize parses a size in bytes: a whole number, optionally followed by
// a unit: B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB
// (powers of 1024), case-insensitive.
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("%q: want a size such as 500GiB, 2TB or 1048576", s)
	}
	units := map[string]int64{"": 1, "b": 1,
		"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
		"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}
	mult, ok := units[strings.ToLower(strings.TrimSpace(t[i:]))]
	if !ok {
		return 0, fmt.Errorf("%q: unknown unit (want B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)", s)
	}
	var n int64
	for _, c := range t[:i] {
		d := int64(c - '0')
		if n > (math.MaxInt64-d)/10 {
			return 0, fmt.Errorf("%q: too large", s)
		}
		n = n*10 + d
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("%q: too large", s)
	}
	return n * mult, nil
}
