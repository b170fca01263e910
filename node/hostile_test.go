package node

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"io"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/shoalnet/shoal/transfer"
	"github.com/shoalnet/shoal/transfer/wire"
)

// rawHost is a bare libp2p host that speaks the transfer protocol badly.
func rawHost(t *testing.T) host.Host {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// A peer that sends oversized frames, truncated frames, random bytes, or a
// flood of requests is cut off; a fetch by another peer running meanwhile
// completes, and memory stays bounded.
func TestHostilePeersCutOff(t *testing.T) {
	seed := newTestNode(t)
	fetcher := newTestNode(t)
	connect(t, fetcher, seed)
	src := randomFile(t, t.TempDir(), "big.bin", 48<<20)
	root, err := seed.Share(context.Background(), src, ShareOptions{})
	if err != nil {
		t.Fatal(err)
	}

	// Sample the heap while everything runs.
	var peak atomic.Uint64
	stop := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() {
		defer sampler.Done()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()

	// The honest fetch runs alongside the attacks.
	var progressed atomic.Int64
	fetchErr := make(chan error, 1)
	dst := filepath.Join(t.TempDir(), "big.bin")
	go func() {
		_, err := fetcher.Fetch(context.Background(), root, dst, FetchOptions{
			Peers: []peer.AddrInfo{seed.AddrInfo()}, NoDHT: true,
			Progress: func(p transfer.Progress) { progressed.Store(p.Bytes) },
		})
		fetchErr <- err
	}()

	open := func(w io.Writer) {
		ww := wire.NewWriter(w, 4096)
		ww.Write(&wire.Msg{Type: wire.TOpen, Root: root}, nil)
		ww.Flush()
	}
	attacks := []struct {
		name string
		send func(s network.Stream)
	}{
		{"oversized frame", func(s network.Stream) {
			var b [binary.MaxVarintLen64]byte
			s.Write(b[:binary.PutUvarint(b[:], 1<<30)])
			s.Write(make([]byte, 4096))
		}},
		{"truncated frame", func(s network.Stream) {
			open(s)
			var b [binary.MaxVarintLen64]byte
			s.Write(b[:binary.PutUvarint(b[:], 200)])
			s.Write([]byte{byte(wire.TRequest), 1, 2})
			s.CloseWrite()
		}},
		{"random bytes", func(s network.Stream) {
			junk := make([]byte, 64<<10)
			rand.Read(junk)
			junk[0] = 0x05 // a short frame length, then garbage
			s.Write(junk)
		}},
		{"request flood", func(s network.Stream) {
			open(s)
			w := wire.NewWriter(s, 64<<10)
			for i := 0; i < 100_000; i++ {
				if w.Write(&wire.Msg{Type: wire.TRequest, Index: uint64(i % 48)}, nil) != nil {
					return
				}
			}
			w.Flush()
		}},
	}
	for _, a := range attacks {
		h := rawHost(t)
		if err := h.Connect(context.Background(), seed.AddrInfo()); err != nil {
			t.Fatalf("%s: connect: %v", a.name, err)
		}
		s, err := h.NewStream(context.Background(), seed.ID(), wire.ProtocolID)
		if err != nil {
			t.Fatalf("%s: open stream: %v", a.name, err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			a.send(s)
		}()
		// The seed resets the stream: reading ends with an error, after
		// at most what the seed sent before it noticed.
		s.SetReadDeadline(time.Now().Add(20 * time.Second))
		_, rerr := io.Copy(io.Discard, bufio.NewReader(s))
		if rerr == nil {
			t.Fatalf("%s: stream ended cleanly, want a reset", a.name)
		}
		s.Reset()
		<-done
		waitFor(t, 10*time.Second, a.name+": seed disconnects the peer", func() bool {
			return seed.Host().Network().Connectedness(h.ID()) != network.Connected
		})
		// Refused at the handshake: the dial may complete on the peer's
		// side (TLS negotiates the muxer early), but no stream gets through.
		_ = h.Connect(context.Background(), seed.AddrInfo())
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if s, err := h.NewStream(ctx, seed.ID(), wire.ProtocolID); err == nil {
			s.SetReadDeadline(time.Now().Add(5 * time.Second))
			open(s)
			if _, err := s.Read(make([]byte, 1)); err == nil {
				t.Fatalf("%s: the seed serves the peer again", a.name)
			}
		}
		cancel()
	}

	if err := <-fetchErr; err != nil {
		t.Fatalf("honest fetch: %v", err)
	}
	close(stop)
	sampler.Wait()
	sameFile(t, src, dst)
	if progressed.Load() != 48<<20 {
		t.Fatalf("progress reported %d bytes", progressed.Load())
	}
	if p := peak.Load(); p > 512<<20 {
		t.Fatalf("heap peaked at %d MiB", p>>20)
	}
	t.Logf("heap peak %d MiB", peak.Load()>>20)

	// The seed still serves others.
	again := newTestNode(t)
	connect(t, again, seed)
	dst2 := filepath.Join(t.TempDir(), "again.bin")
	if _, err := again.Fetch(context.Background(), root, dst2, FetchOptions{Peers: []peer.AddrInfo{seed.AddrInfo()}, NoDHT: true}); err != nil {
		t.Fatal(err)
	}
}

// Fetches past Config.Transfer.MaxFetches wait for a slot, visibly.
func TestFetchSlots(t *testing.T) {
	seed := newTestNode(t, func(c *Config) { c.Transfer.UploadRate = 4 << 20 })
	fetcher := newTestNode(t, func(c *Config) { c.Transfer.MaxFetches = 1 })
	connect(t, fetcher, seed)
	dir := t.TempDir()
	var roots [2]cid.Cid
	var srcs [2]string
	for i := range roots {
		srcs[i] = randomFile(t, dir, "f"+string(rune('a'+i)), 6<<20)
		root, err := seed.Share(context.Background(), srcs[i], ShareOptions{})
		if err != nil {
			t.Fatal(err)
		}
		roots[i] = root
	}
	errs := make(chan error, 2)
	out := t.TempDir()
	for i := range roots {
		go func() {
			_, err := fetcher.Fetch(context.Background(), roots[i], filepath.Join(out, roots[i].String()), FetchOptions{Peers: []peer.AddrInfo{seed.AddrInfo()}, NoDHT: true})
			errs <- err
		}()
	}
	waitFor(t, 10*time.Second, "one fetch queued behind the other", func() bool {
		fs := fetcher.Fetches()
		queued, running := 0, 0
		for _, f := range fs {
			if f.Phase == "queued" {
				queued++
			} else {
				running++
			}
		}
		return queued == 1 && running == 1
	})
	for range roots {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for i := range roots {
		sameFile(t, srcs[i], filepath.Join(out, roots[i].String()))
	}
}
