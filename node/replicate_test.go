package node

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/shoalnet/shoal/node/membership"
	"github.com/shoalnet/shoal/node/replica"
)

// fastMembers is a membership quick enough for tests on loopback.
func fastMembers() membership.Config {
	c := membership.DefaultConfig()
	c.ProbeInterval = 200 * time.Millisecond
	c.ProbeTimeout = 100 * time.Millisecond
	c.SyncInterval = time.Second
	return c
}

// replCluster starts n storers on loopback, each bootstrapped through the
// first, and waits until every node sees every other alive.
func replCluster(t *testing.T, n int, edit func(i int, cfg *Config)) []*Node {
	t.Helper()
	nodes := make([]*Node, n)
	nodes[0] = newTestNode(t, func(cfg *Config) { replConfig(cfg); edit(0, cfg) })
	var wg sync.WaitGroup
	for i := 1; i < n; i++ {
		wg.Go(func() {
			nodes[i] = newTestNode(t, func(cfg *Config) {
				replConfig(cfg)
				cfg.BootstrapPeers = []peer.AddrInfo{nodes[0].AddrInfo()}
				edit(i, cfg)
			})
		})
	}
	wg.Wait()
	waitFor(t, 30*time.Second, "every node to see every other alive", func() bool {
		for _, nd := range nodes {
			if countState(nd, membership.Alive) != n {
				return false
			}
		}
		return true
	})
	return nodes
}

func replConfig(cfg *Config) {
	cfg.Membership = fastMembers()
	cfg.CatalogSyncInterval = 500 * time.Millisecond
	cfg.Replication = ReplicationConfig{Storer: true, Grace: 2 * time.Second, Interval: 300 * time.Millisecond}
}

func countState(n *Node, s membership.State) int {
	k := 0
	for _, m := range n.Members() {
		if m.State == s {
			k++
		}
	}
	return k
}

// holding returns the running nodes that hold root in full.
func holding(nodes []*Node, root cid.Cid, down map[*Node]bool) []*Node {
	var out []*Node
	for _, n := range nodes {
		if !down[n] && n.xfer.Held(root) {
			out = append(out, n)
		}
	}
	return out
}

func ids(nodes []*Node) []peer.ID {
	var out []peer.ID
	for _, n := range nodes {
		out = append(out, n.ID())
	}
	slices.Sort(out)
	return out
}

// crash stops n as a crash would, seen from the others: its connections
// drop and it says nothing (no leave).
func crash(n *Node) { n.h.Close() }

