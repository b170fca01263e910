package node

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/shoalnet/shoal/transfer"
)

// within polls cond until it holds or limit passes: what it waits for
// happens on another node, with no event to wait on here.
func within(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func staleOf(n *Node, root cid.Cid) string {
	for _, s := range n.Shares() {
		if s.Root.Equals(root) {
			return s.Stale
		}
	}
	return "not shared"
}

func inCatalog(t *testing.T, n *Node, root cid.Cid) bool {
	entries, err := n.Catalog()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Root.Equals(root) {
			return true
		}
	}
	return false
}

// A shared file edited in place, keeping its size and modification time,
// is caught when a fetcher reports a chunk that fails verification: the
// serving node checks the chunk itself, stops serving the share, and
// withdraws it from the catalog everywhere; status lists it as stale.
func TestChangedInPlaceWithdrawn(t *testing.T) {
	a, b, c := newTestNode(t), newTestNode(t), newTestNode(t)
	connect(t, b, a)
	connect(t, c, a)
	src := randomFile(t, t.TempDir(), "data.bin", 3<<20)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	root, err := a.Share(ctx, src, ShareOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Gossip may miss a peer that just joined; anti-entropy does not.
	if err := b.SyncCatalog(ctx, a.ID()); err != nil || !inCatalog(t, b, root) {
		t.Fatalf("the share is not in b's catalog (%v)", err)
	}

	st, err := os.Stat(src)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(src, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("changed in place"), 1<<20+100); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Chtimes(src, st.ModTime(), st.ModTime()); err != nil {
		t.Fatal(err)
	}
	if staleOf(a, root) != "" {
		t.Fatal("stale before anyone read the changed chunk")
	}

	_, err = c.Fetch(ctx, root, filepath.Join(t.TempDir(), "out"), FetchOptions{Peers: []peer.AddrInfo{a.AddrInfo()}, NoDHT: true})
	if !errors.Is(err, transfer.ErrNoProviders) {
		t.Fatalf("fetch from the only, changed, provider: %v", err)
	}
	within(t, 10*time.Second, "the provider to find its share stale", func() bool { return staleOf(a, root) != "" })
	t.Logf("stale: %s", staleOf(a, root))
	within(t, 10*time.Second, "the share to leave the catalogs", func() bool {
		return !inCatalog(t, a, root) && (b.SyncCatalog(ctx, a.ID()) == nil && !inCatalog(t, b, root))
	})
	if got := a.meta().Shares; got != 0 {
		t.Errorf("the member metadata counts %d shares, want 0", got)
	}

	// Shared again, it is served again (a new root: the bytes differ).
	root2, err := a.Share(ctx, src, ShareOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if root2.Equals(root) {
		t.Fatal("the changed file has the old root")
	}
	if _, err := c.Fetch(ctx, root2, filepath.Join(t.TempDir(), "out2"), FetchOptions{Peers: []peer.AddrInfo{a.AddrInfo()}, NoDHT: true}); err != nil {
		t.Fatal(err)
	}
}

// A share whose file changed while the node was down is found stale as
// the node starts: not served, not counted, listed as stale.
func TestChangedWhileDownStale(t *testing.T) {
	home := t.TempDir()
	n, err := New(context.Background(), testConfig(t, home))
	if err != nil {
		t.Fatal(err)
	}
	src := randomFile(t, t.TempDir(), "data.bin", 1<<20)
	root, err := n.Share(context.Background(), src, ShareOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Close()
	if err := os.WriteFile(src, []byte("shorter now"), 0o644); err != nil {
		t.Fatal(err)
	}
	n, err = New(context.Background(), testConfig(t, home))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if staleOf(n, root) == "" {
		t.Fatal("a share whose file changed while the node was down is served")
	}
	if got := n.meta().Shares; got != 0 {
		t.Errorf("the member metadata counts %d shares, want 0", got)
	}
	within(t, 10*time.Second, "the share to leave the catalog", func() bool { return !inCatalog(t, n, root) })
}
