package node

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"

	"github.com/shoalnet/shoal/node/auth"
	"github.com/shoalnet/shoal/node/catalog"
	"github.com/shoalnet/shoal/transfer"
)

// closedNet is a closed network with one admin.
type closedNet struct {
	t     *testing.T
	admin *Node
}

func newClosedNet(t *testing.T) *closedNet {
	// The admin is an admin of its own network: it needs no token.
	admin := startClosed(t, nil, func(self peer.ID) []peer.ID { return []peer.ID{self} })
	return &closedNet{t: t, admin: admin}
}

// member starts a node of the network. mint, if set, makes its token
// from its peer ID (nil: no token).
func (c *closedNet) member(mint func(p peer.ID) auth.Token) *Node {
	return startClosed(c.t, mint, func(peer.ID) []peer.ID { return []peer.ID{c.admin.ID()} })
}

// startClosed starts a node of network "corp" in a new home; admins gives
// the network's admins from the node's own ID, and mint, if set, its
// token.
func startClosed(t *testing.T, mint func(peer.ID) auth.Token, admins func(self peer.ID) []peer.ID) *Node {
	t.Helper()
	home := t.TempDir()
	key, _, err := LoadOrCreateIdentity(home)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(key)
	cfg := testConfig(t, home)
	cfg.Network = "corp"
	cfg.Admins = admins(id)
	if mint != nil {
		cfg.Token = mint(id)
	}
	n, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

func (c *closedNet) role(r auth.Role) func(peer.ID) auth.Token {
	return func(p peer.ID) auth.Token {
		tok, err := c.admin.IssueToken(r, p, time.Hour)
		if err != nil {
			c.t.Fatal(err)
		}
		return tok
	}
}

// waitFor polls cond until it holds or the deadline passes, and returns
// how long it took; what the test waits for is gossip reaching other
// nodes, which has no event.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

func connected(a, b *Node) bool {
	return a.Host().Network().Connectedness(b.ID()) == network.Connected
}

func TestClosedNetwork(t *testing.T) {
	c := newClosedNet(t)
	pub := c.member(c.role(auth.RolePublisher))
	reader := c.member(c.role(auth.RoleReader))
	other := c.member(c.role(auth.RoleReader))
	for _, n := range []*Node{pub, reader, other} {
		connect(t, n, c.admin)
	}
	connect(t, reader, pub)
	connect(t, other, pub)
	if r, err := reader.Role(); err != nil || r != auth.RoleReader {
		t.Fatalf("reader's role: %v %v", r, err)
	}

	// A reader fetches an open share.
	dir := t.TempDir()
	src := randomFile(t, dir, "open.bin", 3<<20)
	root, err := pub.Share(context.Background(), src, ShareOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "open.bin")
	if _, err := reader.Fetch(context.Background(), root, dst, FetchOptions{Peers: []peer.AddrInfo{pub.AddrInfo()}, NoDHT: true}); err != nil {
		t.Fatal(err)
	}
	sameFile(t, src, dst)

	// A reader may not share, and its announcement, forced out anyway, is
	// rejected by every other peer.
	if _, err := reader.Share(context.Background(), src, ShareOptions{}); !errors.Is(err, ErrNotPublisher) {
		t.Fatalf("reader's share: %v", err)
	}
	before := map[*Node]int64{}
	for _, n := range []*Node{c.admin, pub, other} {
		before[n] = n.cat.Rejected()
	}
	waitFor(t, 20*time.Second, "every peer to reject the reader's announcement", func() bool {
		_ = reader.cat.Announce(context.Background(), catalog.Entry{Root: root, Name: "forced", Size: 1})
		for n, b := range before {
			if n.cat.Rejected() <= b {
				return false
			}
		}
		return true
	})
	for _, n := range []*Node{c.admin, pub, other} {
		for _, h := range n.cat.Holders(root) {
			if h == reader.ID() {
				t.Fatalf("%s keeps the reader's announcement", n.ID())
			}
		}
	}

	// Peers without a valid token are refused.
	adminKey := c.admin.key
	bad := []struct {
		name string
		set  func(n *Node)
		want error
	}{
		{"no token", func(*Node) {}, auth.ErrNoToken},
		{"expired token", func(n *Node) {
			tok, err := auth.Issue(adminKey, "corp", auth.RoleReader, n.ID(), time.Minute, time.Now().Add(-time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			n.access.token = tok
		}, auth.ErrExpired},
		{"another peer's token", func(n *Node) { n.access.token = reader.Token() }, auth.ErrWrongPeer},
		{"forged signature", func(n *Node) {
			tok, _ := auth.Issue(adminKey, "corp", auth.RoleAdmin, n.ID(), 0, time.Now())
			raw := append([]byte(nil), tok.Bytes()...)
			raw[len(raw)-1] ^= 0x01 // the signature is the encoding's last field
			n.access.rawToken = raw
		}, auth.ErrBadSignature},
	}
	for _, b := range bad {
		n := c.member(nil)
		b.set(n)
		err := n.Connect(context.Background(), pub.AddrInfo())
		if !errors.Is(err, ErrRefused) {
			t.Fatalf("%s: connect: %v", b.name, err)
		}
		if want := b.want.Error(); !strings.Contains(err.Error(), want) {
			t.Fatalf("%s: error %q does not say %q", b.name, err, want)
		}
		waitFor(t, 5*time.Second, b.name+": disconnected", func() bool { return !connected(pub, n) })
		// The gater now refuses it before any protocol runs.
		if err := n.Connect(context.Background(), pub.AddrInfo()); err == nil || errors.Is(err, ErrRefused) {
			t.Fatalf("%s: second connect was not refused at the handshake: %v", b.name, err)
		}
		// It is in nobody's member view.
		for _, m := range pub.Members() {
			if m.ID == n.ID() {
				t.Fatalf("%s: refused peer is a member: %+v", b.name, m)
			}
		}
		// And it cannot fetch anything.
		_, err = n.Fetch(context.Background(), root, filepath.Join(t.TempDir(), "x"), FetchOptions{Peers: []peer.AddrInfo{pub.AddrInfo()}, NoDHT: true})
		if err == nil {
			t.Fatalf("%s: fetched", b.name)
		}
	}

	// Revocation: every peer cuts the revoked reader off and refuses it.
	if !connected(other, c.admin) || !connected(other, pub) {
		t.Fatal("other reader not connected")
	}
	if _, err := c.admin.Revoke(context.Background(), other.Token()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "every peer to cut off the revoked reader", func() bool {
		return !connected(c.admin, other) && !connected(pub, other) && !connected(reader, other)
	})
	for _, n := range []*Node{pub, reader} {
		if !n.access.v.Revoked(other.Token().ID()) {
			t.Fatalf("%s did not keep the revocation", n.ID())
		}
	}

	// The network is healthy afterwards: the reader fetches again.
	dst2 := filepath.Join(t.TempDir(), "again.bin")
	if _, err := reader.Fetch(context.Background(), root, dst2, FetchOptions{Peers: []peer.AddrInfo{pub.AddrInfo()}, NoDHT: true}); err != nil {
		t.Fatal(err)
	}
	sameFile(t, src, dst2)
}

// A share limited to one peer: that peer fetches it; another gets denied
// by every holder, and no byte of it.
func TestShareAllowOnePeer(t *testing.T) {
	c := newClosedNet(t)
	pub := c.member(c.role(auth.RolePublisher))
	friend := c.member(c.role(auth.RoleReader))
	outsider := c.member(c.role(auth.RoleReader))
	for _, n := range []*Node{friend, outsider} {
		connect(t, n, pub)
	}
	connect(t, outsider, friend)
	src := randomFile(t, t.TempDir(), "secret.bin", 2<<20)
	root, err := pub.Share(context.Background(), src, ShareOptions{Allow: []string{friend.ID().String()}})
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "secret.bin")
	if _, err := friend.Fetch(context.Background(), root, dst, FetchOptions{Peers: []peer.AddrInfo{pub.AddrInfo()}, NoDHT: true}); err != nil {
		t.Fatal(err)
	}
	sameFile(t, src, dst)

	// The outsider asks both holders: the publisher and the friend, who
	// keeps the publisher's limits.
	deniedBefore := pub.xfer.Denied() + friend.xfer.Denied()
	outDir := t.TempDir()
	var last transfer.Progress
	_, err = outsider.Fetch(context.Background(), root, filepath.Join(outDir, "secret.bin"), FetchOptions{
		Peers: []peer.AddrInfo{pub.AddrInfo(), friend.AddrInfo()}, NoDHT: true,
		Progress: func(p transfer.Progress) { last = p },
	})
	if !errors.Is(err, transfer.ErrDenied) {
		t.Fatalf("outsider's fetch: %v", err)
	}
	if last.Bytes != 0 {
		t.Fatalf("outsider received %d bytes", last.Bytes)
	}
	if ents, _ := os.ReadDir(outDir); len(ents) != 0 {
		t.Fatalf("outsider's directory holds %d entries", len(ents))
	}
	if _, err := outsider.xfer.Manifest(root); err == nil {
		t.Fatal("outsider holds the manifest")
	}
	if got := pub.xfer.Denied() + friend.xfer.Denied(); got < deniedBefore+2 {
		t.Fatalf("denials counted: %d, want at least %d", got, deniedBefore+2)
	}

	// Roles as limits: a share for publishers is denied to readers.
	src2 := randomFile(t, t.TempDir(), "pubs.bin", 1<<20)
	root2, err := pub.Share(context.Background(), src2, ShareOptions{Allow: []string{"publisher"}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = friend.Fetch(context.Background(), root2, filepath.Join(t.TempDir(), "p"), FetchOptions{Peers: []peer.AddrInfo{pub.AddrInfo()}, NoDHT: true})
	if !errors.Is(err, transfer.ErrDenied) {
		t.Fatalf("reader fetching a publishers' share: %v", err)
	}
	dst3 := filepath.Join(t.TempDir(), "p")
	if _, err := c.admin.Fetch(context.Background(), root2, dst3, FetchOptions{Peers: []peer.AddrInfo{pub.AddrInfo()}, NoDHT: true}); err != nil {
		t.Fatalf("admin fetching a publishers' share: %v", err)
	}
	sameFile(t, src2, dst3)
}

func TestAllowListChecks(t *testing.T) {
	if _, err := CheckAllow([]string{"reader"}, false); err == nil {
		t.Fatal("role accepted in an open network")
	}
	if _, err := CheckAllow([]string{"nobody"}, true); err == nil {
		t.Fatal("garbage accepted")
	}
	got, err := CheckAllow([]string{"Reader", "reader"}, true)
	if err != nil || len(got) != 1 || got[0] != "reader" {
		t.Fatalf("%v %v", got, err)
	}
}

// An allow list a provider states is enforced at once and written off the
// fetch's reader goroutine; it is in the database by the time the node
// has closed, and read back after a restart.
func TestProviderLimitsWritten(t *testing.T) {
	home := t.TempDir()
	n, err := New(context.Background(), testConfig(t, home))
	if err != nil {
		t.Fatal(err)
	}
	root := cid.NewCidV1(cid.DagCBOR, must(mh.Sum([]byte("limited"), mh.SHA2_256, -1)))
	list := []string{"reader"}
	if err := n.acls.AddSoon(root, list); err != nil {
		t.Fatal(err)
	}
	if got := n.acls.Lists(root); len(got) != 1 || !slices.Equal(got[0], list) {
		t.Fatalf("enforced at once: %v", got)
	}
	if err := n.acls.AddSoon(root, list); err != nil || len(n.acls.Lists(root)) != 1 {
		t.Fatalf("the same list twice: %v, %v", n.acls.Lists(root), err)
	}
	n.Close()
	n, err = New(context.Background(), testConfig(t, home))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if got := n.acls.Stored(root); len(got) != 1 || !slices.Equal(got[0], list) {
		t.Fatalf("after a restart: %v", got)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
