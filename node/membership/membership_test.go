package membership

import (
	"bufio"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if addr := os.Getenv(childJoinEnv); addr != "" {
		runMemberProcess(addr)
		return
	}
	goleak.VerifyTestMain(m)
}

// testCfg is a fast protocol for tests on loopback.
func testCfg() Config {
	c := DefaultConfig()
	c.ProbeInterval = 200 * time.Millisecond
	c.ProbeTimeout = 100 * time.Millisecond
	c.SyncInterval = time.Second
	return c
}

type testNode struct {
	h      host.Host
	m      *Membership
	cancel context.CancelFunc
	closed bool
}

// newCluster starts n nodes on loopback; each joins through the first.
func newCluster(t *testing.T, n int, cfg Config) []*testNode {
	return newClusterWith(t, n, cfg, nil)
}

// newClusterWith is newCluster with a connection gater per node.
func newClusterWith(t *testing.T, n int, cfg Config, gaters []*splitGater) []*testNode {
	t.Helper()
	nodes := make([]*testNode, n)
	for i := range nodes {
		var opts []libp2p.Option
		if gaters != nil {
			opts = append(opts, libp2p.ConnectionGater(gaters[i]))
		}
		nodes[i] = startTestNode(t, cfg, fmt.Sprintf("node-%d", i), opts...)
	}
	boot := peer.AddrInfo{ID: nodes[0].h.ID(), Addrs: nodes[0].h.Addrs()}
	var wg sync.WaitGroup
	for _, tn := range nodes[1:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := tn.h.Connect(ctx, boot); err != nil {
				t.Error(err)
				return
			}
			if err := tn.m.Join(ctx, []peer.ID{boot.ID}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	return nodes
}

// startTestNode starts one node on loopback, joined to nobody.
func startTestNode(t *testing.T, cfg Config, name string, opts ...libp2p.Option) *testNode {
	t.Helper()
	h, err := libp2p.New(append([]libp2p.Option{libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0")}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ps, err := pubsub.NewGossipSub(ctx, h, pubsub.WithMessageSignaturePolicy(pubsub.StrictSign))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Meta.Name = name
	m, err := New(h, ps, cfg)
	if err != nil {
		t.Fatal(err)
	}
	serveSync(h, m)
	tn := &testNode{h: h, m: m, cancel: cancel}
	t.Cleanup(func() { tn.close() })
	return tn
}

// serveSync answers anti-entropy on h as the node does (one request byte,
// then the exchange).
func serveSync(h host.Host, m *Membership) {
	h.SetStreamHandler(SyncProtocol, func(s network.Stream) {
		var b [1]byte
		if _, err := io.ReadFull(s, b[:]); err != nil || b[0] != SyncRequest {
			s.Reset()
			return
		}
		m.ServeSync(s)
	})
}

func (tn *testNode) close() {
	if tn.closed {
		return
	}
	tn.closed = true
	tn.m.Close()
	tn.cancel()
	tn.h.Close()
}

// crash stops a node without a word to anyone.
func (tn *testNode) crash() {
	tn.closed = true
	tn.m.mu.Lock()
	tn.m.closed = true
	tn.m.mu.Unlock()
	tn.m.cancel()
	tn.m.sub.Cancel()
	tn.m.wg.Wait()
	tn.cancel()
	tn.h.Close()
}

// waitUntil re-checks cond whenever any node reports a membership event,
// until it holds or timeout passes.
func waitUntil(t *testing.T, nodes []*testNode, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	events := make(chan struct{}, 1)
	var cancels []func()
	for _, tn := range nodes {
		if tn.closed {
			continue
		}
		ch, cancel := tn.m.Subscribe(1024)
		cancels = append(cancels, cancel)
		go func() {
			for range ch {
				select {
				case events <- struct{}{}:
				default:
				}
			}
		}()
	}
	defer func() {
		for _, c := range cancels {
			c()
		}
	}()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for !cond() {
		select {
		case <-events:
		case <-deadline.C:
			var views []string
			for i, tn := range nodes {
				if tn.closed {
					continue
				}
				count := map[State]int{}
				for _, mb := range tn.m.Members() {
					count[mb.State]++
				}
				views = append(views, fmt.Sprintf("node %d: %d alive, %d suspect, %d dead, %d left", i, count[Alive], count[Suspect], count[Dead], count[Left]))
			}
			t.Fatalf("timed out after %v waiting for %s; views:\n%s", timeout, what, strings.Join(views, "\n"))
		}
	}
	return time.Since(start)
}

// states counts what node tn believes of id.
func stateOf(tn *testNode, id peer.ID) State {
	for _, mb := range tn.m.Members() {
		if mb.ID == id {
			return mb.State
		}
	}
	return 0
}

func allSee(nodes []*testNode, id peer.ID, s State) bool {
	for _, tn := range nodes {
		if tn.closed || tn.h.ID() == id {
			continue
		}
		if stateOf(tn, id) != s {
			return false
		}
	}
	return true
}

func allAlive(nodes []*testNode) bool {
	for _, tn := range nodes {
		n := 0
		for _, mb := range tn.m.Members() {
			if mb.State == Alive {
				n++
			}
		}
		if n != len(nodes) {
			return false
		}
	}
	return true
}

func TestJoinTwentyNodes(t *testing.T) {
	// Joining is under test, not detection speed: probe at the pace the
	// contention test uses, so that 20 nodes under the race detector on a
	// busy machine do not suspect each other while they join.
	cfg := testCfg()
	cfg.ProbeInterval = 500 * time.Millisecond
	cfg.ProbeTimeout = 250 * time.Millisecond
	nodes := newCluster(t, 20, cfg)
	waitUntil(t, nodes, 30*time.Second, "every node to see 20 alive", func() bool { return allAlive(nodes) })
	// Metadata travels with the members.
	for _, mb := range nodes[5].m.Members() {
		if mb.Meta.Name == "" || len(mb.Meta.Addrs) == 0 {
			t.Fatalf("member %s without metadata: %+v", mb.ID, mb.Meta)
		}
	}
}

func TestCrashDetected(t *testing.T) {
	cfg := testCfg()
	nodes := newCluster(t, 8, cfg)
	waitUntil(t, nodes, 30*time.Second, "convergence", func() bool { return allAlive(nodes) })
	victim := nodes[3]
	id := victim.h.ID()
	victim.crash()
	took := waitUntil(t, nodes, 30*time.Second, "every node to declare the crashed one dead",
		func() bool { return allSee(nodes, id, Dead) })
	// Bound: a full round of probes to reach it, the probe itself, the
	// longest suspicion timeout, and a second of gossip.
	n := len(nodes)
	_, maxSusp := func() (time.Duration, time.Duration) {
		nodes[0].m.mu.Lock()
		defer nodes[0].m.mu.Unlock()
		return nodes[0].m.suspicionTimeouts()
	}()
	bound := time.Duration(n)*cfg.ProbeInterval + cfg.ProbeInterval + maxSusp + time.Second
	t.Logf("crash to last verdict: %v (bound %v)", took, bound)
	if took > bound {
		t.Fatalf("detection took %v, over the bound %v", took, bound)
	}
}

func TestGracefulLeave(t *testing.T) {
	nodes := newCluster(t, 6, testCfg())
	waitUntil(t, nodes, 30*time.Second, "convergence", func() bool { return allAlive(nodes) })
	leaver := nodes[2]
	id := leaver.h.ID()
	deaths := recordDeaths(nodes, id)
	leaver.close()
	waitUntil(t, nodes, 10*time.Second, "every node to record the leave", func() bool { return allSee(nodes, id, Left) })
	for _, p := range deaths() {
		t.Errorf("%v recorded the leaver as dead", p)
	}
}

// A member whose process stalls (stopped with SIGSTOP, as a long GC pause
// or an overloaded machine would) is suspected, and when it runs again
// within the suspicion timeout it refutes: nobody declares it dead, and
// its incarnation rises.
func TestStalledNodeRefutes(t *testing.T) {
	cfg := testCfg()
	nodes := newCluster(t, 5, cfg)
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), childJoinEnv+"="+nodes[0].h.Addrs()[0].String()+"/p2p/"+nodes[0].h.ID().String())
	child.Stderr = os.Stderr
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		child.Process.Signal(syscall.SIGCONT)
		child.Process.Kill()
		child.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("the member process said nothing: %v", err)
	}
	id, err := peer.Decode(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("the member process said %q: %v", line, err)
	}
	waitUntil(t, nodes, 30*time.Second, "the member process alive everywhere", func() bool { return allSee(nodes, id, Alive) })
	deaths := recordDeaths(nodes, id)
	incarnation := func(tn *testNode) uint64 {
		for _, mb := range tn.m.Members() {
			if mb.ID == id {
				return mb.Incarnation
			}
		}
		return 0
	}
	before := incarnation(nodes[0])

	if err := child.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// Stopped until someone suspects it, then for less than the shortest
	// suspicion timeout.
	var suspecter *testNode
	waitUntil(t, nodes, 10*time.Second, "a suspicion of the stalled member", func() bool {
		for _, tn := range nodes {
			if stateOf(tn, id) == Suspect {
				suspecter = tn
				return true
			}
		}
		return false
	})
	if err := child.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, nodes, 10*time.Second, "the stalled member to be alive everywhere", func() bool {
		return allSee(nodes, id, Alive)
	})
	for _, p := range deaths() {
		t.Errorf("%v declared the stalled member dead", p)
	}
	// A member that suspected it takes it back only for a higher
	// incarnation: the refutation.
	if after := incarnation(suspecter); after <= before {
		t.Fatalf("the stalled member did not refute (incarnation %d, %d before)", after, before)
	}
}

// childJoinEnv makes the test binary a member process (TestMain): it
// joins the member at this address, prints its peer ID and runs until it
// is killed.
const childJoinEnv = "SHOAL_TEST_MEMBER_JOIN"

func runMemberProcess(addr string) {
	ai, err := peer.AddrInfoFromString(addr)
	if err != nil {
		log.Fatal(err)
	}
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		log.Fatal(err)
	}
	ps, err := pubsub.NewGossipSub(context.Background(), h, pubsub.WithMessageSignaturePolicy(pubsub.StrictSign))
	if err != nil {
		log.Fatal(err)
	}
	cfg := testCfg()
	cfg.Meta.Name = "process"
	m, err := New(h, ps, cfg)
	if err != nil {
		log.Fatal(err)
	}
	serveSync(h, m)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.Connect(ctx, *ai); err != nil {
		log.Fatal(err)
	}
	if err := m.Join(ctx, []peer.ID{ai.ID}); err != nil {
		log.Fatal(err)
	}
	fmt.Println(h.ID())
	select {}
}

