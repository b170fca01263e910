package transfer

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	bolt "go.etcd.io/bbolt"

	"github.com/shoalnet/shoal/transfer/manifest"
	"github.com/shoalnet/shoal/transfer/wire"
)

// newPipeService returns a Service with no host, for driving serve over
// net.Pipe.
func newPipeService(t *testing.T) *Service {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "state.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := initBuckets(db); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.fill()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return &Service{db: db, cfg: cfg, log: cfg.Logger, ctx: ctx, cancel: cancel,
		sources: map[cid.Cid]*source{}, active: map[string]*fetch{}}
}

// pipeClient opens a serving stream over net.Pipe and returns the client
// end's reader and writer, and a channel with serve's result.
func pipeClient(t *testing.T, s *Service) (*wire.Reader, *wire.Writer, net.Conn, <-chan error) {
	t.Helper()
	return pipeClientAs(t, s, "")
}

// pipeClientAs is pipeClient for a client with peer ID p.
func pipeClientAs(t *testing.T, s *Service, p peer.ID) (*wire.Reader, *wire.Writer, net.Conn, <-chan error) {
	t.Helper()
	a, b := net.Pipe()
	done := make(chan error, 1)
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		done <- s.serve(s.ctx, b, p, func() { b.Close() })
		b.Close()
	}()
	t.Cleanup(func() { a.Close(); <-finished })
	return wire.NewReader(a, 0), wire.NewWriter(a, 0), a, done
}

