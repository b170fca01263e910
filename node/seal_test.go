package node

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/shoalnet/shoal/transfer"
	"github.com/shoalnet/shoal/transfer/seal"
)

const marker = "SHOAL-PLAINTEXT-MARKER"

// treeHolds reports whether any file under dir contains s.
func treeHolds(t *testing.T, dir, s string) bool {
	t.Helper()
	found := false
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(p)
		if err == nil && bytes.Contains(data, []byte(s)) {
			found = true
		}
		return nil
	})
	return found
}

// An encrypted share with two replicas: the storers hold only ciphertext;
// the link's holder gets the plaintext; without the key, or with another,
// a fetch fails clearly and writes nothing.
func TestEncryptedShare(t *testing.T) {
	nodes := replCluster(t, 4, func(i int, cfg *Config) { cfg.Replication.Storer = i != 0 })
	pub := nodes[0]
	src := filepath.Join(t.TempDir(), "secret")
	if err := os.MkdirAll(filepath.Join(src, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte(marker+"\n"), 200_000) // 4.6 MB: several chunks
	if err := os.WriteFile(filepath.Join(src, "sub", "big.txt"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "small.txt"), []byte(marker), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	root, key, err := pub.ShareEncrypted(ctx, src, ShareOptions{Replicas: 2})
	if err != nil {
		t.Fatal(err)
	}
	if treeHolds(t, filepath.Join(pub.Home(), StoreDir), marker) {
		t.Fatal("the publisher's store holds plaintext")
	}
	waitFor(t, 60*time.Second, "two replicas", func() bool { return len(storeCopies(nodes[1:], root)) == 2 })
	for _, n := range nodes[1:] {
		if treeHolds(t, n.Home(), marker) {
			t.Fatalf("storer %s holds plaintext", n.ID())
		}
	}

	reader := newTestNode(t, func(cfg *Config) {
		cfg.Membership = fastMembers()
		cfg.BootstrapPeers = []peer.AddrInfo{nodes[1].AddrInfo()}
	})
	waitFor(t, 30*time.Second, "the reader to learn of the share", func() bool { return len(reader.cat.Holders(root)) >= 2 })
	dst := filepath.Join(t.TempDir(), "plain")
	if _, err := reader.Fetch(ctx, root, dst, FetchOptions{}); !errors.Is(err, ErrSealed) || !strings.Contains(err.Error(), "CID#key") {
		t.Fatalf("fetch without the key: %v", err)
	}
	if _, err := os.Lstat(dst); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused fetch left %s: %v", dst, err)
	}
	if _, err := reader.Open(ctx, root, "small.txt"); !errors.Is(err, ErrSealed) {
		t.Fatalf("open without the key: %v", err)
	}
	// Read while it arrives, decrypted, by a node that holds nothing yet.
	reader2 := newTestNode(t, func(cfg *Config) {
		cfg.Membership = fastMembers()
		cfg.BootstrapPeers = []peer.AddrInfo{nodes[2].AddrInfo()}
	})
	waitFor(t, 30*time.Second, "the second reader to learn of the share", func() bool { return len(reader2.cat.Holders(root)) >= 2 })
	sr, err := reader2.OpenDecrypted(ctx, root, key, "sub/big.txt")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(sr)
	sr.Close()
	if err != nil || !bytes.Equal(got, big) || sr.Name() != "sub/big.txt" {
		t.Fatalf("read decrypted: %d bytes, %v", len(got), err)
	}
	if m, err := reader2.ContentDecrypted(ctx, root); err != nil || m.Size != int64(len(big)+len(marker)) {
		t.Fatalf("plaintext sizes: %v %v", m, err)
	}
	other, _ := seal.NewKey()
	if _, err := reader.FetchDecrypted(ctx, root, other, dst, FetchOptions{}); !errors.Is(err, seal.ErrWrongKey) {
		t.Fatalf("fetch with another key: %v", err)
	}
	if _, err := os.Lstat(dst); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a fetch with a wrong key left %s: %v", dst, err)
	}
	res, err := reader.FetchDecrypted(ctx, root, key, dst, FetchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reader.FetchDecrypted(ctx, root, key, dst, FetchOptions{}); !errors.Is(err, transfer.ErrExists) {
		t.Fatalf("fetch onto an existing destination: %v", err)
	}
	sameFile(t, filepath.Join(src, "sub", "big.txt"), filepath.Join(res.Path, "sub", "big.txt"))
	sameFile(t, filepath.Join(src, "small.txt"), filepath.Join(res.Path, "small.txt"))
	if st, err := os.Stat(filepath.Join(res.Path, "small.txt")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode: %v %v", st, err)
	}
	// The link carries the root and the key.
	r2, k2, err := seal.ParseLink(seal.Link(root, key))
	if err != nil || r2 != root || k2 == nil || *k2 != key {
		t.Fatalf("link round trip: %v %v %v", r2, k2, err)
	}
}
