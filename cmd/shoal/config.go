package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
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
}

func defaultFileConfig(network string) fileConfig {
	return fileConfig{
		Network:     network,
		Listen:      node.DefaultConfig().ListenAddrs,
		Bootstrap:   []string{},
		LogLevel:    "info",
		FindTimeout: "30s",
	}
}

const configHeader = `# shoal daemon configuration. Flags given to "shoal daemon" override these.
#
# network       name of the network: gossip topics and the default DHT prefix
# listen        multiaddrs to listen on (TCP and QUIC, port 4110, by default)
# bootstrap     multiaddrs (with /p2p/<peer id>) of peers to join through
# dht_prefix    DHT protocol prefix; empty means /shoal/<network>, /ipfs joins the IPFS DHT
# mdns          find peers on the LAN by multicast DNS (sends multicast on every interface)
# log_level     debug, info, warn or error
# upload_rate   bytes per second sent to all peers together; 0 is unlimited
# find_timeout  how long a fetch searches the DHT for providers

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

// readConfig reads home's config.toml; a missing file gives the defaults.
func readConfig(home string) (fileConfig, bool, error) {
	c := defaultFileConfig("default")
	p := filepath.Join(home, configName)
	md, err := toml.DecodeFile(p, &c)
	if errors.Is(err, fs.ErrNotExist) {
		return c, false, nil
	}
	if err != nil {
		return c, true, fmt.Errorf("%s: %w", p, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return c, true, fmt.Errorf("%s: unknown setting(s): %s", p, strings.Join(keys, ", "))
	}
	return c, true, nil
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
	return cfg, nil
}

func parsePeers(addrs []string, what string) ([]peer.AddrInfo, error) {
	var out []peer.AddrInfo
	for _, s := range addrs {
		ai, err := peer.AddrInfoFromString(s)
		if err != nil {
			return nil, fmt.Errorf("%s %q: %w (want a multiaddr ending in /p2p/<peer id>)", what, s, err)
		}
		out = append(out, *ai)
	}
	return out, nil
}
