package dht

import (
	"context"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newHost(t *testing.T) host.Host {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func newDHT(t *testing.T, h host.Host, cfg Config) *DHT {
	t.Helper()
	d, err := New(h, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Error(err)
		}
	})
	return d
}

func TestProvideAndFind(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	seed := newHost(t)
	newDHT(t, seed, Config{ProtocolPrefix: DefaultPrefix("test")})
	boot := []peer.AddrInfo{{ID: seed.ID(), Addrs: seed.Addrs()}}
	var members []*DHT
	for range 3 {
		d := newDHT(t, newHost(t), Config{ProtocolPrefix: DefaultPrefix("test"), BootstrapPeers: boot})
		if err := d.Bootstrap(ctx); err != nil {
			t.Fatal(err)
		}
		members = append(members, d)
	}
	h, _ := mh.Sum([]byte("a share root"), mh.SHA2_256, -1)
	root := cid.NewCidV1(cid.DagCBOR, h)
	if err := members[0].Provide(ctx, root); err != nil {
		t.Fatal(err)
	}
	if st := members[0].ProvideStats(); st != (ProvideStats{Provided: 1, Roots: 1}) {
		t.Errorf("provide stats %+v, want one root provided once and no backlog", st)
	}
	found := false
	for ai := range members[2].FindProviders(ctx, root, 1) {
		if ai.ID == members[0].h.ID() {
			found = true
		}
	}
	if !found {
		t.Fatal("provider not found through the DHT")
	}
}

// A provide with nobody to store it fails, and counts as failed; the root
// stays for the next round.
func TestProvideStatsFailure(t *testing.T) {
	d := newDHT(t, newHost(t), Config{ProtocolPrefix: DefaultPrefix("test")})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	h, _ := mh.Sum([]byte("alone"), mh.SHA2_256, -1)
	if err := d.Provide(ctx, cid.NewCidV1(cid.DagCBOR, h)); err == nil {
		t.Fatal("provide with an empty routing table succeeded")
	}
	if st := d.ProvideStats(); st != (ProvideStats{Failed: 1, Roots: 1}) {
		t.Errorf("provide stats %+v, want one failure, one root kept, no backlog", st)
	}
}

func TestBootstrapUnreachable(t *testing.T) {
	dead := newHost(t)
	ai := peer.AddrInfo{ID: dead.ID(), Addrs: dead.Addrs()}
	dead.Close()
	d := newDHT(t, newHost(t), Config{BootstrapPeers: []peer.AddrInfo{ai}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Bootstrap(ctx); err == nil {
		t.Fatal("bootstrap with no reachable peer succeeded")
	}
}

func TestPrefixes(t *testing.T) {
	// The IPFS prefix brings the IPFS DHT's record validators with it.
	newDHT(t, newHost(t), Config{ProtocolPrefix: IPFSPrefix})
	if _, err := New(newHost(t), Config{ProtocolPrefix: "shoal"}); err == nil {
		t.Fatal("a prefix without a leading slash was accepted")
	}
}