func send(t *testing.T, w *wire.Writer, msgs ...wire.Msg) {
	t.Helper()
	for _, m := range msgs {
		if err := w.Write(&m, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
}

func shareFile(t *testing.T, s *Service, size int) (string, *ShareRecord, *manifest.Manifest) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f.bin")
	data := make([]byte, size)
	rand.Read(data)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	rec, err := s.Share(context.Background(), p, ShareOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.Manifest(rec.Root)
	if err != nil {
		t.Fatal(err)
	}
	return p, rec, m
}

func TestServeShare(t *testing.T) {
	s := newPipeService(t)
	path, rec, m := shareFile(t, s, 3<<20+100)
	r, w, _, _ := pipeClient(t, s)

	send(t, w, wire.Msg{Type: wire.TOpen, Root: rec.Root})
	if msg, err := r.Next(); err != nil || msg.Type != wire.THaveAll {
		t.Fatalf("after open: %+v %v", msg, err)
	}
	// The root block, verified against its CID.
	send(t, w, wire.Msg{Type: wire.TGetBlock, ID: 9, CID: rec.Root})
	msg, err := r.Next()
	if err != nil || msg.Type != wire.TBlock || msg.ID != 9 {
		t.Fatalf("block: %+v %v", msg, err)
	}
	blk := make([]byte, msg.Length)
	if err := r.ReadPayload(blk); err != nil || verifyBlock(rec.Root, blk) != nil {
		t.Fatalf("root block does not verify: %v", err)
	}
	// A block that is not this share's is refused.
	other, _ := cid.Decode("bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy")
	send(t, w, wire.Msg{Type: wire.TGetBlock, ID: 10, CID: other})
	if msg, err := r.Next(); err != nil || msg.Type != wire.TError || msg.About != wire.AboutBlock || msg.Ref != 10 {
		t.Fatalf("foreign block: %+v %v", msg, err)
	}
	// Pipelined chunk requests come back in order, byte-exact; a
	// cancelled one does not come back at all.
	want, _ := os.ReadFile(path)
	send(t, w,
		wire.Msg{Type: wire.TRequest, Index: 3},
		wire.Msg{Type: wire.TRequest, Index: 0},
	)
	for _, i := range []int64{3, 0} {
		got := readAnswer(t, r, m, i)
		off := i << 20
		if !bytes.Equal(got, want[off:off+m.ChunkLen(i)]) {
			t.Fatalf("chunk %d bytes differ", i)
		}
		if err := m.Verify(i, got); err != nil {
			t.Fatal(err)
		}
	}
}

func TestServeUnknownRoot(t *testing.T) {
	s := newPipeService(t)
	r, w, _, done := pipeClient(t, s)
	root, _ := cid.Decode("bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy")
	send(t, w, wire.Msg{Type: wire.TOpen, Root: root})
	msg, err := r.Next()
	if err != nil || msg.Type != wire.TError || msg.Code != wire.CodeNotFound {
		t.Fatalf("unknown root: %+v %v", msg, err)
	}
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
}

func TestServeRejectsBadRequests(t *testing.T) {
	for name, msgs := range map[string][]wire.Msg{
		"no open first":            {{Type: wire.TRequest, Index: 0}},
		"out of range":             {{Type: wire.TOpen}, {Type: wire.TRequest, Index: 1 << 40}},
		"server message":           {{Type: wire.TOpen}, {Type: wire.THaveAll}},
		"have-update out of range": {{Type: wire.TOpen}, {Type: wire.THaveUpdate, Index: 1}},
		"have bits out of range":   {{Type: wire.TOpen}, {Type: wire.THave, Start: 8, Bits: []byte{0x80}}},
		"have bits too long":       {{Type: wire.TOpen}, {Type: wire.THave, Start: 0, Bits: []byte{0x80, 0x80}}},
	} {
		t.Run(name, func(t *testing.T) {
			s := newPipeService(t)
			_, rec, _ := shareFile(t, s, 1<<20)
			r, w, _, done := pipeClient(t, s)
			if msgs[0].Type == wire.TOpen {
				msgs[0].Root = rec.Root
			}
			go func() {
				for {
					if _, err := r.Next(); err != nil {
						return
					}
					r.Discard()
				}
			}()
			send(t, w, msgs...)
			if err := <-done; !errors.Is(err, wire.ErrProtocol) {
				t.Fatalf("serve: %v, want a protocol error", err)
			}
		})
	}
}

func TestServeQueueCap(t *testing.T) {
	s := newPipeService(t)
	s.cfg.MaxQueuedPerStream = 4
	_, rec, _ := shareFile(t, s, 1<<20)
	r, w, _, done := pipeClient(t, s)
	send(t, w, wire.Msg{Type: wire.TOpen, Root: rec.Root})
	if msg, err := r.Next(); err != nil || msg.Type != wire.THaveAll {
		t.Fatalf("open: %+v %v", msg, err)
	}
	// The client reads no more: the server's writer blocks and requests
	// pile up until the cap cuts the peer off.
	var msgs []wire.Msg
	for range 64 {
		msgs = append(msgs, wire.Msg{Type: wire.TRequest, Index: 0})
	}
	go func() {
		for _, m := range msgs {
			if w.Write(&m, nil) != nil || w.Flush() != nil {
				return
			}
		}
	}()
	select {
	case err := <-done:
		if !errors.Is(err, wire.ErrProtocol) {
			t.Fatalf("serve: %v, want a protocol error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a peer flooding requests was not cut off")
	}
}

func TestServeStaleShare(t *testing.T) {
	s := newPipeService(t)
	path, rec, _ := shareFile(t, s, 2<<20)
	// The file changes after it was indexed.
	if err := os.WriteFile(path, []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, w, _, _ := pipeClient(t, s)
	send(t, w, wire.Msg{Type: wire.TOpen, Root: rec.Root}, wire.Msg{Type: wire.TRequest, Index: 1})
	if msg, err := r.Next(); err != nil || msg.Type != wire.THaveAll {
		t.Fatalf("open: %+v %v", msg, err)
	}
	msg, err := r.Next()
	if err != nil || msg.Type != wire.TError || msg.Code != wire.CodeStale {
		t.Fatalf("stale chunk: %+v %v", msg, err)
	}
	shares := s.Shares()
	if len(shares) != 1 || shares[0].Stale == "" {
		t.Fatalf("share not reported stale: %+v", shares)
	}
}

func TestServeUploadSlots(t *testing.T) {
	s := newPipeService(t)
	s.cfg.MaxUploads = 1
	_, rec, _ := shareFile(t, s, 1<<20)
	r1, w1, _, _ := pipeClient(t, s)
	send(t, w1, wire.Msg{Type: wire.TOpen, Root: rec.Root})
	if msg, err := r1.Next(); err != nil || msg.Type != wire.THaveAll {
		t.Fatalf("first open: %+v %v", msg, err)
	}
	// The only slot is taken: the next peer is told to come back later.
	r2, w2, _, done2 := pipeClient(t, s)
	send(t, w2, wire.Msg{Type: wire.TOpen, Root: rec.Root})
	msg, err := r2.Next()
	if err != nil || msg.Type != wire.TError || msg.Code != wire.CodeBusy {
		t.Fatalf("second open: %+v %v", msg, err)
	}
	if err := <-done2; err != nil {
		t.Fatalf("busy answer: %v", err)
	}
	if got := s.uploads.Load(); got != 1 {
		t.Fatalf("%d uploads counted", got)
	}
}

// readAnswer reads the answer to a request for chunk i: a Chunk, or (for
// a streamable chunk) a Tree and its Parts, checked on the way.
func readAnswer(t *testing.T, r *wire.Reader, m *manifest.Manifest, i int64) []byte {
	t.Helper()
	msg, err := nextNotPeers(r)
	if err != nil || int64(msg.Index) != i {
		t.Fatalf("chunk %d: %+v %v", i, msg, err)
	}
	if msg.Type == wire.TChunk {
		got := make([]byte, msg.Length)
		if err := r.ReadPayload(got); err != nil {
			t.Fatal(err)
		}
		return got
	}
	if msg.Type != wire.TTree {
		t.Fatalf("chunk %d: %v, want a tree", i, msg.Type)
	}
	tree := make([]byte, msg.Length)
	if err := r.ReadPayload(tree); err != nil {
		t.Fatal(err)
	}
	if err := m.VerifyTree(i, tree); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, m.ChunkLen(i))
	for g := 0; g < manifest.Groups(m.ChunkLen(i)); g++ {
		msg, err := r.Next()
		off := g * manifest.GroupSize
		if err != nil || msg.Type != wire.TPart || int64(msg.Index) != i || msg.Offset != uint64(off) {
			t.Fatalf("chunk %d group %d: %+v %v", i, g, msg, err)
		}
		part := got[off : off+int(msg.Length)]
		if err := r.ReadPayload(part); err != nil {
			t.Fatal(err)
		}
		if err := manifest.VerifyGroup(tree, g, part); err != nil {
			t.Fatal(err)
		}
	}
	return got
}

// nextNotPeers returns the next message that is not a Peers: a server
// sends those whenever the peers fetching the root change.
func nextNotPeers(r *wire.Reader) (wire.Msg, error) {
	for {
		msg, err := r.Next()
		if err != nil || msg.Type != wire.TPeers {
			return msg, err
		}
	}
}
