package main

import (
	"testing"
	"time"
)

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("network = \"corp\"\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\nadmins = [\"12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo\"]\n"))
	f.Add([]byte("upload_rate = -1\nfind_timeout = \"x\"\n"))
	f.Add([]byte("api_listen = \"127.0.0.1:5011\"\nbootstrap = [\"/ip4/1.2.3.4/tcp/1\"]\n"))
	f.Add([]byte("[[x]]\ny = 1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := parseConfig(data)
		if err != nil {
			return
		}
		cfg, err := c.nodeConfig("/nonexistent/home")
		if err != nil {
			return
		}
		if len(cfg.Admins) != len(c.Admins) {
			t.Fatalf("%d admins parsed from %d", len(cfg.Admins), len(c.Admins))
		}
	})
}

func TestParseConfigErrors(t *testing.T) {
	for _, bad := range []string{
		"nosuch = 1\n",
		"admins = [\"not-a-peer\"]\n",
		"api_listen = \"nohostport\"\n",
		"find_timeout = \"-1s\"\n",
		"network = \n",
		"reachability = \"sometimes\"\n",
		"relays = [\"/ip4/1.2.3.4/tcp/1\"]\n", // no /p2p/ part
		"relay_max_data = \"lots\"\n",
		"relay_max_duration = \"-2m\"\n",
		"bootstrap = [\"ipfs2\"]\n",
	} {
		c, err := parseConfig([]byte(bad))
		if err == nil {
			_, err = c.nodeConfig(t.TempDir())
		}
		if err == nil {
			t.Errorf("%q: accepted", bad)
		}
	}
}

func TestParseNATConfig(t *testing.T) {
	const relay = "/ip4/11.0.0.1/tcp/4001/p2p/12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo"
	c, err := parseConfig([]byte(`relays = ["` + relay + `"]
relay_service = true
relay_max_data = "128KiB"
relay_max_duration = "2m"
nat_portmap = true
reachability = "private"
bootstrap = ["ipfs"]
`))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := c.nodeConfig(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	nat := cfg.NAT
	if len(nat.Relays) != 1 || nat.Relays[0].ID.String() != relay[len(relay)-52:] || len(nat.Relays[0].Addrs) != 1 {
		t.Errorf("relays %v", nat.Relays)
	}
	if !nat.RelayService || nat.RelayMaxData != 128<<10 || nat.RelayMaxDuration != 2*time.Minute || !nat.PortMap || nat.Reachability != "private" {
		t.Errorf("NAT config %+v", nat)
	}
	// "ipfs" stands for the public IPFS network's bootstrap peers.
	if len(cfg.BootstrapPeers) < 4 {
		t.Errorf("bootstrap \"ipfs\" gave %d peers", len(cfg.BootstrapPeers))
	}
}
