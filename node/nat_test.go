package node

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

func TestNATConfigChecked(t *testing.T) {
	for _, c := range []struct {
		nat  NATConfig
		want string
	}{
		{NATConfig{Reachability: "maybe"}, `reachability "maybe"`},
		{NATConfig{RelayMaxData: -1}, "must not be negative"},
		{NATConfig{Relays: []peer.AddrInfo{{ID: "x"}}}, "has no address"},
	} {
		cfg := testConfig(t, t.TempDir())
		cfg.NAT = c.nat
		n, err := New(context.Background(), cfg)
		if err == nil {
			n.Close()
			t.Errorf("%+v: started", c.nat)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.nat, err, c.want)
		}
	}
}

// A node on loopback knows it is not reachable from the internet once it
// says so, and reports its connections as direct.
func TestNATStatus(t *testing.T) {
	a := newTestNode(t, func(c *Config) { c.NAT.Reachability = ReachPrivate })
	b := newTestNode(t, func(c *Config) { c.NAT.RelayService = true; c.NAT.Reachability = ReachPublic })
	connect(t, a, b)
	waitFor(t, 10*time.Second, "a's reachability private", func() bool { return a.NAT().Reachability == ReachPrivate })
	st := a.NAT()
	if st.Direct < 1 || st.Relayed != 0 || len(st.PublicAddrs) != 0 {
		t.Errorf("a: %+v", st)
	}
	if st := b.NAT(); !st.RelayService {
		t.Errorf("b: %+v", st)
	}
	relayed, _ := ma.NewMultiaddr("/ip4/1.2.3.4/tcp/1/p2p/" + b.ID().String() + "/p2p-circuit")
	if !isRelayed(relayed) || isRelayed(b.Addrs()[0]) {
		t.Error("isRelayed")
	}
}
