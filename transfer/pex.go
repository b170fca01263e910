package transfer

import (
	"bytes"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/shoalnet/shoal/transfer/wire"
)

// Peer exchange. A node that serves a root tells each peer fetching it
// about the other peers fetching it (and about the peers it fetches it
// from itself), so that fetchers find each other at once and trade the
// chunks they already hold, whatever found them first: the catalog, the
// DHT or an explicit address.

const (
	// pexInterval is how often a serving stream sends a fresh peer list
	// when the set changed.
	pexInterval = 2 * time.Second
	// maxPEXPeers caps the peers one fetch adds from peer exchange.
	maxPEXPeers = 64
)

// pexSet tracks, per root, the peers this node serves it to.
type pexSet struct {
	mu    sync.Mutex
	roots map[cid.Cid]*pexRoot
}

type pexRoot struct {
	peers   map[peer.ID]int // open serving streams per peer
	version uint64
}

func (x *pexSet) join(root cid.Cid, p peer.ID) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.roots == nil {
		x.roots = make(map[cid.Cid]*pexRoot)
	}
	r := x.roots[root]
	if r == nil {
		r = &pexRoot{peers: make(map[peer.ID]int)}
		x.roots[root] = r
	}
	if r.peers[p] == 0 {
		r.version++
	}
	r.peers[p]++
}

func (x *pexSet) leave(root cid.Cid, p peer.ID) {
	x.mu.Lock()
	defer x.mu.Unlock()
	r := x.roots[root]
	if r == nil {
		return
	}
	r.peers[p]--
	if r.peers[p] <= 0 {
		delete(r.peers, p)
		r.version++
	}
	if len(r.peers) == 0 {
		delete(x.roots, root)
	}
}

// version returns a number that changes when root's peer set changes.
func (x *pexSet) version(root cid.Cid) uint64 {
	x.mu.Lock()
	defer x.mu.Unlock()
	if r := x.roots[root]; r != nil {
		return r.version
	}
	return 0
}

// list returns up to wire.MaxPeers peers to tell p about: those fetching
// root from this node and those this node fetches root from, p and this
// node excluded, in random order.
func (s *Service) pexList(root cid.Cid, p peer.ID) []wire.PeerAddrs {
	seen := map[peer.ID]bool{p: true}
	if s.h != nil {
		seen[s.h.ID()] = true
	}
	var ids []peer.ID
	s.pex.mu.Lock()
	if r := s.pex.roots[root]; r != nil {
		for q := range r.peers {
			if !seen[q] {
				seen[q] = true
				ids = append(ids, q)
			}
		}
	}
	s.pex.mu.Unlock()
	for _, q := range s.fetchPeers(root) {
		if !seen[q] {
			seen[q] = true
			ids = append(ids, q)
		}
	}
	rand.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	if len(ids) > wire.MaxPeers {
		ids = ids[:wire.MaxPeers]
	}
	out := make([]wire.PeerAddrs, 0, len(ids))
	for _, q := range ids {
		pa := wire.PeerAddrs{ID: []byte(q)}
		if s.h != nil {
			for _, a := range s.h.Peerstore().Addrs(q) {
				if len(pa.Addrs) == wire.MaxPeerAddrs {
					break
				}
				if b := a.Bytes(); len(b) <= 128 {
					pa.Addrs = append(pa.Addrs, b)
				}
			}
		}
		out = append(out, pa)
	}
	return out
}

// fetchesLocked returns this node's fetches of root (s.mu held).
func (s *Service) fetchesLocked(root cid.Cid) []*fetch {
	var fs []*fetch
	for _, f := range s.active {
		if f.root.Equals(root) {
			fs = append(fs, f)
		}
	}
	return fs
}

// fetchesOf returns this node's fetches of root.
func (s *Service) fetchesOf(root cid.Cid) []*fetch {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fetchesLocked(root)
}

// fetchPeers returns the providers of this node's fetches of root.
func (s *Service) fetchPeers(root cid.Cid) []peer.ID {
	var out []peer.ID
	for _, f := range s.fetchesOf(root) {
		f.mu.Lock()
		for q := range f.sessions {
			out = append(out, q)
		}
		f.mu.Unlock()
	}
	return out
}

// knowsLocked reports whether p is or was a provider of f (f.mu held).
func (f *fetch) knowsLocked(p peer.ID) bool {
	return f.sessions[p] != nil || f.attempts[p] > 0 || f.banned[p]
}

// onPeers adds the peers a provider told us about as providers.
func (f *fetch) onPeers(from peer.ID, peers []wire.PeerAddrs) {
	for _, pa := range peers {
		id, err := peer.IDFromBytes(bytes.Clone(pa.ID))
		if err != nil || id == from {
			continue
		}
		f.mu.Lock()
		known := f.knowsLocked(id)
		full := f.pexAdded >= maxPEXPeers
		if !known && !full {
			f.pexAdded++
		}
		f.mu.Unlock()
		if known || full {
			continue
		}
		if f.s.h != nil && id != f.s.h.ID() {
			var addrs []ma.Multiaddr
			for _, b := range pa.Addrs {
				if a, err := ma.NewMultiaddrBytes(bytes.Clone(b)); err == nil {
					addrs = append(addrs, a)
				}
			}
			if len(addrs) > 0 {
				f.s.h.Peerstore().AddAddrs(id, addrs, peerstore.TempAddrTTL)
			}
		}
		f.addPeer(f.ctx, id)
	}
}

// fetchCount returns a figure that changes when this node's fetches of
// root gain or lose providers.
func (s *Service) fetchCount(root cid.Cid) int {
	return len(s.fetchPeers(root))
}

// addProviderToFetches adds p as a provider to this node's fetches of
// root.
func (s *Service) addProviderToFetches(root cid.Cid, p peer.ID) {
	for _, f := range s.fetchesOf(root) {
		f.mu.Lock()
		known := f.knowsLocked(p)
		f.mu.Unlock()
		if !known && f.ctx != nil {
			f.addPeer(f.ctx, p)
		}
	}
}

// count returns how many peers this node serves root to.
func (x *pexSet) count(root cid.Cid) int {
	x.mu.Lock()
	defer x.mu.Unlock()
	if r := x.roots[root]; r != nil {
		return len(r.peers)
	}
	return 0
}
