package transfer

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/shoalnet/shoal/transfer/manifest"
	"github.com/shoalnet/shoal/transfer/wire"
)

// randomBytes returns n reproducible pseudo-random bytes.
func randomBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// A reader of a share returns exactly the bytes asked for: across chunk
// boundaries, at the end, past the end, after seeks, and for many
// readers at once.
func TestReaderShare(t *testing.T) {
	s := newPipeService(t)
	dir := filepath.Join(t.TempDir(), "set")
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	const cs = manifest.MinChunkSize
	big := randomBytes(5*cs+1234, 1)
	small := []byte("hello, shoal\n")
	if err := os.WriteFile(filepath.Join(dir, "sub", "big.bin"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a.txt"), small, 0o644); err != nil {
		t.Fatal(err)
	}
	rec, err := s.Share(context.Background(), dir, ShareOptions{Build: manifest.BuildOptions{ChunkSize: cs}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r, err := s.Open(ctx, rec.Root, "/sub/big.bin", OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Size() != int64(len(big)) || r.Name() != "sub/big.bin" {
		t.Fatalf("size %d name %q", r.Size(), r.Name())
	}
	for _, c := range []struct{ off, n int64 }{
		{0, 10}, {cs - 3, 7}, {cs, cs}, {2*cs - 1, 2*cs + 2}, {int64(len(big)) - 5, 5}, {0, int64(len(big))},
	} {
		p := make([]byte, c.n)
		n, err := r.ReadAt(p, c.off)
		if err != nil || int64(n) != c.n || !bytes.Equal(p, big[c.off:c.off+c.n]) {
			t.Errorf("ReadAt(%d bytes at %d) = %d, %v; bytes equal: %v", c.n, c.off, n, err, bytes.Equal(p[:n], big[c.off:c.off+int64(n)]))
		}
	}
	p := make([]byte, 10)
	if n, err := r.ReadAt(p, int64(len(big))-4); n != 4 || err != io.EOF || !bytes.Equal(p[:4], big[len(big)-4:]) {
		t.Errorf("ReadAt over the end = %d, %v", n, err)
	}
	if n, err := r.ReadAt(p, int64(len(big))+1); n != 0 || err != io.EOF {
		t.Errorf("ReadAt past the end = %d, %v", n, err)
	}
	if _, err := r.Seek(-100, io.SeekEnd); err != nil {
		t.Fatal(err)
	}
	tail, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(tail, big[len(big)-100:]) {
		t.Errorf("read after Seek(-100, end): %d bytes, %v", len(tail), err)
	}
	if _, err := r.Seek(-1, io.SeekStart); err == nil {
		t.Error("seek to a negative offset accepted")
	}

	var wg sync.WaitGroup
	for k := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := s.Open(ctx, rec.Root, "sub/big.bin", OpenOptions{})
			if err != nil {
				t.Error(err)
				return
			}
			defer r.Close()
			off := int64(k) * cs / 2
			if _, err := r.Seek(off, io.SeekStart); err != nil {
				t.Error(err)
				return
			}
			got, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(got, big[off:]) {
				t.Errorf("reader %d: %d bytes, %v", k, len(got), err)
			}
		}()
	}
	wg.Wait()

	a, err := s.Open(ctx, rec.Root, "a.txt", OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(a); err != nil || !bytes.Equal(got, small) {
		t.Errorf("a.txt: %q, %v", got, err)
	}
	a.Close()
	if _, err := a.Read(p); err == nil {
		t.Error("read after Close succeeded")
	}
	for name, want := range map[string]error{"": ErrIsDir, "sub": ErrIsDir, "nope.txt": ErrNotFound, "sub/../a.tx": ErrNotFound} {
		if _, err := s.Open(ctx, rec.Root, name, OpenOptions{}); !errors.Is(err, want) {
			t.Errorf("Open(%q) = %v, want %v", name, err, want)
		}
	}
	_, other, _ := shareFile(t, newPipeService(t), 1000)
	if _, err := s.Open(ctx, other.Root, "", OpenOptions{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("Open of a root not held = %v", err)
	}
}

// gatedProvider serves data's chunks on a host of its own, one request at
// a time and only when the test releases it: requests reports each chunk
// asked for, in the order the provider reads them.
func gatedProvider(t *testing.T, m *manifest.Manifest, blocks map[cid.Cid][]byte, data []byte) (peer.AddrInfo, <-chan int64, chan<- struct{}) {
	t.Helper()
	requests := make(chan int64, 1024)
	release := make(chan struct{})
	done := make(chan struct{})
	ai := fakeProvider(t, blocks, func(w *wire.Writer, msg wire.Msg) error {
		requests <- int64(msg.Index)
		select {
		case <-release:
		case <-done:
			return errors.New("test over")
		}
		i := int64(msg.Index)
		off := i * m.ChunkSize
		return w.Write(&wire.Msg{Type: wire.TChunk, Index: msg.Index}, data[off:off+m.ChunkLen(i)])
	})
	// Before the provider's own clean-up, which waits for its handler.
	t.Cleanup(func() { close(done) })
	return ai, requests, release
}

// gatedFetch starts a fetch of an n-chunk file (256 KiB chunks) from a
// gated provider.
func gatedFetch(t *testing.T, ctx context.Context, n int) (f *Service, p *Pending, root cid.Cid, m *manifest.Manifest, data []byte, requests <-chan int64, release chan<- struct{}) {
	t.Helper()
	const cs = manifest.MinChunkSize
	seed := newPipeService(t)
	data = randomBytes(n*cs, uint64(n))
	path := filepath.Join(t.TempDir(), "f.bin")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	rec, err := seed.Share(ctx, path, ShareOptions{Build: manifest.BuildOptions{ChunkSize: cs}})
	if err != nil {
		t.Fatal(err)
	}
	m, err = seed.Manifest(rec.Root)
	if err != nil {
		t.Fatal(err)
	}
	ai, requests, release := gatedProvider(t, m, manifestBlockData(t, seed, rec.Root), data)
	f, hf := newHostService(t)
	if err := hf.Connect(ctx, ai); err != nil {
		t.Fatal(err)
	}
	p, err = f.Start(ctx, rec.Root, filepath.Join(t.TempDir(), "f.bin"), FetchOptions{Peers: []peer.ID{ai.ID}})
	if err != nil {
		t.Fatal(err)
	}
	return f, p, rec.Root, m, data, requests, release
}

type readResult struct {
	data []byte
	err  error
}

// A reader of a fetch in progress: its read waits for the chunk it
// needs, which is asked for ahead of every chunk the scheduler would pick
// otherwise, with the chunks after it (the read-ahead) next; the read
// returns once that chunk is verified, and the reader reads on across the
// fetch's completion.
func TestReaderWhileFetching(t *testing.T) {
	const n, target, ahead = 128, 100, 4
	const cs = manifest.MinChunkSize
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f, p, root, m, data, requests, release := gatedFetch(t, ctx, n)

	var seq []int64
	next := func() int64 {
		t.Helper()
		select {
		case i := <-requests:
			seq = append(seq, i)
			return i
		case <-ctx.Done():
			t.Fatalf("no request after %v", seq)
		}
		return -1
	}
	// The first request: the fetch has its manifest and a full window.
	next()
	if _, err := f.Open(ctx, m.ChunkCID(0), "", OpenOptions{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open of a chunk CID = %v", err)
	}
	r, err := f.Open(ctx, root, "", OpenOptions{ReadAhead: ahead * cs})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got := make(chan readResult, 1)
	go func() {
		buf := make([]byte, cs+10)
		k, err := r.ReadAt(buf, target*cs-10)
		got <- readResult{buf[:k], err}
	}()
	// Chunks target-1 .. target+ahead-1 are wanted: the first read needs
	// target-1 and target.
	wanted := map[int64]bool{}
	for i := int64(target - 1); i < target-1+ahead; i++ {
		wanted[i] = true
	}
	i := seq[0]
	for {
		if i == target {
			select {
			case res := <-got:
				t.Fatalf("the read returned before its chunk was sent: %d bytes, %v", len(res.data), res.err)
			default:
			}
		}
		delete(wanted, i)
		release <- struct{}{}
		if len(wanted) == 0 {
			break
		}
		i = next()
	}
	// Window (8) + urgent extra (2) + the read-ahead: far fewer than the
	// ~100 requests random order would take to reach all four.
	if len(seq) > 8+urgentExtra+ahead {
		t.Errorf("the chunks read were requested only after %d requests: %v", len(seq), seq)
	}
	res := <-got
	if res.err != nil || !bytes.Equal(res.data, data[target*cs-10:(target+1)*cs]) {
		t.Fatalf("read %d bytes, %v", len(res.data), res.err)
	}
	// Let the fetch finish, then read all of it through the same reader.
	go func() {
		for {
			select {
			case <-requests:
				release <- struct{}{}
			case <-p.Done():
				return
			}
		}
	}()
	if _, err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	all := make([]byte, len(data))
	if k, err := r.ReadAt(all, 0); err != nil || !bytes.Equal(all, data) {
		t.Fatalf("after completion: %d bytes, %v", k, err)
	}
	t.Logf("requests until the read's chunks were asked for: %v", seq)
}

// A reader opened as the fetch starts waits for the manifest; a read
// waiting for a chunk ends with the fetch's error when the fetch stops.
func TestReaderFetchStops(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	fctx, stop := context.WithCancel(ctx)
	f, p, root, _, _, requests, _ := gatedFetch(t, fctx, 16)
	r, err := f.Open(ctx, root, "", OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got := make(chan readResult, 1)
	go func() {
		k, err := r.Read(make([]byte, 100))
		got <- readResult{make([]byte, k), err}
	}()
	select {
	case <-requests: // the provider holds it: nothing arrives
	case <-ctx.Done():
		t.Fatal("no request")
	}
	stop()
	res := <-got
	if res.err == nil || !errors.Is(res.err, context.Canceled) {
		t.Fatalf("read = %d bytes, %v; want the fetch's error", len(res.data), res.err)
	}
	if _, err := p.Wait(); !errors.Is(err, context.Canceled) {
		t.Fatalf("fetch = %v", err)
	}
	t.Logf("the read ended with: %v", res.err)
}

// A seed shows its chunks a few at a time: a reader waiting for one it has
// not shown gets it anyway, asked of the providers that have not said
// they lack it, each once.
func TestReaderChunkNotShown(t *testing.T) {
	const n, target = 64, 50
	const cs = manifest.MinChunkSize
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	seed := newPipeService(t)
	data := randomBytes(n*cs, 7)
	path := filepath.Join(t.TempDir(), "f.bin")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	rec, err := seed.Share(ctx, path, ShareOptions{Build: manifest.BuildOptions{ChunkSize: cs}})
	if err != nil {
		t.Fatal(err)
	}
	blocks := manifestBlockData(t, seed, rec.Root)
	shown := NewBitfield(n)
	shown.Set(0) // and nothing else, so the fetch does not end
	var mu sync.Mutex
	asked := map[string][]int64{}
	var lacking, revealing peer.AddrInfo
	serve := func(who string, has func(int64) bool) func(w *wire.Writer, msg wire.Msg) error {
		return func(w *wire.Writer, msg wire.Msg) error {
			i := int64(msg.Index)
			mu.Lock()
			asked[who] = append(asked[who], i)
			mu.Unlock()
			if !has(i) {
				return w.Write(&wire.Msg{Type: wire.TError, Ref: msg.Index, Code: wire.CodeUnavailable}, nil)
			}
			if i != target {
				return nil // hold everything but the chunk read: the fetch goes on
			}
			return w.Write(&wire.Msg{Type: wire.TChunk, Index: msg.Index}, data[i*cs:(i+1)*cs])
		}
	}
	lacking = fakeProviderShowing(t, blocks, shown, serve("lacking", func(i int64) bool { return i == 0 }))
	revealing = fakeProviderShowing(t, blocks, shown, serve("revealing", func(int64) bool { return true }))
	f, hf := newHostService(t)
	for _, ai := range []peer.AddrInfo{lacking, revealing} {
		if err := hf.Connect(ctx, ai); err != nil {
			t.Fatal(err)
		}
	}
	fctx, stop := context.WithCancel(ctx)
	defer stop()
	p, err := f.Start(fctx, rec.Root, filepath.Join(t.TempDir(), "f.bin"), FetchOptions{Peers: []peer.ID{lacking.ID, revealing.ID}})
	if err != nil {
		t.Fatal(err)
	}
	r, err := f.Open(ctx, rec.Root, "", OpenOptions{ReadAhead: cs})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	buf := make([]byte, cs)
	if k, err := r.ReadAt(buf, target*cs); err != nil || !bytes.Equal(buf, data[target*cs:(target+1)*cs]) {
		t.Fatalf("read %d bytes, %v", k, err)
	}
	mu.Lock()
	defer mu.Unlock()
	count := func(who string) (k int) {
		for _, i := range asked[who] {
			if i == target {
				k++
			}
		}
		return k
	}
	if count("revealing") != 1 || count("lacking") > 1 {
		t.Errorf("chunk %d asked of the revealing provider %d times, of the lacking one %d times (want 1, at most 1): %v",
			target, count("revealing"), count("lacking"), asked)
	}
	stop()
	p.Wait()
}
