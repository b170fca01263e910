package node

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/shoalnet/shoal/node/catalog"
	"github.com/shoalnet/shoal/node/internal/strictcbor"
	"github.com/shoalnet/shoal/node/membership"
)

// The topology: each member says, when asked on the sync protocol (first
// byte PeersRequest), which members it is connected to; Topology asks
// every live member and joins the answers into one graph.

// PeersRequest is the first byte of a request for a member's connected
// members on catalog.SyncProtocol.
const PeersRequest byte = 3

// maxPeersAnswer caps the peers one answer lists, and its size.
const (
	maxPeersAnswer      = 1024
	maxPeersAnswerBytes = 64 << 10
)

// peersAnswer is the answer: the binary peer IDs of the members this
// member is connected to.
type peersAnswer struct {
	Peers [][]byte `cbor:"p"`
}

var peersDecMode = strictcbor.Dec(4, maxPeersAnswer)

// decodePeers parses an answer; every entry must be a peer ID.
func decodePeers(data []byte) ([]peer.ID, error) {
	if len(data) > maxPeersAnswerBytes {
		return nil, fmt.Errorf("node: peers answer of %d bytes exceeds %d", len(data), maxPeersAnswerBytes)
	}
	var a peersAnswer
	if err := peersDecMode.Unmarshal(data, &a); err != nil {
		return nil, fmt.Errorf("node: peers answer: %w", err)
	}
	out := make([]peer.ID, 0, len(a.Peers))
	for _, b := range a.Peers {
		id, err := peer.IDFromBytes(b)
		if err != nil {
			return nil, fmt.Errorf("node: peers answer: %w", err)
		}
		out = append(out, id)
	}
	return out, nil
}

// connectedMembers lists the members this node is connected to.
func (n *Node) connectedMembers() []peer.ID {
	var out []peer.ID
	for _, m := range n.members.Members() {
		if m.ID != n.h.ID() && n.h.Network().Connectedness(m.ID) == network.Connected {
			out = append(out, m.ID)
		}
	}
	return out
}

// servePeers answers a PeersRequest.
func (n *Node) servePeers(s network.Stream) {
	defer s.Close()
	var a peersAnswer
	for _, id := range n.connectedMembers() {
		if len(a.Peers) == maxPeersAnswer {
			break
		}
		a.Peers = append(a.Peers, []byte(id))
	}
	data, err := strictcbor.Enc.Marshal(a)
	if err != nil {
		s.Reset()
		return
	}
	s.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := s.Write(data); err != nil {
		s.Reset()
	}
}

// askPeers asks p which members it is connected to.
func (n *Node) askPeers(ctx context.Context, p peer.ID) ([]peer.ID, error) {
	s, err := n.h.NewStream(network.WithAllowLimitedConn(ctx, "topology"), p, catalog.SyncProtocol)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	if d, ok := ctx.Deadline(); ok {
		s.SetDeadline(d)
	}
	if _, err := s.Write([]byte{PeersRequest}); err != nil {
		s.Reset()
		return nil, err
	}
	s.CloseWrite()
	data, err := io.ReadAll(io.LimitReader(s, maxPeersAnswerBytes+1))
	if err != nil {
		s.Reset()
		return nil, err
	}
	return decodePeers(data)
}

// GraphNode is a member in the topology.
type GraphNode struct {
	ID    peer.ID          `json:"id"`
	Name  string           `json:"name,omitempty"`
	State membership.State `json:"state"`
	// Unknown: it did not say whom it is connected to (not reachable from
	// here, dead, or too old to answer); its edges are those others gave.
	Unknown bool `json:"unknown,omitempty"`
}

// Graph is the network's topology as this node can see it now: the
// members, and an edge between two members that are connected.
type Graph struct {
	Nodes []GraphNode  `json:"nodes"`
	Edges [][2]peer.ID `json:"edges"` // each once, lower ID first
}

// Topology asks every live member whom it is connected to (at most 16 at
// once, each within 3 s) and returns the graph.
func (n *Node) Topology(ctx context.Context) (Graph, error) {
	members := n.members.Members()
	var g Graph
	edges := make(map[[2]peer.ID]bool)
	add := func(a, b peer.ID) {
		if a == b {
			return
		}
		if b < a {
			a, b = b, a
		}
		edges[[2]peer.ID{a, b}] = true
	}
	known := make(map[peer.ID]bool)
	for _, m := range members {
		known[m.ID] = true
	}
	var mu sync.Mutex // edges and unknown, written by the askers
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	unknown := make(map[peer.ID]bool)
	for _, m := range members {
		if m.ID == n.h.ID() {
			mu.Lock()
			for _, p := range n.connectedMembers() {
				add(m.ID, p)
			}
			mu.Unlock()
			continue
		}
		if m.State != membership.Alive && m.State != membership.Suspect {
			unknown[m.ID] = true
			continue
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			actx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			peers, err := n.askPeers(actx, m.ID)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				unknown[m.ID] = true
				return
			}
			for _, p := range peers {
				if known[p] {
					add(m.ID, p)
				}
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return g, err
	}
	for _, m := range members {
		g.Nodes = append(g.Nodes, GraphNode{ID: m.ID, Name: m.Meta.Name, State: m.State, Unknown: unknown[m.ID]})
	}
	for e := range edges {
		g.Edges = append(g.Edges, e)
	}
	slices.SortFunc(g.Nodes, func(a, b GraphNode) int { return cmp.Compare(a.ID, b.ID) })
	slices.SortFunc(g.Edges, func(a, b [2]peer.ID) int {
		return cmp.Or(cmp.Compare(a[0], b[0]), cmp.Compare(a[1], b[1]))
	})
	return g, nil
}
