package transfer

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/shoalnet/shoal/transfer/wire"
)

// A provider that says it holds everything and takes requests but never
// sends a chunk: the chunks asked of it are taken over by the provider
// that delivers (queued ones moved at once, the one it may be sending
// once it is late), and the fetch completes with every byte from the
// good provider, none twice.
func TestStalledProviderWorkTaken(t *testing.T) {
	const size = 16 << 20
	// The good provider sends 16 MiB/s, so that the stalled one, opened
	// at the same time, is surely given work.
	good, hg := newHostServiceWith(t, func(c *Config) { c.UploadRate = 16 << 20 })
	srcPath, rec, m := shareFile(t, good, size)
	data, err := os.ReadFile(srcPath)
	if err != nil {
		t.Fatal(err)
	}
	blocks := manifestBlockData(t, good, rec.Root)

	hs, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hs.Close() })
	var asked atomic.Int64
	hs.SetStreamHandler(wire.ProtocolID, func(st network.Stream) {
		defer st.Reset()
		r := wire.NewReader(st, 16<<10)
		w := wire.NewWriter(st, 16<<10)
		if m, err := r.Next(); err != nil || m.Type != wire.TOpen {
			return
		}
		if w.Write(&wire.Msg{Type: wire.THaveAll}, nil) != nil || w.Flush() != nil {
			return
		}
		for {
			m, err := r.Next()
			if err != nil {
				return
			}
			switch m.Type {
			case wire.TGetBlock: // the manifest, yes
				if w.Write(&wire.Msg{Type: wire.TBlock, ID: m.ID}, blocks[m.CID]) != nil || w.Flush() != nil {
					return
				}
			case wire.TRequest: // chunks, never
				asked.Add(1)
			}
		}
	})

	f, hf := newHostServiceWith(t, func(c *Config) { c.RequestTimeout = time.Second })
	for _, h := range []peer.AddrInfo{{ID: hs.ID(), Addrs: hs.Addrs()}, {ID: hg.ID(), Addrs: hg.Addrs()}} {
		if err := hf.Connect(context.Background(), h); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dst := filepath.Join(t.TempDir(), "f.bin")
	res, err := f.Fetch(ctx, rec.Root, dst, FetchOptions{Peers: []peer.ID{hs.ID(), hg.ID()}})
	if err != nil {
		t.Fatal(err)
	}
	if asked.Load() == 0 {
		t.Fatal("the stalled provider was asked for nothing: the test proves nothing")
	}
	p := res.Progress
	n := m.NumChunks()
	for _, pp := range p.Peers {
		switch pp.Peer {
		case hs.ID():
			if pp.Chunks != 0 {
				t.Errorf("%d chunks from the stalled provider", pp.Chunks)
			}
		case hg.ID():
			if pp.Chunks != n {
				t.Errorf("%d chunks from the good provider, want all %d", pp.Chunks, n)
			}
		}
	}
	if p.Duplicates != 0 || p.Received != size {
		t.Errorf("received %d bytes (%d duplicate chunks) for %d", p.Received, p.Duplicates, size)
	}
	got, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("the copy differs from the source")
	}
	t.Logf("the stalled provider was asked for %d chunks", asked.Load())
}
