package replica

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"slices"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Score is the rendezvous (highest random weight) score of member for
// root: the first 8 bytes of SHA-256(root || member). Every node computes
// the same scores, so every node agrees on who should hold a root without
// asking anyone.
func Score(root cid.Cid, member peer.ID) uint64 {
	h := sha256.New()
	h.Write(root.Bytes())
	h.Write([]byte(member))
	var sum [sha256.Size]byte
	return binary.BigEndian.Uint64(h.Sum(sum[:0]))
}

// Order returns members sorted by their score for root, highest first
// (ties, which need a SHA-256 collision in 64 bits, by ID).
func Order(root cid.Cid, members []peer.ID) []peer.ID {
	type scored struct {
		id    peer.ID
		score uint64
	}
	s := make([]scored, len(members))
	for i, m := range members {
		s[i] = scored{m, Score(root, m)}
	}
	slices.SortFunc(s, func(a, b scored) int {
		switch {
		case a.score > b.score:
			return -1
		case a.score < b.score:
			return 1
		}
		return bytes.Compare([]byte(a.id), []byte(b.id))
	})
	out := make([]peer.ID, len(s))
	for i := range s {
		out[i] = s[i].id
	}
	return out
}

// Candidate is a member that may hold replicas.
type Candidate struct {
	ID peer.ID
	// Full: its store takes no new replica. A full member keeps the
	// replicas it holds.
	Full bool
	// Holds: it holds a complete copy of the root.
	Holds bool
}

// Place returns the members that should hold n copies of root: the n
// highest-scoring candidates, skipping full ones that do not hold it
// already. Candidates are the live members that store replicas; the same
// candidates give the same answer on every node.
func Place(root cid.Cid, cands []Candidate, n int) []peer.ID {
	if n <= 0 {
		return nil
	}
	byID := make(map[peer.ID]Candidate, len(cands))
	ids := make([]peer.ID, 0, len(cands))
	for _, c := range cands {
		if _, dup := byID[c.ID]; !dup {
			ids = append(ids, c.ID)
		}
		byID[c.ID] = c
	}
	var out []peer.ID
	for _, id := range Order(root, ids) {
		if c := byID[id]; c.Full && !c.Holds {
			continue
		}
		out = append(out, id)
		if len(out) == n {
			break
		}
	}
	return out
}
