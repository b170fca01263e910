package node

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/shoalnet/shoal/node/internal/strictcbor"
	"github.com/shoalnet/shoal/node/membership"
)

func FuzzDecodePeers(f *testing.F) {
	good, _ := strictcbor.Enc.Marshal(peersAnswer{Peers: [][]byte{[]byte(peer.ID("\x00\x24\x08\x01\x12\x20" + string(make([]byte, 32))))}})
	f.Add(good)
	f.Add([]byte{0xa1, 0x61, 'p', 0x80})
	f.Add([]byte{0xa1, 0x61, 'p', 0x9a, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		ids, err := decodePeers(data)
		if err != nil {
			return
		}
		if len(ids) > maxPeersAnswer {
			t.Fatalf("%d peers decoded", len(ids))
		}
		for _, id := range ids {
			if err := id.Validate(); err != nil {
				t.Fatalf("invalid peer ID accepted: %v", err)
			}
		}
	})
}

// Three members, all connected to each other: the graph has the three and
// the three edges between them, from any of them; a crashed one stays a
// node, marked unknown, with no edge left to it.
func TestTopology(t *testing.T) {
	nodes := replCluster(t, 3, func(int, *Config) {})
	waitFor(t, 30*time.Second, "a full mesh", func() bool {
		for _, a := range nodes {
			if len(a.connectedMembers()) != 2 {
				return false
			}
		}
		return true
	})
	g, err := nodes[1].Topology(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Nodes) != 3 || len(g.Edges) != 3 {
		t.Fatalf("graph %+v", g)
	}
	for _, e := range g.Edges {
		if e[0] >= e[1] {
			t.Fatalf("edge %v not in order", e)
		}
	}
	crash(nodes[2])
	gone := nodes[2].ID()
	waitFor(t, 30*time.Second, "the crash seen", func() bool {
		for _, m := range nodes[0].Members() {
			if m.ID == gone {
				return m.State == membership.Dead
			}
		}
		return false
	})
	g, err = nodes[0].Topology(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(g.Nodes, func(n GraphNode) bool { return n.ID == gone })
	if i < 0 || !g.Nodes[i].Unknown || g.Nodes[i].State != membership.Dead {
		t.Fatalf("crashed member in the graph: %+v", g.Nodes)
	}
	for _, e := range g.Edges {
		if e[0] == gone || e[1] == gone {
			t.Fatalf("an edge to the crashed member: %v", g.Edges)
		}
	}
}