// Ten storers, three replicas: the three placed members fetch the root;
// two of them crash; the next members in the order fetch it, and a fresh
// node fetches the bytes correctly from the holders left.
func TestReplicasHealAfterCrashes(t *testing.T) {
	nodes := replCluster(t, 10, func(i int, cfg *Config) {})
	pub := nodes[0]
	src := randomFile(t, t.TempDir(), "data.bin", 3<<20+77)
	ctx := context.Background()
	root, err := pub.Share(ctx, src, ShareOptions{Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	down := map[*Node]bool{}
	// The publisher holds it in place; it is a storer too, so it counts
	// if placed. Three storers hold it once placement converges.
	placedNow := func() []peer.ID {
		var live []replica.Candidate
		for _, n := range nodes {
			if !down[n] {
				live = append(live, replica.Candidate{ID: n.ID()})
			}
		}
		p := replica.Place(root, live, 3)
		slices.Sort(p)
		return p
	}
	waitFor(t, 60*time.Second, "the three placed storers to hold the root", func() bool {
		placed := placedNow()
		held := ids(holding(nodes, root, down))
		for _, p := range placed {
			if !slices.Contains(held, p) {
				return false
			}
		}
		return true
	})
	// Another node learns of the copies by gossip.
	waitFor(t, 30*time.Second, "another node to see three live copies", func() bool {
		st, err := nodes[5].Replicas(root)
		return err == nil && st.Wanted == 3 && st.Live >= 3 && len(st.Placed) == 3 && len(st.Repairing) == 0
	})

	// Crash two placed holders that are not the publisher.
	var victims []*Node
	for _, id := range placedNow() {
		for _, n := range nodes {
			if n.ID() == id && n != pub && len(victims) < 2 {
				victims = append(victims, n)
			}
		}
	}
	if len(victims) != 2 {
		t.Fatalf("victims %d: three distinct members are placed, at most one is the publisher", len(victims))
	}
	for _, v := range victims {
		down[v] = true
		crash(v)
	}
	mc := fastMembers()
	maxSusp := time.Duration(mc.SuspicionMult*mc.SuspicionMaxMult) * mc.ProbeInterval // log10(10) = 1
	took := waitFor(t, 60*time.Second, "three live placed holders again", func() bool {
		placed := placedNow()
		held := ids(holding(nodes, root, down))
		for _, p := range placed {
			if !slices.Contains(held, p) {
				return false
			}
		}
		return len(placed) == 3
	})
	t.Logf("two holders crashed: three live copies again after %v (longest suspicion timeout %v)", took, maxSusp)
	if took > 2*maxSusp {
		t.Fatalf("three live copies took %v, more than two suspicion timeouts (%v)", took, 2*maxSusp)
	}

	var boot *Node
	for _, n := range nodes[1:] {
		if !down[n] {
			boot = n
		}
	}
	fresh := newTestNode(t, func(cfg *Config) {
		cfg.Membership = fastMembers()
		cfg.BootstrapPeers = []peer.AddrInfo{boot.AddrInfo()}
	})
	waitFor(t, 30*time.Second, "the fresh node to learn of the share", func() bool { return len(fresh.cat.Holders(root)) >= 3 })
	fctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	res, err := fresh.Fetch(fctx, root, filepath.Join(t.TempDir(), "copy.bin"), FetchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sameFile(t, src, res.Path)
	waitFor(t, 30*time.Second, "the fresh node to see the root fully replicated", func() bool {
		return len(fresh.UnderReplicated()) == 0 && len(pub.UnderReplicated()) == 0
	})
}

// A full store is skipped: the member with room that comes next in the
// order holds the replica instead, and the full one says so.
func TestFullStoreSkipped(t *testing.T) {
	const size = 2<<20 + 5
	// Which of four would be placed first is known only once their IDs
	// are; give every node but the publisher a quota too small, then
	// check the holders are the ones with room.
	nodes := replCluster(t, 5, func(i int, cfg *Config) {
		if i == 1 || i == 2 {
			cfg.Replication.Quota = 1 << 20 // less than the share
		}
	})
	src := randomFile(t, t.TempDir(), "data.bin", size)
	root, err := nodes[0].Share(context.Background(), src, ShareOptions{Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	roomy := []peer.ID{nodes[0].ID(), nodes[3].ID(), nodes[4].ID()}
	slices.Sort(roomy)
	waitFor(t, 60*time.Second, "the three members with room to hold it", func() bool {
		return slices.Equal(ids(holding(nodes, root, nil)), roomy)
	})
	for _, i := range []int{1, 2} {
		if nodes[i].xfer.Held(root) {
			t.Fatalf("node %d holds a replica past its quota", i)
		}
	}
	// The full members said so: the publisher's view, once their
	// metadata and the holders' announcements reached it, places the
	// members with room.
	var st ReplicaStatus
	waitFor(t, 30*time.Second, "the publisher to see three live copies", func() bool {
		st, err = nodes[0].Replicas(root)
		return err == nil && st.Live == 3 && len(st.Repairing) == 0
	})
	for _, h := range st.Placed {
		if h.ID == nodes[1].ID() || h.ID == nodes[2].ID() {
			t.Fatalf("a full member is placed: %+v", st.Placed)
		}
	}
}

// storeCopies returns the running nodes holding root in their store.
func storeCopies(nodes []*Node, root cid.Cid) []*Node {
	var out []*Node
	for _, n := range nodes {
		if sh, ok := n.heldShare(root); ok && n.inStore(sh.Path) {
			out = append(out, n)
		}
	}
	return out
}

// A partition that heals: each side keeps its own copies while it lasts;
// afterwards the surplus copies are released, leaving exactly the wanted
// count on the placed members.
func TestPartitionHealsWithoutSurplus(t *testing.T) {
	gaters := make([]*splitGater, 8)
	nodes := replCluster(t, 8, func(i int, cfg *Config) {
		cfg.Replication.Storer = i != 0 // the publisher holds its original only
		gaters[i] = &splitGater{}
		cfg.ConnectionGater = gaters[i]
	})
	pub := nodes[0]
	src := randomFile(t, t.TempDir(), "data.bin", 2<<20+3)
	root, err := pub.Share(context.Background(), src, ShareOptions{Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	placed := func(live []*Node) []peer.ID {
		var cands []replica.Candidate
		for _, n := range live[1:] {
			cands = append(cands, replica.Candidate{ID: n.ID()})
		}
		p := replica.Place(root, cands, 3)
		slices.Sort(p)
		return p
	}
	want := placed(nodes)
	waitFor(t, 60*time.Second, "three replicas on the placed members", func() bool {
		return slices.Equal(ids(storeCopies(nodes, root)), want)
	})

	// Split the storers so that each side has some of the copies.
	sideA := []*Node{pub}
	var sideB []*Node
	for _, n := range nodes[1:] {
		if len(sideB) < 4 && (slices.Contains(want, n.ID()) == (len(sideB)%2 == 0)) {
			sideB = append(sideB, n)
		} else {
			sideA = append(sideA, n)
		}
	}
	side := make(map[peer.ID]int)
	for _, b := range sideB {
		side[b.ID()] = 1
	}
	for i, g := range gaters {
		g.split(nodes[i].ID(), side)
	}
	for _, a := range sideA {
		for _, b := range sideB {
			a.h.Network().ClosePeer(b.ID())
		}
	}
	waitFor(t, 30*time.Second, "each side to declare the other dead", func() bool {
		return countState(sideA[0], membership.Dead) == len(sideB) && countState(sideB[0], membership.Dead) == len(sideA)
	})
	// The side with the publisher restores three copies among its own.
	waitFor(t, 30*time.Second, "three copies on the publisher's side", func() bool {
		return len(storeCopies(sideA, root)) >= 3
	})

	// Healed: everyone is alive again, and the copies come back to
	// exactly three, on the placed members.
	for _, g := range gaters {
		g.heal()
	}
	waitFor(t, 60*time.Second, "the partition to heal", func() bool {
		for _, n := range nodes {
			if countState(n, membership.Alive) != len(nodes) {
				return false
			}
		}
		return true
	})
	start := time.Now()
	for !slices.Equal(ids(storeCopies(nodes, root)), want) {
		if time.Since(start) > 60*time.Second {
			for i, n := range nodes {
				st, _ := n.Replicas(root)
				t.Logf("node %d %s: store copy %v; sees placed %v holders %v", i, n.ID().ShortString(),
					slices.Contains(storeCopies(nodes, root), n), st.Placed, st.Holders)
			}
			t.Fatalf("copies on %v, want %v", ids(storeCopies(nodes, root)), want)
		}
		time.Sleep(50 * time.Millisecond)
	}
	took := time.Since(start)
	t.Logf("healed: surplus released after %v", took)
	for _, n := range nodes {
		if sh, ok := n.heldShare(root); ok && n.inStore(sh.Path) && !slices.Contains(want, n.ID()) {
			t.Fatalf("%s keeps a surplus copy", n.ID())
		}
	}
}

// Content kept in the store for reading makes room for a replica when the
// quota is reached; gc never touches files shared in place or fetched to a
// user's path.
func TestStoreCollectsForReplicas(t *testing.T) {
	const size = 3 << 20
	nodes := replCluster(t, 2, func(i int, cfg *Config) {
		cfg.Replication.Storer = i == 1
		if i == 1 {
			cfg.Replication.Quota = size + size/2 // room for one of the two
		}
	})
	pub, storer := nodes[0], nodes[1]
	ctx := context.Background()
	dir := t.TempDir()
	readSrc := randomFile(t, dir, "read.bin", size)
	readRoot, err := pub.Share(ctx, readSrc, ShareOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The storer reads one root: it lands in its store.
	waitFor(t, 30*time.Second, "the storer to learn of the share", func() bool { return len(storer.cat.Holders(readRoot)) > 0 })
	r, err := storer.Open(ctx, readRoot, "")
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	waitFor(t, 30*time.Second, "the read copy in the store", func() bool { return storer.xfer.Held(readRoot) })
	// A file it fetched to its own path, and one it shares, stay.
	own, err := storer.Share(ctx, randomFile(t, t.TempDir(), "own.bin", 1000), ShareOptions{})
	if err != nil {
		t.Fatal(err)
	}
	userRoot, err := pub.Share(ctx, randomFile(t, dir, "user.bin", 2000), ShareOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the storer to learn of the second share", func() bool { return len(storer.cat.Holders(userRoot)) > 0 })
	if _, err := storer.Fetch(ctx, userRoot, filepath.Join(t.TempDir(), "mine.bin"), FetchOptions{}); err != nil {
		t.Fatal(err)
	}

	repSrc := randomFile(t, dir, "replica.bin", size)
	repRoot, err := pub.Share(ctx, repSrc, ShareOptions{Replicas: 1})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "the replica on the storer", func() bool {
		sh, ok := storer.heldShare(repRoot)
		return ok && storer.inStore(sh.Path)
	})
	if _, err := os.Stat(filepath.Join(storer.Home(), StoreDir, readRoot.String())); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the read copy is still in the store: %v", err)
	}
	if !storer.xfer.Held(own) {
		t.Fatal("a share in place was collected")
	}
	if sh, ok := storer.heldShare(userRoot); !ok || storer.inStore(sh.Path) {
		t.Fatalf("the fetch to the user's path is gone: %+v %v", sh, ok)
	}
	if st := storer.Store(); st.Replicas != 1 || st.Full || st.Used != size {
		t.Fatalf("store: %+v", st)
	}

	// Fetched again to a user's path, a root is served from there and
	// its store copy goes.
	r, err = storer.Open(ctx, userRoot, "")
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	if _, err := storer.Fetch(ctx, repRoot, filepath.Join(t.TempDir(), "again.bin"), FetchOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(storer.Home(), StoreDir, repRoot.String())); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a store copy of a root fetched again elsewhere stays: %v", err)
	}
	// gc now has nothing to take: the replica is placed here.
	c, err := storer.CollectGarbage(ctx)
	if err != nil || len(c.Roots) != 0 {
		t.Fatalf("gc took %+v (%v)", c, err)
	}
}

// splitGater keeps the two sides of a partition apart while it is on.
type splitGater struct {
	mu   sync.Mutex
	self peer.ID
	side map[peer.ID]int // 0 or 1; nil: no partition
}

func (g *splitGater) split(self peer.ID, side map[peer.ID]int) {
	g.mu.Lock()
	g.self, g.side = self, side
	g.mu.Unlock()
}

func (g *splitGater) heal() {
	g.mu.Lock()
	g.side = nil
	g.mu.Unlock()
}

func (g *splitGater) blocked(p peer.ID) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.side != nil && g.side[p] != g.side[g.self]
}

func (g *splitGater) InterceptPeerDial(p peer.ID) bool                 { return !g.blocked(p) }
func (g *splitGater) InterceptAddrDial(p peer.ID, _ ma.Multiaddr) bool { return !g.blocked(p) }
func (g *splitGater) InterceptAccept(network.ConnMultiaddrs) bool      { return true }
func (g *splitGater) InterceptSecured(_ network.Direction, p peer.ID, _ network.ConnMultiaddrs) bool {
	return !g.blocked(p)
}
func (g *splitGater) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) { return true, 0 }