func TestReapForgetsTheGone(t *testing.T) {
	cfg := testCfg()
	nodes := newCluster(t, 3, cfg)
	waitUntil(t, nodes, 30*time.Second, "convergence", func() bool { return allAlive(nodes) })
	gone := nodes[2].h.ID()
	nodes[2].close()
	waitUntil(t, nodes, 10*time.Second, "the leave", func() bool { return allSee(nodes, gone, Left) })
	m := nodes[0].m
	m.reap(time.Now()) // too soon: kept
	if stateOf(nodes[0], gone) != Left {
		t.Fatal("a departed member was forgotten before ReapAfter")
	}
	m.reap(time.Now().Add(cfg.ReapAfter + time.Second))
	if stateOf(nodes[0], gone) != 0 {
		t.Fatal("a departed member was kept past ReapAfter")
	}
	if stateOf(nodes[0], nodes[1].h.ID()) != Alive {
		t.Fatal("reaping removed a live member")
	}
}

// recordDeaths watches every node but id for a verdict that id is dead.
// The function it returns stops watching, after every event already
// delivered has been seen, and returns the nodes that gave that verdict.
func recordDeaths(nodes []*testNode, id peer.ID) func() []peer.ID {
	var (
		mu      sync.Mutex
		who     []peer.ID
		wg      sync.WaitGroup
		cancels []func()
	)
	for _, tn := range nodes {
		if tn.h.ID() == id || tn.closed {
			continue
		}
		ch, cancel := tn.m.Subscribe(1024)
		cancels = append(cancels, cancel)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for e := range ch {
				if e.Member.ID == id && e.Member.State == Dead {
					mu.Lock()
					who = append(who, tn.h.ID())
					mu.Unlock()
				}
			}
		}()
	}
	return func() []peer.ID {
		for _, c := range cancels {
			c()
		}
		wg.Wait()
		return who
	}
}

