package node

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/shoalnet/shoal/transfer"
)

// Two fetchers that know only the seed find each other through peer
// exchange and trade the chunks each already holds: each receives chunks
// from the other, the seed uploads less than two copies, and no chunk is
// downloaded twice outside the endgame.
func TestFetchersTradeChunks(t *testing.T) {
	const size = 24 << 20
	seed := newTestNode(t, func(c *Config) { c.Transfer.UploadRate = 8 << 20 })
	a, b := newTestNode(t), newTestNode(t)
	connect(t, a, seed)
	connect(t, b, seed)
	src := randomFile(t, t.TempDir(), "swarm.bin", size)
	root, err := seed.Share(context.Background(), src, ShareOptions{})
	if err != nil {
		t.Fatal(err)
	}
	type out struct {
		res *transfer.Result
		err error
		dst string
	}
	results := make(chan out, 2)
	for _, n := range []*Node{a, b} {
		go func() {
			dst := filepath.Join(t.TempDir(), "swarm.bin")
			res, err := n.Fetch(context.Background(), root, dst, FetchOptions{
				Peers: []peer.AddrInfo{seed.AddrInfo()}, NoDHT: true,
			})
			results <- out{res, err, dst}
		}()
	}
	var fromSeed int64
	for range 2 {
		r := <-results
		if r.err != nil {
			t.Fatal(r.err)
		}
		sameFile(t, src, r.dst)
		var fromPeer int64
		for _, pp := range r.res.Progress.Peers {
			switch pp.Peer {
			case seed.ID():
				fromSeed += pp.Bytes
			case a.ID(), b.ID():
				fromPeer += pp.Bytes
			}
		}
		if fromPeer == 0 {
			t.Errorf("a fetcher received nothing from the other: %+v", r.res.Progress.Peers)
		}
		if d := r.res.Progress.Duplicates; d > size>>20/4 {
			t.Errorf("%d duplicate chunks (the endgame may ask two peers for a chunk; no more than a quarter)", d)
		}
		t.Logf("from the other fetcher: %d MiB; duplicates %d", fromPeer>>20, r.res.Progress.Duplicates)
	}
	if fromSeed >= 2*size {
		t.Errorf("the seed uploaded %d MiB for two copies of %d MiB", fromSeed>>20, size>>20)
	}
	t.Logf("seed uploaded %d MiB for two copies of %d MiB", fromSeed>>20, size>>20)
}

// A provider whose connection breaks mid-fetch (as a reset under load
// does) is dialled again, and the fetch completes from it.
func TestProviderRedialedAfterReset(t *testing.T) {
	seed := newTestNode(t, func(c *Config) { c.Transfer.UploadRate = 8 << 20 })
	fetcher := newTestNode(t)
	connect(t, fetcher, seed)
	src := randomFile(t, t.TempDir(), "f.bin", 16<<20)
	root, err := seed.Share(context.Background(), src, ShareOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cut := make(chan struct{})
	var once sync.Once
	dst := filepath.Join(t.TempDir(), "f.bin")
	res, err := fetcher.Fetch(context.Background(), root, dst, FetchOptions{
		Peers: []peer.AddrInfo{seed.AddrInfo()}, NoDHT: true,
		Progress: func(p transfer.Progress) {
			if p.Bytes >= 4<<20 {
				once.Do(func() {
					seed.Host().Network().ClosePeer(fetcher.ID())
					close(cut)
				})
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-cut:
	default:
		t.Fatal("the connection was never cut")
	}
	sameFile(t, src, dst)
	if len(res.Progress.Peers) != 1 || res.Progress.Peers[0].Bytes != 16<<20 {
		t.Fatalf("per-peer figures: %+v", res.Progress.Peers)
	}
}
