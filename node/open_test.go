package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"

	"github.com/shoalnet/shoal/transfer"
)

// A node opens a file of a share it does not hold: the bytes read are the
// share's, the share is fetched whole into the store and then served from
// there, and Unshare deletes it from the store.
func TestOpenFetchesIntoStore(t *testing.T) {
	a, b := newTestNode(t), newTestNode(t)
	connect(t, b, a)
	dir := filepath.Join(t.TempDir(), "set")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src := randomFile(t, dir, "big.bin", 3<<20+5)
	randomFile(t, dir, "other.bin", 1<<20)
	want, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	root, err := a.Share(ctx, dir, ShareOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.SyncCatalog(ctx, a.ID()); err != nil {
		t.Fatal(err)
	}
	r, err := b.Open(ctx, root, "big.bin")
	if err != nil {
		t.Fatal(err)
	}
	b.storeMu.Lock()
	sf := b.stores[root.KeyString()]
	b.storeMu.Unlock()
	if sf == nil {
		t.Fatal("no fetch into the store")
	}
	if _, err := r.Seek(1<<20-3, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 6)
	if _, err := io.ReadFull(r, head); err != nil || !bytes.Equal(head, want[1<<20-3:1<<20+3]) {
		t.Fatalf("read across a chunk boundary: %x, %v", head, err)
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes of %d, %v", len(got), len(want), err)
	}
	r.Close()
	m, err := b.Content(ctx, root)
	if err != nil || m.Name != "set" || len(m.Entries) != 2 {
		t.Fatalf("Content: %+v, %v", m, err)
	}

	// The fetch into the store completes and the copy is served.
	<-sf.done
	if sf.err != nil {
		t.Fatal(sf.err)
	}
	stored := filepath.Join(b.Home(), StoreDir, root.String())
	sameFile(t, src, filepath.Join(stored, "big.bin"))
	served := false
	for _, sh := range b.Shares() {
		served = served || (sh.Root.Equals(root) && sh.Path == stored)
	}
	if !served {
		t.Fatalf("the stored copy is not served: %+v", b.Shares())
	}
	// Open again: read from the store, no new fetch.
	r, err = b.Open(ctx, root, "/big.bin")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read from the store: %d bytes, %v", len(got), err)
	}
	r.Close()

	if err := b.Unshare(ctx, root); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stored); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the stored copy is still there after unshare: %v", err)
	}
	// Files shared in place are never deleted.
	if err := a.Unshare(ctx, root); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(src); err != nil {
		t.Fatal(err)
	}
}

// Open reads from a fetch already running to a path of the user's instead
// of fetching into the store; a root nobody holds fails with
// ErrNoProviders; bad paths fail clearly.
func TestOpenErrorsAndRunningFetch(t *testing.T) {
	a := newTestNode(t)
	b := newTestNode(t, func(c *Config) { c.FindTimeout = time.Second })
	connect(t, b, a)
	src := randomFile(t, t.TempDir(), "data.bin", 2<<20)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	root, err := a.Share(ctx, src, ShareOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wait, err := b.startFetch(ctx, root, filepath.Join(t.TempDir(), "out"), FetchOptions{Peers: []peer.AddrInfo{a.AddrInfo()}, NoDHT: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := b.Open(ctx, root, "")
	if err != nil {
		t.Fatal(err)
	}
	b.storeMu.Lock()
	stores := len(b.stores)
	b.storeMu.Unlock()
	if stores != 0 {
		t.Errorf("Open started a fetch into the store while one was running")
	}
	got, err := io.ReadAll(r)
	r.Close()
	want, _ := os.ReadFile(src)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes, %v", len(got), err)
	}
	if _, err := wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Open(ctx, root, "other"); !errors.Is(err, transfer.ErrNotFound) {
		t.Errorf("Open of a path not in a single-file share: %v", err)
	}

	data := make([]byte, 64)
	rand.Read(data)
	nobody, err := cid.Prefix{Version: 1, Codec: cid.DagCBOR, MhType: mh.SHA2_256, MhLength: -1}.Sum(data)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Open(ctx, nobody, ""); !errors.Is(err, transfer.ErrNoProviders) {
		t.Errorf("Open of a root nobody holds: %v", err)
	}
	if _, err := b.Open(ctx, cid.NewCidV1(cid.Raw, nobody.Hash()), ""); !errors.Is(err, ErrNotRoot) {
		t.Errorf("Open of a chunk CID: %v", err)
	}
}
