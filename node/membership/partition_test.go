package membership

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// splitGater refuses connections between the two halves of a cluster
// while the partition is on.
type splitGater struct {
	on   atomic.Bool
	self peer.ID
	side map[peer.ID]int // filled before the partition starts
	mu   sync.Mutex
}

func (g *splitGater) blocked(p peer.ID) bool {
	if !g.on.Load() {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.side[p] != g.side[g.self]
}

func (g *splitGater) InterceptPeerDial(p peer.ID) bool                 { return !g.blocked(p) }
func (g *splitGater) InterceptAddrDial(p peer.ID, _ ma.Multiaddr) bool { return !g.blocked(p) }
func (g *splitGater) InterceptAccept(network.ConnMultiaddrs) bool      { return true }
func (g *splitGater) InterceptSecured(_ network.Direction, p peer.ID, _ network.ConnMultiaddrs) bool {
	return !g.blocked(p)
}
func (g *splitGater) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) {
	return true, 0
}

func incarnations(tn *testNode) map[peer.ID]uint64 {
	out := map[peer.ID]uint64{}
	for _, mb := range tn.m.Members() {
		out[mb.ID] = mb.Incarnation
	}
	return out
}

// A partition into two halves: each half declares the other dead; once
// healed, the view converges to all alive, with higher incarnations.
func TestPartitionAndHeal(t *testing.T) {
	const n = 6
	gaters := make([]*splitGater, n)
	for i := range gaters {
		gaters[i] = &splitGater{side: map[peer.ID]int{}}
	}
	nodes := newClusterWith(t, n, testCfg(), gaters)
	waitUntil(t, nodes, 30*time.Second, "convergence", func() bool { return allAlive(nodes) })
	before := incarnations(nodes[0])
	for i, g := range gaters {
		g.self = nodes[i].h.ID()
		for j, tn := range nodes {
			g.side[tn.h.ID()] = j % 2
		}
	}
	for _, g := range gaters {
		g.on.Store(true)
	}
	for i, tn := range nodes {
		for j, other := range nodes {
			if i%2 != j%2 {
				tn.h.Network().ClosePeer(other.h.ID())
			}
		}
	}
	waitUntil(t, nodes, 60*time.Second, "each half to declare the other dead", func() bool {
		for i, tn := range nodes {
			for j, other := range nodes {
				if i%2 != j%2 && stateOf(tn, other.h.ID()) != Dead {
					return false
				}
			}
		}
		return true
	})
	for _, g := range gaters {
		g.on.Store(false)
	}
	waitUntil(t, nodes, 60*time.Second, "all alive again after the heal", func() bool { return allAlive(nodes) })
	after := incarnations(nodes[0])
	for j := 1; j < n; j += 2 {
		id := nodes[j].h.ID()
		if after[id] <= before[id] {
			t.Errorf("member %d is alive again without a higher incarnation (%d -> %d)", j, before[id], after[id])
		}
	}
}

// Live members under CPU contention, for many protocol periods: nobody is
// declared dead.
func TestNoFalsePositivesUnderContention(t *testing.T) {
	if testing.Short() {
		t.Skip("long: many protocol periods of 30 nodes")
	}
	// The default probe period and timeout: what users run. (At half
	// of them, the race detector and another test package on the same
	// two cores can starve a node past its suspicion timeout.)
	cfg := testCfg()
	d := DefaultConfig()
	cfg.ProbeInterval, cfg.ProbeTimeout = d.ProbeInterval, d.ProbeTimeout
	nodes := newCluster(t, 30, cfg)
	waitUntil(t, nodes, 60*time.Second, "convergence", func() bool { return allAlive(nodes) })
	var deaths atomic.Int64
	var cancels []func()
	var watchers sync.WaitGroup
	for _, tn := range nodes {
		ch, cancel := tn.m.Subscribe(4096)
		cancels = append(cancels, cancel)
		watchers.Add(1)
		go func() {
			defer watchers.Done()
			for e := range ch {
				if e.Member.State == Dead {
					deaths.Add(1)
					t.Errorf("%s declared %s dead", tn.h.ID(), e.Member.ID)
				}
			}
		}()
	}
	// Burn one core for the whole window.
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range max(1, runtime.GOMAXPROCS(0)/2) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				for i := 0; i < 1e6; i++ {
				}
			}
		}()
	}
	// 20 protocol periods, measured by the probe loop's own clock: wait
	// for the window to pass on a timer (this is the duration of the
	// observation, not a synchronisation).
	window := time.NewTimer(20 * cfg.ProbeInterval)
	<-window.C
	stop()
	wg.Wait()
	for _, c := range cancels {
		c()
	}
	watchers.Wait()
	if d := deaths.Load(); d > 0 {
		t.Fatalf("%d false death verdicts", d)
	}
}