// A member that left and comes back (same identity, a new process) is
// alive again in every view within a few probe periods, so that when it
// later crashes, the crash is seen.
func TestLeaveRestartCrash(t *testing.T) {
	cfg := testCfg()
	nodes := newCluster(t, 5, cfg)
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	boot := peer.AddrInfo{ID: nodes[0].h.ID(), Addrs: nodes[0].h.Addrs()}
	start := func() *testNode {
		tn := startTestNode(t, cfg, "comeback", libp2p.Identity(key))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := tn.h.Connect(ctx, boot); err != nil {
			t.Fatal(err)
		}
		if err := tn.m.Join(ctx, []peer.ID{boot.ID}); err != nil {
			t.Fatal(err)
		}
		return tn
	}
	tn := start()
	id := tn.h.ID()
	waitUntil(t, nodes, 30*time.Second, "convergence", func() bool { return allSee(nodes, id, Alive) })
	tn.close()
	waitUntil(t, nodes, 10*time.Second, "every node to record the leave", func() bool { return allSee(nodes, id, Left) })

	tn = start()
	took := waitUntil(t, nodes, 10*cfg.ProbeInterval+time.Second, "every node to see the member back",
		func() bool { return allSee(nodes, id, Alive) })
	t.Logf("back in every view after %v", took)
	tn.crash()
	waitUntil(t, nodes, 30*time.Second, "every node to declare the crashed member dead",
		func() bool { return allSee(nodes, id, Dead) })
}
