package transfer

import (
	"bytes"
	"context"
	"errors"
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

// A lone fetcher gets whole chunks; once other peers fetch the root from
// the same node, chunks are streamed part by part (they will likely be
// passed on).
func TestServeTreeWhenShared(t *testing.T) {
	s := newPipeService(t)
	path, rec, m := shareFile(t, s, 2<<20)
	want, _ := os.ReadFile(path)
	r, w, _, _ := pipeClientAs(t, s, "peer-a")
	send(t, w, wire.Msg{Type: wire.TOpen, Root: rec.Root})
	if msg, err := r.Next(); err != nil || msg.Type != wire.THaveAll {
		t.Fatalf("after open: %+v %v", msg, err)
	}
	send(t, w, wire.Msg{Type: wire.TRequest, Index: 0})
	if msg, err := r.Next(); err != nil || msg.Type != wire.TChunk || msg.Index != 0 {
		t.Fatalf("lone fetcher: %+v %v", msg, err)
	}
	if err := r.Discard(); err != nil {
		t.Fatal(err)
	}
	openCrowd(t, s, rec)
	send(t, w, wire.Msg{Type: wire.TRequest, Index: 1})
	if !bytes.Equal(readAnswer(t, r, m, 1), want[1<<20:]) {
		t.Fatal("chunk 1 differs")
	}
}

// openCrowd opens a second fetcher's stream (peer-b) for rec's root.
func openCrowd(t *testing.T, s *Service, rec *ShareRecord) {
	t.Helper()
	r, w, _, _ := pipeClientAs(t, s, "peer-b")
	send(t, w, wire.Msg{Type: wire.TOpen, Root: rec.Root})
	if msg, err := r.Next(); err != nil || msg.Type != wire.THaveAll {
		t.Fatalf("second fetcher: %+v %v", msg, err)
	}
}

// A request cancelled while its chunk is being streamed ends early: the
// parts stop at a group boundary and a Cancelled error closes the answer;
// the stream goes on.
func TestServeTreeCancel(t *testing.T) {
	s := newPipeService(t)
	_, rec, m := shareFile(t, s, 4<<20)
	r, w, _, _ := pipeClientAs(t, s, "peer-a")
	send(t, w, wire.Msg{Type: wire.TOpen, Root: rec.Root})
	if msg, err := r.Next(); err != nil || msg.Type != wire.THaveAll {
		t.Fatalf("after open: %+v %v", msg, err)
	}
	openCrowd(t, s, rec)
	send(t, w, wire.Msg{Type: wire.TRequest, Index: 1})
	if msg, err := nextNotPeers(r); err != nil || msg.Type != wire.TTree || msg.Index != 1 {
		t.Fatalf("tree: %+v %v", msg, err)
	}
	if err := r.Discard(); err != nil {
		t.Fatal(err)
	}
	// The server reads in order: once the get-block after the cancel is
	// taken, the cancel is recorded, with the writer at most a buffer
	// (256 KiB) ahead of what was read. Two writes: the pipe hands over
	// the get-block only when the server reads again, after the cancel
	// (one write could reach it in one read, before the cancel counts).
	send(t, w, wire.Msg{Type: wire.TCancel, Index: 1})
	send(t, w, wire.Msg{Type: wire.TGetBlock, ID: 5, CID: rec.Root})
	parts := 0
	for {
		msg, err := nextNotPeers(r)
		if err != nil {
			t.Fatal(err)
		}
		if msg.Type == wire.TPart {
			parts++
			if err := r.Discard(); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if msg.Type != wire.TError || msg.Code != wire.CodeCancelled || msg.About != wire.AboutChunk || msg.Ref != 1 {
			t.Fatalf("after %d parts: %+v", parts, msg)
		}
		break
	}
	if all := manifest.Groups(m.ChunkLen(1)); parts >= all {
		t.Fatalf("%d parts of %d sent after the cancel", parts, all)
	}
	if msg, err := nextNotPeers(r); err != nil || msg.Type != wire.TBlock || msg.ID != 5 {
		t.Fatalf("the stream did not go on: %+v %v", msg, err)
	}
	t.Logf("%d parts of %d sent", parts, manifest.Groups(m.ChunkLen(1)))
}

// partialSource serves a fetch in progress: a source holding no chunk of
// a 3 MiB share, whose chunk 1 is (made to be) arriving.
func partialSource(t *testing.T) (s *Service, rec *ShareRecord, m *manifest.Manifest, src *source, data []byte) {
	t.Helper()
	s = newPipeService(t)
	path, rec, m := shareFile(t, s, 3<<20)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blocks, err := s.manifestBlocks(rec.Root)
	if err != nil {
		t.Fatal(err)
	}
	src = &source{root: rec.Root, m: m, blocks: blocks, files: newFileSet(m, path, false, nil), have: NewBitfield(m.NumChunks()), shown: NewBitfield(m.NumChunks())}
	s.mu.Lock()
	s.sources[rec.Root] = src
	s.mu.Unlock()
	return s, rec, m, src, data
}

// Cut-through: a chunk this node is receiving is offered to its peers as
// soon as its tree checks out, and each group is passed on once verified
// here, not before; when the chunk stops arriving, the peer is told.
func TestServePartialCutThrough(t *testing.T) {
	s, rec, m, src, data := partialSource(t)
	r, w, _, _ := pipeClient(t, s)
	send(t, w, wire.Msg{Type: wire.TOpen, Root: rec.Root})
	if msg, err := r.Next(); err != nil || msg.Type != wire.THave || !bytes.Equal(msg.Bits, []byte{0}) {
		t.Fatalf("after open: %+v %v", msg, err)
	}

	const i = 1
	chunk := data[i<<20 : (i+1)<<20]
	tree, err := m.Tree(nil, i, chunk)
	if err != nil {
		t.Fatal(err)
	}
	buf := s.getBuf(len(chunk))
	copy(*buf, chunk) // the bytes land before they are verified
	p := newPartial(i, tree, buf, s.putBuf)
	if !src.startPartial(p) {
		t.Fatal("a chunk arriving was not offered")
	}
	if src.startPartial(newPartial(i, tree, s.getBuf(len(chunk)), s.putBuf)) {
		t.Fatal("a second partial of the same chunk was offered")
	}
	if msg, err := r.Next(); err != nil || msg.Type != wire.THaveUpdate || msg.Index != i {
		t.Fatalf("offer: %+v %v", msg, err)
	}

	p.verified(3)
	send(t, w, wire.Msg{Type: wire.TRequest, Index: i})
	msg, err := r.Next()
	if err != nil || msg.Type != wire.TTree || msg.Index != i {
		t.Fatalf("tree: %+v %v", msg, err)
	}
	got := make([]byte, msg.Length)
	if err := r.ReadPayload(got); err != nil || !bytes.Equal(got, tree) {
		t.Fatalf("tree differs (%v)", err)
	}
	readParts := func(from, to int) {
		t.Helper()
		for g := from; g < to; g++ {
			msg, err := r.Next()
			if err != nil || msg.Type != wire.TPart || msg.Offset != uint64(g*manifest.GroupSize) {
				t.Fatalf("group %d: %+v %v", g, msg, err)
			}
			part := make([]byte, msg.Length)
			if err := r.ReadPayload(part); err != nil || !bytes.Equal(part, chunk[g*manifest.GroupSize:][:len(part)]) {
				t.Fatalf("group %d differs (%v)", g, err)
			}
		}
	}
	readParts(0, 3)
	p.verified(10)
	readParts(3, 10)
	// The upstream fails: group 10 was never verified here, so the next
	// message cannot be its part.
	p.fail()
	src.endPartial(p, true)
	if msg, err := r.Next(); err != nil || msg.Type != wire.TError || msg.Code != wire.CodeUnavailable || msg.Ref != i {
		t.Fatalf("after the upstream failed: %+v %v", msg, err)
	}
	p.release()
	// The chunk may be offered again when it next begins to arrive.
	p2 := newPartial(i, tree, s.getBuf(len(chunk)), s.putBuf)
	if !src.startPartial(p2) {
		t.Fatal("a chunk arriving again was not offered")
	}
	if msg, err := r.Next(); err != nil || msg.Type != wire.THaveUpdate || msg.Index != i {
		t.Fatalf("second offer: %+v %v", msg, err)
	}
	p2.fail()
	src.endPartial(p2, true)
	p2.release()
}

// treeProvider runs a provider that says it holds every chunk and answers
// with trees and parts from data, passed through spoil first (nil: as
// is).
func treeProvider(t *testing.T, m *manifest.Manifest, blocks map[cid.Cid][]byte, data []byte,
	spoil func(i int64, tree, chunk []byte) ([]byte, []byte)) peer.AddrInfo {
	t.Helper()
	return fakeProvider(t, blocks, func(w *wire.Writer, msg wire.Msg) error {
		i := int64(msg.Index)
		chunk := append([]byte(nil), data[i*m.ChunkSize:][:m.ChunkLen(i)]...)
		tree, err := m.Tree(nil, i, chunk)
		if err != nil {
			t.Error(err)
			return err
		}
		if spoil != nil {
			tree, chunk = spoil(i, tree, chunk)
		}
		if err := w.Write(&wire.Msg{Type: wire.TTree, Index: msg.Index}, tree); err != nil {
			return err
		}
		for off := 0; off < len(chunk); off += manifest.GroupSize {
			part := chunk[off:min(len(chunk), off+manifest.GroupSize)]
			if err := w.Write(&wire.Msg{Type: wire.TPart, Index: msg.Index, Offset: uint64(off)}, part); err != nil {
				return err
			}
		}
		return nil
	})
}

// A provider whose tree does not hash to the chunk's digest, or whose
// group does not match its tree, is dropped as bad at that part; the
// fetch completes from the honest provider and nothing it wrote is
// wrong.
func TestBadTreeOrPartDropsProvider(t *testing.T) {
	for name, spoil := range map[string]func(i int64, tree, chunk []byte) ([]byte, []byte){
		"forged tree": func(i int64, tree, chunk []byte) ([]byte, []byte) {
			tree[5] ^= 1
			return tree, chunk
		},
		"corrupt group": func(i int64, tree, chunk []byte) ([]byte, []byte) {
			chunk[3*manifest.GroupSize+7] ^= 0x40
			return tree, chunk
		},
		"tree of other bytes": func(i int64, tree, chunk []byte) ([]byte, []byte) {
			// A consistent tree and data, of the wrong content.
			for k := range chunk {
				chunk[k] = byte(k)
			}
			return tree, chunk
		},
	} {
		t.Run(name, func(t *testing.T) {
			good, hg := newHostServiceWith(t, func(c *Config) { c.UploadRate = 8 << 20 })
			srcPath, rec, m := shareFile(t, good, 8<<20)
			data, err := os.ReadFile(srcPath)
			if err != nil {
				t.Fatal(err)
			}
			bad := treeProvider(t, m, manifestBlockData(t, good, rec.Root), data, spoil)

			f, hf := newHostService(t)
			for _, h := range []peer.AddrInfo{bad, {ID: hg.ID(), Addrs: hg.Addrs()}} {
				if err := hf.Connect(context.Background(), h); err != nil {
					t.Fatal(err)
				}
			}
			var mu sync.Mutex
			var badErr error
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			dst := filepath.Join(t.TempDir(), "f.bin")
			res, err := f.Fetch(ctx, rec.Root, dst, FetchOptions{
				Peers: []peer.ID{bad.ID, hg.ID()},
				OnBadPeer: func(p peer.ID, err error) {
					mu.Lock()
					defer mu.Unlock()
					if p == bad.ID {
						badErr = err
					}
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if !errors.Is(badErr, manifest.ErrChunkMismatch) {
				t.Fatalf("the bad provider was not dropped for bad data: %v", badErr)
			}
			for _, pp := range res.Progress.Peers {
				if pp.Peer == bad.ID && pp.Chunks != 0 {
					t.Errorf("%d chunks from the bad provider", pp.Chunks)
				}
			}
			got, err := os.ReadFile(dst)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) {
				t.Fatal("the copy differs from the source")
			}
		})
	}
}
