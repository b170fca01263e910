package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p"
	kaddht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/shoalnet/shoal/transfer"
	"github.com/shoalnet/shoal/transfer/wire"
)

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// newTestNode starts a node on loopback TCP in a temporary home.
func newTestNode(t testing.TB, edit ...func(*Config)) *Node {
	t.Helper()
	cfg := testConfig(t, t.TempDir())
	for _, e := range edit {
		e(&cfg)
	}
	n, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

func testConfig(t testing.TB, home string) Config {
	cfg := DefaultConfig()
	cfg.Home = home
	cfg.ListenAddrs = []string{"/ip4/127.0.0.1/tcp/0"}
	cfg.FindTimeout = 5 * time.Second
	cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return cfg
}

func connect(t testing.TB, a, b *Node) {
	t.Helper()
	if err := a.Connect(context.Background(), b.AddrInfo()); err != nil {
		t.Fatal(err)
	}
}

func randomFile(t testing.TB, dir, name string, size int) string {
	t.Helper()
	data := make([]byte, size)
	rand.Read(data)
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func sameFile(t testing.TB, a, b string) {
	t.Helper()
	da, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	db, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(da, db) {
		t.Fatalf("%s and %s differ (%d vs %d bytes)", a, b, len(da), len(db))
	}
}

func copyFile(t testing.TB, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

func peersServing(p transfer.Progress) int {
	k := 0
	for _, pp := range p.Peers {
		if pp.Chunks > 0 {
			k++
		}
	}
	return k
}

// Two nodes share the same 64 MiB file; three fetch it at once. Every
// copy is exact and every fetcher got chunks from both holders.
func TestFiveNodesMultiSourceFetch(t *testing.T) {
	nodes := make([]*Node, 5)
	for i := range nodes {
		nodes[i] = newTestNode(t)
	}
	src := randomFile(t, t.TempDir(), "data.bin", 64<<20)
	other := filepath.Join(t.TempDir(), "data.bin")
	copyFile(t, src, other)

	ctx := context.Background()
	r1, err := nodes[0].Share(ctx, src, ShareOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r2, err := nodes[1].Share(ctx, other, ShareOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !r1.Equals(r2) {
		t.Fatalf("same content, different roots: %s %s", r1, r2)
	}
	for _, f := range nodes[2:] {
		connect(t, f, nodes[0])
		connect(t, f, nodes[1])
		for _, s := range nodes[:2] {
			if err := f.SyncCatalog(ctx, s.ID()); err != nil {
				t.Fatal(err)
			}
		}
	}
	var wg sync.WaitGroup
	results := make([]*transfer.Result, 3)
	errs := make([]error, 3)
	for i, f := range nodes[2:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dst := filepath.Join(t.TempDir(), "out.bin")
			results[i], errs[i] = f.Fetch(ctx, r1, dst, FetchOptions{NoDHT: true})
		}()
	}
	wg.Wait()
	for i, res := range results {
		if errs[i] != nil {
			t.Fatalf("fetcher %d: %v", i, errs[i])
		}
		sameFile(t, src, res.Path)
		if n := peersServing(res.Progress); n < 2 {
			t.Errorf("fetcher %d got chunks from %d peer(s), want 2: %+v", i, n, res.Progress.Peers)
		}
		if res.Progress.Bytes != 64<<20 {
			t.Errorf("fetcher %d holds %d bytes", i, res.Progress.Bytes)
		}
	}
}

// A directory with nested folders, an empty file and an empty directory
// round-trips exactly.
func TestDirectoryRoundTrip(t *testing.T) {
	a, b := newTestNode(t), newTestNode(t)
	connect(t, b, a)
	dir := filepath.Join(t.TempDir(), "tree")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "a", "b", "c"), 0o755))
	must(os.MkdirAll(filepath.Join(dir, "empty-dir"), 0o750))
	must(os.WriteFile(filepath.Join(dir, "empty.txt"), nil, 0o600))
	randomFile(t, filepath.Join(dir, "a"), "one.bin", 3<<20+17)
	randomFile(t, filepath.Join(dir, "a", "b", "c"), "deep.bin", 1<<20)
	must(os.WriteFile(filepath.Join(dir, "a", "b", "run.sh"), []byte("#!/bin/sh\necho hi\n"), 0o755))

	ctx := context.Background()
	root, err := a.Share(ctx, dir, ShareOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "copy")
	if _, err := b.Fetch(ctx, root, dst, FetchOptions{Peers: []peer.AddrInfo{a.AddrInfo()}, NoDHT: true}); err != nil {
		t.Fatal(err)
	}
	want := walk(t, dir)
	got := walk(t, dst)
	if len(want) != len(got) {
		t.Fatalf("tree differs:\nwant %v\ngot  %v", want, got)
	}
	for p, w := range want {
		if got[p] != w {
			t.Errorf("%s: got %+v, want %+v", p, got[p], w)
		}
	}
	// Fetching again to the same place is refused.
	_, err = b.Fetch(ctx, root, dst, FetchOptions{Peers: []peer.AddrInfo{a.AddrInfo()}, NoDHT: true})
	if !errors.Is(err, transfer.ErrExists) {
		t.Fatalf("fetch onto an existing destination: %v, want ErrExists", err)
	}
}

type fileInfo struct {
	dir  bool
	mode os.FileMode
	size int64
	hash string
}

func walk(t testing.TB, root string) map[string]fileInfo {
	t.Helper()
	out := map[string]fileInfo{}
	err := filepath.Walk(root, func(p string, st os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fi := fileInfo{dir: st.IsDir(), mode: st.Mode().Perm(), size: st.Size()}
		if st.IsDir() {
			fi.size = 0
		} else {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			fi.hash = string(data)
		}
		if rel != "." {
			out[rel] = fi
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// waitProgress returns a Progress callback that closes ch once at least
// frac of the chunks are held.
func waitProgress(frac float64, ch chan<- struct{}) func(transfer.Progress) {
	var once sync.Once
	return func(p transfer.Progress) {
		if p.TotalChunks > 0 && float64(p.Chunks) >= frac*float64(p.TotalChunks) {
			once.Do(func() { close(ch) })
		}
	}
}

// A provider closed in the middle of a fetch: the fetch completes from the
// other.
func TestProviderClosedMidFetch(t *testing.T) {
	a, b, f, src, root := twoSlowHolders(t, 32<<20)
	ctx := context.Background()
	quarter := make(chan struct{})
	go func() {
		<-quarter
		b.Close()
	}()
	res, err := f.Fetch(ctx, root, filepath.Join(t.TempDir(), "out"), FetchOptions{
		Peers: []peer.AddrInfo{a.AddrInfo(), b.AddrInfo()}, NoDHT: true,
		Progress: waitProgress(0.25, quarter),
	})
	if err != nil {
		t.Fatal(err)
	}
	sameFile(t, src, res.Path)
	var bStat *transfer.PeerProgress
	for i, pp := range res.Progress.Peers {
		if pp.Peer == b.ID() {
			bStat = &res.Progress.Peers[i]
		}
	}
	if bStat == nil || bStat.Chunks == 0 || bStat.Error == "" {
		t.Fatalf("closed provider should have served some chunks and then been dropped: %+v", res.Progress.Peers)
	}
}

// A provider whose file was corrupted on disk (size and mtime unchanged)
// serves bad chunks: the fetch completes with the right bytes and that
// provider is dropped.
func TestCorruptProviderDropped(t *testing.T) {
	a, b, f := newTestNode(t), newTestNode(t), newTestNode(t)
	src := randomFile(t, t.TempDir(), "data.bin", 16<<20)
	bad := filepath.Join(t.TempDir(), "data.bin")
	copyFile(t, src, bad)
	ctx := context.Background()
	root, err := a.Share(ctx, src, ShareOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Share(ctx, bad, ShareOptions{}); err != nil {
		t.Fatal(err)
	}
	// Rot every chunk of b's copy behind its back.
	st, _ := os.Stat(bad)
	data, _ := os.ReadFile(bad)
	for i := 0; i < len(data); i += 1 << 20 {
		data[i+12345] ^= 0xff
	}
	if err := os.WriteFile(bad, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(bad, st.ModTime(), st.ModTime()); err != nil {
		t.Fatal(err)
	}
	res, err := f.Fetch(ctx, root, filepath.Join(t.TempDir(), "out"), FetchOptions{
		Peers: []peer.AddrInfo{b.AddrInfo(), a.AddrInfo()}, NoDHT: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	sameFile(t, src, res.Path)
	for _, pp := range res.Progress.Peers {
		if pp.Peer == b.ID() {
			if pp.Chunks != 0 || pp.Error == "" {
				t.Fatalf("corrupt provider: %+v, want dropped with no chunks accepted", pp)
			}
			return
		}
	}
	t.Fatalf("corrupt provider never contacted: %+v", res.Progress.Peers)
}

// A fetch cancelled half way resumes on a new node object on the same
// home and downloads only what is missing.
func TestFetchResumesAfterRestart(t *testing.T) {
	a := newTestNode(t, func(c *Config) { c.Transfer.UploadRate = 24 << 20 })
	const size = 48 << 20
	src := randomFile(t, t.TempDir(), "data.bin", size)
	ctx := context.Background()
	root, err := a.Share(ctx, src, ShareOptions{})
	if err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	dst := filepath.Join(t.TempDir(), "out.bin")
	f1, err := New(ctx, testConfig(t, home))
	if err != nil {
		t.Fatal(err)
	}
	half := make(chan struct{})
	fctx, cancel := context.WithCancel(ctx)
	go func() {
		<-half
		cancel()
	}()
	_, err = f1.Fetch(fctx, root, dst, FetchOptions{Peers: []peer.AddrInfo{a.AddrInfo()}, NoDHT: true, Progress: waitProgress(0.5, half)})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("first fetch: %v, want context.Canceled", err)
	}
	if err := f1.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dst); err == nil {
		t.Fatal("an interrupted fetch left a file at the destination")
	}

	f2, err := New(ctx, testConfig(t, home))
	if err != nil {
		t.Fatal(err)
	}
	defer f2.Close()
	res, err := f2.Fetch(ctx, root, dst, FetchOptions{Peers: []peer.AddrInfo{a.AddrInfo()}, NoDHT: true})
	if err != nil {
		t.Fatal(err)
	}
	sameFile(t, src, res.Path)
	p := res.Progress
	if p.Resumed < p.TotalChunks/2-2 {
		t.Fatalf("resumed %d of %d chunks, want about half", p.Resumed, p.TotalChunks)
	}
	missing := int64(size) - p.Resumed*(1<<20)
	if p.Received > missing+2<<20 {
		t.Fatalf("after restart received %d bytes, but only %d were missing", p.Received, missing)
	}
	t.Logf("resumed %d/%d chunks; received %d bytes after restart", p.Resumed, p.TotalChunks, p.Received)
}

func TestSecondNodeOnSameHomeRefused(t *testing.T) {
	home := t.TempDir()
	n, err := New(context.Background(), testConfig(t, home))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	_, err = New(context.Background(), testConfig(t, home))
	if !errors.Is(err, ErrHomeLocked) {
		t.Fatalf("second node on one home: %v, want ErrHomeLocked", err)
	}
}

func TestIdentityPersists(t *testing.T) {
	home := t.TempDir()
	n, err := New(context.Background(), testConfig(t, home))
	if err != nil {
		t.Fatal(err)
	}
	id := n.ID()
	n.Close()
	if err := n.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	st, err := os.Stat(filepath.Join(home, IdentityFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("identity file: %v %v", st, err)
	}
	n2, err := New(context.Background(), testConfig(t, home))
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Close()
	if n2.ID() != id {
		t.Fatalf("identity changed across restart: %s -> %s", id, n2.ID())
	}
}

func TestFetchErrors(t *testing.T) {
	a := newTestNode(t)
	ctx := context.Background()
	// A chunk CID is not a root.
	raw, _ := cid.Decode("bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy")
	if _, err := a.Fetch(ctx, raw, filepath.Join(t.TempDir(), "x"), FetchOptions{NoDHT: true}); !errors.Is(err, ErrNotRoot) {
		t.Fatalf("raw CID: %v, want ErrNotRoot", err)
	}
	// Unknown root, nobody to ask.
	unknown := cid.NewCidV1(cid.DagCBOR, raw.Hash())
	_, err := a.Fetch(ctx, unknown, filepath.Join(t.TempDir(), "x"), FetchOptions{NoDHT: true})
	if !errors.Is(err, transfer.ErrNoProviders) {
		t.Fatalf("unknown root: %v, want ErrNoProviders", err)
	}
	// A peer that does not hold the root.
	b := newTestNode(t)
	_, err = a.Fetch(ctx, unknown, filepath.Join(t.TempDir(), "x"), FetchOptions{NoDHT: true, Peers: []peer.AddrInfo{b.AddrInfo()}})
	if !errors.Is(err, transfer.ErrNoProviders) {
		t.Fatalf("root not held: %v, want ErrNoProviders", err)
	}
	if _, err := a.Share(ctx, filepath.Join(t.TempDir(), "missing"), ShareOptions{}); err == nil {
		t.Fatal("sharing a missing path succeeded")
	}
}

// With no catalog entry and no peer given, the fetcher finds the holder
// through the DHT alone.
func TestFetchThroughDHT(t *testing.T) {
	// One DHT, but the holder announces in the catalog of another network
	// name: the fetcher can find it through the DHT only.
	const prefix = "/shoal/dht-test"
	boot := newTestNode(t, func(c *Config) { c.DHTPrefix = prefix })
	join := func(network string) func(*Config) {
		return func(c *Config) {
			c.Network, c.DHTPrefix = network, prefix
			c.BootstrapPeers = []peer.AddrInfo{boot.AddrInfo()}
		}
	}
	holder, fetcher := newTestNode(t, join("elsewhere")), newTestNode(t, join("default"))
	src := randomFile(t, t.TempDir(), "data.bin", 3<<20)
	ctx := context.Background()
	root, err := holder.Share(ctx, src, ShareOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := holder.dht.Provide(ctx, root); err != nil {
		t.Fatal(err)
	}
	if len(fetcher.cat.Holders(root)) != 0 {
		t.Fatal("the fetcher's catalog knows the holder: the test proves nothing")
	}
	res, err := fetcher.Fetch(ctx, root, filepath.Join(t.TempDir(), "out"), FetchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sameFile(t, src, res.Path)
}

// A destination on a nearly full file system is refused before any chunk
// is fetched, with a message that says so.
func TestFetchDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	small := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", small).CombinedOutput(); err != nil {
		t.Skipf("cannot mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", small).Run() })
	a, b := newTestNode(t), newTestNode(t)
	src := randomFile(t, t.TempDir(), "big.bin", 16<<20)
	ctx := context.Background()
	root, err := a.Share(ctx, src, ShareOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Fetch(ctx, root, filepath.Join(small, "big.bin"), FetchOptions{Peers: []peer.AddrInfo{a.AddrInfo()}, NoDHT: true})
	if err == nil || !strings.Contains(err.Error(), "not enough disk space") {
		t.Fatalf("fetch onto a full disk: %v", err)
	}
	entries, _ := os.ReadDir(small)
	if len(entries) != 0 {
		t.Fatalf("left behind on the full disk: %v", entries)
	}
}

// With the /ipfs prefix a node is a member of an IPFS (Amino) DHT: a
// plain go-libp2p-kad-dht node with the library's defaults, as IPFS
// nodes run it, routes to it and finds the roots it provides.
func TestIPFSDHTInterop(t *testing.T) {
	ipfsHost, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	defer ipfsHost.Close()
	ipfsDHT, err := kaddht.New(ipfsHost, kaddht.Mode(kaddht.ModeServer))
	if err != nil {
		t.Fatal(err)
	}
	defer ipfsDHT.Close()
	n := newTestNode(t, func(c *Config) {
		c.DHTPrefix = "/ipfs"
		c.BootstrapPeers = []peer.AddrInfo{{ID: ipfsHost.ID(), Addrs: ipfsHost.Addrs()}}
	})
	src := randomFile(t, t.TempDir(), "x.bin", 1<<20)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	root, err := n.Share(ctx, src, ShareOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.dht.Provide(ctx, root); err != nil {
		t.Fatal(err)
	}
	found := false
	for ai := range ipfsDHT.FindProvidersAsync(ctx, root, 1) {
		found = found || ai.ID == n.ID()
	}
	if !found {
		t.Fatal("the IPFS DHT node did not find the shoal node as provider")
	}
}

// When membership declares a provider gone, the fetch drops it at once
// and its chunks go to the others.
func TestPeerGoneReassigns(t *testing.T) {
	a, b, f, src, root := twoSlowHolders(t, 24<<20)
	ctx := context.Background()
	quarter := make(chan struct{})
	go func() {
		<-quarter
		f.xfer.PeerGone(a.ID())
	}()
	res, err := f.Fetch(ctx, root, filepath.Join(t.TempDir(), "out"), FetchOptions{
		Peers: []peer.AddrInfo{a.AddrInfo(), b.AddrInfo()}, NoDHT: true,
		Progress: waitProgress(0.25, quarter),
	})
	if err != nil {
		t.Fatal(err)
	}
	sameFile(t, src, res.Path)
	for _, pp := range res.Progress.Peers {
		if pp.Peer == a.ID() {
			if !strings.Contains(pp.Error, "membership") {
				t.Fatalf("gone peer not dropped by membership: %+v", pp)
			}
			return
		}
	}
	t.Fatal("gone peer missing from the figures")
}

// A private network: a node without the swarm key, or with another one,
// cannot connect; with it, it can, and QUIC is off.
func TestPrivateNetwork(t *testing.T) {
	homeA := t.TempDir()
	if err := NewSwarmKey(homeA); err != nil {
		t.Fatal(err)
	}
	if err := NewSwarmKey(homeA); err == nil {
		t.Fatal("an existing swarm key was replaced")
	}
	key, _ := os.ReadFile(filepath.Join(homeA, SwarmKeyFile))
	withKey := func(key []byte) string {
		home := t.TempDir()
		if key != nil {
			os.WriteFile(filepath.Join(home, SwarmKeyFile), key, 0o600)
		}
		return home
	}
	var logs lockedBuffer // the private node's debug log
	start := func(home string, edit ...func(*Config)) *Node {
		cfg := testConfig(t, home)
		cfg.ListenAddrs = []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}
		for _, e := range edit {
			e(&cfg)
		}
		n, err := New(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		return n
	}
	a := start(homeA, func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	for _, addr := range a.Addrs() {
		if strings.Contains(addr.String(), "quic") {
			t.Fatalf("private node listens on QUIC: %s", addr)
		}
	}
	member := start(withKey(key))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := member.Connect(ctx, a.AddrInfo()); err != nil {
		t.Fatalf("a node with the key could not connect: %v", err)
	}
	otherHome := t.TempDir()
	if err := NewSwarmKey(otherHome); err != nil {
		t.Fatal(err)
	}
	for name, home := range map[string]string{"no key": withKey(nil), "another key": otherHome} {
		outsider := start(home)
		// The side without the right key learns nothing but a timeout.
		dctx, cancel := context.WithTimeout(network.WithDialPeerTimeout(context.Background(), 2*time.Second), 5*time.Second)
		err := outsider.Connect(dctx, a.AddrInfo())
		cancel()
		if err == nil {
			t.Errorf("%s: connected to a private network", name)
		} else if !strings.Contains(err.Error(), "swarm key") {
			t.Errorf("%s: the error does not say the network may be private: %q", name, err)
		}
	}
	// The private side says, at debug, what it refused.
	within(t, 10*time.Second, "the private node to log the refused handshakes", func() bool {
		return strings.Contains(logs.String(), "ended before its handshake")
	})
	// A malformed key is a clear error at start.
	bad := withKey([]byte("/key/swarm/psk/1.0.0/\n/base16/\nnothex\n"))
	if _, err := New(context.Background(), testConfig(t, bad)); err == nil || !strings.Contains(err.Error(), "swarm key") {
		t.Fatalf("malformed swarm key: %v", err)
	}
}

// A peer that opens more transfer streams than its limit has the extra
// ones refused; the node keeps serving others.
func TestTransferStreamLimit(t *testing.T) {
	a, f := newTestNode(t), newTestNode(t)
	src := randomFile(t, t.TempDir(), "x.bin", 2<<20)
	ctx := context.Background()
	root, err := a.Share(ctx, src, ShareOptions{})
	if err != nil {
		t.Fatal(err)
	}
	flood, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	defer flood.Close()
	if err := flood.Connect(ctx, a.AddrInfo()); err != nil {
		t.Fatal(err)
	}
	refused := 0
	for range 40 {
		s, err := flood.NewStream(ctx, a.ID(), wire.ProtocolID)
		if err != nil {
			refused++
			continue
		}
		// Open a root and read the answer: a refused stream fails here.
		w := wire.NewWriter(s, 0)
		w.Write(&wire.Msg{Type: wire.TOpen, Root: root}, nil)
		w.Flush()
		if _, err := wire.NewReader(s, 0).Next(); err != nil {
			refused++
		}
		defer s.Close()
	}
	if refused < 40-16 {
		t.Fatalf("%d of 40 streams refused, want at least %d", refused, 40-16)
	}
	res, err := f.Fetch(ctx, root, filepath.Join(t.TempDir(), "out"), FetchOptions{Peers: []peer.AddrInfo{a.AddrInfo()}, NoDHT: true})
	if err != nil {
		t.Fatalf("a well-behaved peer could not fetch: %v", err)
	}
	sameFile(t, src, res.Path)
}

// twoSlowHolders starts two nodes that share the same random file of size
// bytes, each uploading at 16 MiB/s so a fetch lasts long enough to act
// on mid-way, and a third node to fetch it.
func twoSlowHolders(t *testing.T, size int) (a, b, f *Node, src string, root cid.Cid) {
	t.Helper()
	slow := func(c *Config) { c.Transfer.UploadRate = 16 << 20 }
	a, b, f = newTestNode(t, slow), newTestNode(t, slow), newTestNode(t)
	src = randomFile(t, t.TempDir(), "data.bin", size)
	ctx := context.Background()
	root, err := a.Share(ctx, src, ShareOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Share(ctx, src, ShareOptions{}); err != nil {
		t.Fatal(err)
	}
	return a, b, f, src, root
}

// lockedBuffer is a bytes.Buffer safe for concurrent use.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
