package transfer

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	ma "github.com/multiformats/go-multiaddr"
	bolt "go.etcd.io/bbolt"

	"github.com/shoalnet/shoal/transfer/manifest"
)

// serviceOn is a Service on h.
func serviceOn(t testing.TB, h host.Host, set func(*Config)) *Service {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "state.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	set(&cfg)
	s, err := New(h, db, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Close()
		db.Close()
	})
	return s
}

func newHost(t testing.TB, opts ...libp2p.Option) host.Host {
	t.Helper()
	h, err := libp2p.New(append([]libp2p.Option{libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0")}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// A fetch from a provider reached through a relay moves to a direct
// connection as soon as one opens, and completes there.
func TestSessionMovesToDirectConnection(t *testing.T) {
	relay := newHost(t, libp2p.EnableRelayService(relayv2.WithInfiniteLimits()), libp2p.ForceReachabilityPublic())
	seedHost := newHost(t, libp2p.EnableRelay(), libp2p.ForceReachabilityPrivate())
	fetchHost := newHost(t, libp2p.EnableRelay())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	relayInfo := peer.AddrInfo{ID: relay.ID(), Addrs: relay.Addrs()}
	if err := seedHost.Connect(ctx, relayInfo); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Reserve(ctx, seedHost, relayInfo); err != nil {
		t.Fatal(err)
	}
	// The fetcher knows the seed only through the relay.
	circuit, err := ma.NewMultiaddr(relay.Addrs()[0].String() + "/p2p/" + relay.ID().String() + "/p2p-circuit")
	if err != nil {
		t.Fatal(err)
	}
	if err := fetchHost.Connect(ctx, peer.AddrInfo{ID: seedHost.ID(), Addrs: []ma.Multiaddr{circuit}}); err != nil {
		t.Fatal(err)
	}
	// 8 chunks at 2 MiB/s: the fetch lasts about four seconds.
	seed := serviceOn(t, seedHost, func(c *Config) { c.UploadRate = 2 << 20 })
	fetcher := serviceOn(t, fetchHost, func(*Config) {})
	data := randomBytes(8*manifest.MinChunkSize*4, 11)
	path := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	rec, err := seed.Share(ctx, path, ShareOptions{Build: manifest.BuildOptions{ChunkSize: manifest.MinChunkSize * 4}})
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "copy")
	p, err := fetcher.Start(ctx, rec.Root, dst, FetchOptions{Peers: []peer.ID{seedHost.ID()}})
	if err != nil {
		t.Fatal(err)
	}
	// The session's stream, once the session runs.
	streamAddr := func() (ma.Multiaddr, bool) {
		fetcher.mu.Lock()
		defer fetcher.mu.Unlock()
		for _, f := range fetcher.active {
			f.mu.Lock()
			s := f.sessions[seedHost.ID()]
			var a ma.Multiaddr
			if s != nil && s.st != nil {
				a = s.st.Conn().RemoteMultiaddr()
			}
			f.mu.Unlock()
			return a, a != nil
		}
		return nil, false
	}
	waitUntil(t, "the session running through the relay", func() bool {
		a, ok := streamAddr()
		return ok && isRelayed(a)
	})
	if err := fetchHost.Connect(network.WithForceDirectDial(ctx, "test"), peer.AddrInfo{ID: seedHost.ID(), Addrs: seedHost.Addrs()}); err != nil {
		t.Fatal(err)
	}
	// Watch the session's stream until the fetch ends.
	sawDirect := false
	for done := false; !done; {
		select {
		case <-p.Done():
			done = true
		case <-time.After(5 * time.Millisecond):
			if a, ok := streamAddr(); ok && !isRelayed(a) {
				sawDirect = true
			}
		}
	}
	if !sawDirect {
		t.Error("the session never moved to the direct connection")
	}
	res, err := p.Wait()
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(res.Path)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("copy differs (%v)", err)
	}
	for _, pp := range res.Progress.Peers {
		if pp.Error != "" {
			t.Errorf("the move shows as an error: %q", pp.Error)
		}
	}
}

// waitUntil polls cond, which watches another goroutine's progress.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// BenchmarkFetchPath fetches 64 MiB over loopback from a provider reached
// directly and from one reached only through a relay (circuit v2, no
// bounds) on the same machine: the relay's cost is the ratio of the two.
//
//	go test -run '^$' -bench FetchPath -count 5 ./transfer
func BenchmarkFetchPath(b *testing.B) {
	for _, relayed := range []bool{false, true} {
		name := "direct"
		if relayed {
			name = "relayed"
		}
		b.Run(name, func(b *testing.B) {
			res := relayv2.DefaultResources()
			res.Limit = nil
			res.BufferSize = 64 << 10 // as node.RelayBufferSize
			relay := newHost(b, libp2p.EnableRelayService(relayv2.WithResources(res)), libp2p.ForceReachabilityPublic())
			seedHost := newHost(b, libp2p.EnableRelay(), libp2p.ForceReachabilityPrivate())
			fetchHost := newHost(b, libp2p.EnableRelay())
			ctx := context.Background()
			addr := peer.AddrInfo{ID: seedHost.ID(), Addrs: seedHost.Addrs()}
			if relayed {
				relayInfo := peer.AddrInfo{ID: relay.ID(), Addrs: relay.Addrs()}
				if err := seedHost.Connect(ctx, relayInfo); err != nil {
					b.Fatal(err)
				}
				if _, err := client.Reserve(ctx, seedHost, relayInfo); err != nil {
					b.Fatal(err)
				}
				circuit, err := ma.NewMultiaddr(relay.Addrs()[0].String() + "/p2p/" + relay.ID().String() + "/p2p-circuit")
				if err != nil {
					b.Fatal(err)
				}
				addr.Addrs = []ma.Multiaddr{circuit}
			}
			if err := fetchHost.Connect(ctx, addr); err != nil {
				b.Fatal(err)
			}
			seed := serviceOn(b, seedHost, func(*Config) {})
			fetcher := serviceOn(b, fetchHost, func(*Config) {})
			benchFetches(b, seed, fetcher, seedHost.ID())
			for _, c := range fetchHost.Network().ConnsToPeer(seedHost.ID()) {
				if isRelayed(c.RemoteMultiaddr()) != relayed {
					b.Fatalf("connection %s, want relayed %v", c.RemoteMultiaddr(), relayed)
				}
			}
		})
	}
}
