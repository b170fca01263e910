package transfer

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	bolt "go.etcd.io/bbolt"

	"github.com/shoalnet/shoal/transfer/manifest"
	"github.com/shoalnet/shoal/transfer/wire"
)

// newHostService returns a Service on a new loopback host.
func newHostService(t *testing.T) (*Service, host.Host) {
	t.Helper()
	return newHostServiceWith(t, func(*Config) {})
}

// newHostServiceWith is newHostService with the default configuration
// changed by set.
func newHostServiceWith(t testing.TB, set func(*Config)) (*Service, host.Host) {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(filepath.Join(t.TempDir(), "state.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	set(&cfg)
	if os.Getenv("SHOAL_TEST_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("host", h.ID().ShortString())
	}
	s, err := New(h, db, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Close()
		h.Close()
		db.Close()
	})
	return s, h
}

// resumeWith leaves in s the state of a fetch of m to dst interrupted
// after it verified the chunks in held, as a crash would: the manifest's
// blocks, the partial copy with those chunks, and the record of them.
func resumeWith(t *testing.T, s *Service, root cid.Cid, m *manifest.Manifest, blocks map[cid.Cid][]byte, data []byte, dst string, held Bitfield) {
	t.Helper()
	if err := putBlocks(s.db, blocks); err != nil {
		t.Fatal(err)
	}
	partial := make([]byte, len(data))
	for i := int64(0); i < m.NumChunks(); i++ {
		if held.Has(i) {
			off := i * m.ChunkSize
			copy(partial[off:off+m.ChunkLen(i)], data[off:])
		}
	}
	temp := tempPath(dst)
	if err := os.WriteFile(temp, partial, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := savePartial(s.db, &partialRecord{Root: root, Dst: dst, Temp: temp, Started: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := saveBits(s.db, root, dst, held); err != nil {
		t.Fatal(err)
	}
}

// Partial seeding: two fetchers that each hold half of a root, and no
// peer that holds all of it, complete it from each other: each receives
// exactly the half it lacks, every chunk once. The one that completes
// first goes on serving the other while it renames its copy into place.
func TestFetchersEachHoldingHalf(t *testing.T) {
	const size = 8<<20 + 12345 // 9 chunks of 1 MiB, the last one short
	// Index the content once, in a service of its own, for the manifest.
	ix := newPipeService(t)
	srcPath, rec, m := shareFile(t, ix, size)
	data, err := os.ReadFile(srcPath)
	if err != nil {
		t.Fatal(err)
	}
	blocks := manifestBlockData(t, ix, rec.Root)

	n := m.NumChunks()
	a, ha := newHostService(t)
	b, hb := newHostService(t)
	if err := ha.Connect(context.Background(), peer.AddrInfo{ID: hb.ID(), Addrs: hb.Addrs()}); err != nil {
		t.Fatal(err)
	}
	first, second := NewBitfield(n), NewBitfield(n)
	for i := int64(0); i < n; i++ {
		if i < n/2 {
			first.Set(i)
		} else {
			second.Set(i)
		}
	}
	dstA := filepath.Join(t.TempDir(), "f.bin")
	dstB := filepath.Join(t.TempDir(), "f.bin")
	resumeWith(t, a, rec.Root, m, blocks, data, dstA, first)
	resumeWith(t, b, rec.Root, m, blocks, data, dstB, second)

	type out struct {
		res *Result
		err error
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	results := make(chan out, 2)
	var last [2]atomic.Pointer[Progress]
	// b starts first, with no provider but an open channel of them: it
	// waits. a, started once b serves its half, fetches from b, and b
	// takes a as a provider when a opens its stream. (Started at once,
	// either could ask the other before the other serves anything, and
	// be told "not found".)
	noMore := make(chan peer.ID)
	defer close(noMore)
	bServes := make(chan struct{})
	var once sync.Once
	go func() {
		res, err := b.Fetch(ctx, rec.Root, dstB, FetchOptions{Providers: noMore,
			Progress: func(p Progress) {
				last[1].Store(&p)
				if p.Phase == "fetching" {
					once.Do(func() { close(bServes) })
				}
			}})
		results <- out{res, err}
	}()
	select {
	case <-bServes:
	case r := <-results:
		t.Fatalf("the fetch with no provider ended: %v", r.err)
	}
	go func() {
		res, err := a.Fetch(ctx, rec.Root, dstA, FetchOptions{Peers: []peer.ID{hb.ID()},
			Progress: func(p Progress) { last[0].Store(&p) }})
		results <- out{res, err}
	}()
	for range 2 {
		r := <-results
		if r.err != nil {
			for k := range last {
				if p := last[k].Load(); p != nil {
					t.Logf("fetch %d: %+v", k, *p)
				}
			}
			t.Fatal(r.err)
		}
		p := r.res.Progress
		held := first
		if r.res.Path == dstB {
			held = second
		}
		lacked := n - held.Count()
		if p.Resumed != held.Count() {
			t.Errorf("%s: resumed %d chunks, held %d", r.res.Path, p.Resumed, held.Count())
		}
		if p.Duplicates != 0 {
			t.Errorf("%s: %d duplicate chunks", r.res.Path, p.Duplicates)
		}
		if len(p.Peers) != 1 || p.Peers[0].Chunks != lacked {
			t.Errorf("%s: want the %d chunks it lacked from the other fetcher, got %+v", r.res.Path, lacked, p.Peers)
		}
		if p.Received != size-sizeOf(m, held) {
			t.Errorf("%s: received %d bytes, lacked %d", r.res.Path, p.Received, size-sizeOf(m, held))
		}
	}
	for _, dst := range []string{dstA, dstB} {
		got, err := os.ReadFile(dst)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("%s differs from the source", dst)
		}
	}
}

// manifestBlockData returns the manifest blocks of root, which s shares,
// by CID.
func manifestBlockData(t *testing.T, s *Service, root cid.Cid) map[cid.Cid][]byte {
	t.Helper()
	set, err := s.manifestBlocks(root)
	if err != nil {
		t.Fatal(err)
	}
	blocks := make(map[cid.Cid][]byte, len(set))
	for c := range set {
		b, err := getBlock(s.db, c)
		if err != nil {
			t.Fatal(err)
		}
		blocks[c] = b
	}
	return blocks
}

// sizeOf returns the bytes of the chunks in b.
func sizeOf(m *manifest.Manifest, b Bitfield) int64 {
	var s int64
	for i := int64(0); i < m.NumChunks(); i++ {
		if b.Has(i) {
			s += m.ChunkLen(i)
		}
	}
	return s
}

// Progress reports never overlap, even with a slow callback, the last is
// the final one ("done"), and none comes after Fetch returns.
func TestProgressReportsInOrder(t *testing.T) {
	a, ha := newHostService(t)
	b, hb := newHostService(t)
	if err := hb.Connect(context.Background(), peer.AddrInfo{ID: ha.ID(), Addrs: ha.Addrs()}); err != nil {
		t.Fatal(err)
	}
	_, rec, _ := shareFile(t, a, 6<<20)
	var inside, calls atomic.Int32
	var last atomic.Pointer[Progress]
	res, err := b.Fetch(context.Background(), rec.Root, filepath.Join(t.TempDir(), "f.bin"), FetchOptions{
		Peers: []peer.ID{ha.ID()}, ProgressInterval: time.Millisecond,
		Progress: func(p Progress) {
			if inside.Add(1) > 1 {
				t.Error("progress reports overlap")
			}
			calls.Add(1)
			last.Store(&p)
			time.Sleep(30 * time.Millisecond) // a slow reader of the reports
			inside.Add(-1)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	n := calls.Load()
	if p := last.Load(); p == nil || p.Phase != "done" || p.Chunks != res.Progress.TotalChunks {
		t.Fatalf("last report: %+v", p)
	}
	if inside.Load() != 0 || calls.Load() != n {
		t.Fatal("a report came after Fetch returned")
	}
}

// fakeProvider runs a provider on a host of its own that says it holds
// every chunk of a root, answers manifest blocks from blocks, and hands
// each chunk request to onRequest (whose writes are flushed after it; an
// error ends the stream).
func fakeProvider(t *testing.T, blocks map[cid.Cid][]byte, onRequest func(w *wire.Writer, m wire.Msg) error) peer.AddrInfo {
	t.Helper()
	return fakeProviderShowing(t, blocks, nil, onRequest)
}

// fakeProviderShowing is fakeProvider saying it holds only the chunks in
// shown (a nil shown: all of them).
func fakeProviderShowing(t *testing.T, blocks map[cid.Cid][]byte, shown Bitfield, onRequest func(w *wire.Writer, m wire.Msg) error) peer.AddrInfo {
	t.Helper()
	return fakeProviderOn(t, blocks, shown, nil, onRequest)
}

// fakeProviderOn is fakeProviderShowing writing through wrap(stream)
// when wrap is set (a slow link).
func fakeProviderOn(t *testing.T, blocks map[cid.Cid][]byte, shown Bitfield, wrap func(io.Writer) io.Writer, onRequest func(w *wire.Writer, m wire.Msg) error) peer.AddrInfo {
	t.Helper()
	hello := &wire.Msg{Type: wire.THaveAll}
	if shown != nil {
		hello = &wire.Msg{Type: wire.THave, Bits: shown}
	}
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { h.Close(); wg.Wait() })
	h.SetStreamHandler(wire.ProtocolID, func(st network.Stream) {
		wg.Add(1)
		defer wg.Done()
		defer st.Reset()
		r := wire.NewReader(st, 16<<10)
		var out io.Writer = st
		if wrap != nil {
			out = wrap(st)
		}
		w := wire.NewWriter(out, 64<<10)
		if m, err := r.Next(); err != nil || m.Type != wire.TOpen {
			return
		}
		if w.Write(hello, nil) != nil || w.Flush() != nil {
			return
		}
		for {
			m, err := r.Next()
			if err != nil {
				return
			}
			switch m.Type {
			case wire.TGetBlock:
				err = w.Write(&wire.Msg{Type: wire.TBlock, ID: m.ID}, blocks[m.CID])
			case wire.TRequest:
				err = onRequest(w, m)
			default:
				continue
			}
			if err != nil || w.Flush() != nil {
				return
			}
		}
	})
	return peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()}
}
