package transfer

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

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

	var asked atomic.Int64
	stalled := fakeProvider(t, blocks, func(*wire.Writer, wire.Msg) error {
		asked.Add(1) // and never a chunk
		return nil
	})

	f, hf := newHostServiceWith(t, func(c *Config) { c.RequestTimeout = time.Second })
	for _, h := range []peer.AddrInfo{stalled, {ID: hg.ID(), Addrs: hg.Addrs()}} {
		if err := hf.Connect(context.Background(), h); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dst := filepath.Join(t.TempDir(), "f.bin")
	res, err := f.Fetch(ctx, rec.Root, dst, FetchOptions{Peers: []peer.ID{stalled.ID, hg.ID()}})
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
		case stalled.ID:
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
