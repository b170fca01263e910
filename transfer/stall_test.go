package transfer

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/shoalnet/shoal/transfer/manifest"
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

// pacedWriter writes at most 16 KiB at a time, one every gap: a slow link.
type pacedWriter struct {
	w   io.Writer
	gap time.Duration
}

func (p pacedWriter) Write(b []byte) (int, error) {
	n := 0
	for n < len(b) {
		k := min(len(b)-n, 16<<10)
		time.Sleep(p.gap) // the link's pace, not synchronisation
		m, err := p.w.Write(b[n : n+k])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// A chunk that takes longer to arrive than RequestTimeout, on a slow but
// steady link, is progress, not a stall: the only provider is not
// dropped and nothing is asked twice.
func TestSlowChunkNotStalled(t *testing.T) {
	const cs = manifest.MinChunkSize
	seed := newPipeService(t)
	data := randomBytes(2*cs, 3)
	path := filepath.Join(t.TempDir(), "f.bin")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rec, err := seed.Share(ctx, path, ShareOptions{Build: manifest.BuildOptions{ChunkSize: cs}})
	if err != nil {
		t.Fatal(err)
	}
	var asked atomic.Int64
	// 256 KiB in 16 KiB pieces 30 ms apart: about half a second.
	slow := func(w io.Writer) io.Writer { return pacedWriter{w, 30 * time.Millisecond} }
	ai := fakeProviderOn(t, manifestBlockData(t, seed, rec.Root), nil, slow, func(w *wire.Writer, m wire.Msg) error {
		asked.Add(1)
		i := int64(m.Index)
		return w.Write(&wire.Msg{Type: wire.TChunk, Index: m.Index}, data[i*cs:(i+1)*cs])
	})
	f, hf := newHostServiceWith(t, func(c *Config) { c.RequestTimeout = 300 * time.Millisecond })
	if err := hf.Connect(ctx, ai); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "f.bin")
	res, err := f.Fetch(ctx, rec.Root, dst, FetchOptions{Peers: []peer.ID{ai.ID}})
	if err != nil {
		t.Fatalf("the slow provider was taken for stalled: %v", err)
	}
	if got, _ := os.ReadFile(dst); !bytes.Equal(got, data) {
		t.Fatal("the copy differs")
	}
	if n := asked.Load(); n != 2 || res.Progress.Duplicates != 0 {
		t.Errorf("%d requests for 2 chunks, %d duplicates", n, res.Progress.Duplicates)
	}
}

// A fetch's reported rate follows what arrives now, not the average since
// it started: a fetch that stops receiving shows its rate falling.
func TestProgressRateIsRecent(t *testing.T) {
	f := &fetch{started: time.Now()}
	t0 := time.Now()
	f.sampleRate(t0)
	f.received = 10 << 20
	f.sampleRate(t0.Add(time.Second))
	if got := f.progress().Rate; got != 10<<20 {
		t.Fatalf("rate after 10 MiB in a second: %.0f", got)
	}
	for k := 2; k <= 6; k++ { // nothing more arrives for a second
		f.sampleRate(t0.Add(time.Second + time.Duration(k)*200*time.Millisecond))
	}
	if got := f.progress().Rate; got > 0.35*(10<<20) {
		t.Fatalf("rate a second after the bytes stopped: %.0f, want it well down from %d", got, 10<<20)
	}
}
