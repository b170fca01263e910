package replica

import (
	"fmt"
	"slices"
	"testing"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"
)

func members(t *testing.T, n int) []peer.ID {
	t.Helper()
	out := make([]peer.ID, n)
	for i := range out {
		_, pub, err := crypto.GenerateEd25519Key(nil)
		if err != nil {
			t.Fatal(err)
		}
		if out[i], err = peer.IDFromPublicKey(pub); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func root(i int) cid.Cid {
	h, _ := mh.Sum([]byte(fmt.Sprint("root", i)), mh.SHA2_256, -1)
	return cid.NewCidV1(cid.DagCBOR, h)
}

func cands(ids []peer.ID) []Candidate {
	out := make([]Candidate, len(ids))
	for i, id := range ids {
		out[i] = Candidate{ID: id}
	}
	return out
}

// Every node computes the same placement whatever the order it lists the
// members in.
func TestPlaceIsDeterministic(t *testing.T) {
	ids := members(t, 12)
	want := Place(root(1), cands(ids), 3)
	if len(want) != 3 {
		t.Fatalf("placed %d", len(want))
	}
	rev := slices.Clone(ids)
	slices.Reverse(rev)
	if got := Place(root(1), cands(rev), 3); !slices.Equal(got, want) {
		t.Fatalf("order changed the placement: %v vs %v", got, want)
	}
	if got := Place(root(1), append(cands(ids), cands(ids[:4])...), 3); !slices.Equal(got, want) {
		t.Fatalf("duplicates changed the placement: %v vs %v", got, want)
	}
	if got := Place(root(1), cands(ids[:2]), 3); len(got) != 2 {
		t.Fatalf("two members placed as %v", got)
	}
	if Place(root(1), cands(ids), 0) != nil {
		t.Fatal("zero copies placed")
	}
}

// A member that goes away moves only its own roots, each to the next
// member in that root's order; the others keep theirs.
func TestPlaceMovesOnlyTheLostCopies(t *testing.T) {
	ids := members(t, 20)
	gone := ids[7]
	rest := slices.DeleteFunc(slices.Clone(ids), func(p peer.ID) bool { return p == gone })
	for i := range 200 {
		before := Place(root(i), cands(ids), 3)
		after := Place(root(i), cands(rest), 3)
		if !slices.Contains(before, gone) {
			if !slices.Equal(before, after) {
				t.Fatalf("root %d moved though its holders stayed: %v -> %v", i, before, after)
			}
			continue
		}
		kept := slices.DeleteFunc(slices.Clone(before), func(p peer.ID) bool { return p == gone })
		for _, p := range kept {
			if !slices.Contains(after, p) {
				t.Fatalf("root %d lost a holder that stayed: %v -> %v", i, before, after)
			}
		}
		if next := Order(root(i), rest)[2]; !slices.Contains(after, next) {
			t.Fatalf("root %d: the replacement is not the next in order", i)
		}
	}
}

// Copies spread over the members: with 20 members, 3 copies of 1000
// roots, every member holds between half and twice its share.
func TestPlaceSpreads(t *testing.T) {
	ids := members(t, 20)
	count := map[peer.ID]int{}
	for i := range 1000 {
		for _, p := range Place(root(i), cands(ids), 3) {
			count[p]++
		}
	}
	for _, id := range ids {
		if c := count[id]; c < 75 || c > 300 {
			t.Fatalf("%s holds %d copies, expected about 150", id, c)
		}
	}
}

// A full member is skipped, except for the roots it holds already.
func TestPlaceSkipsFull(t *testing.T) {
	ids := members(t, 6)
	first := Order(root(3), ids)[0]
	c := cands(ids)
	for i := range c {
		if c[i].ID == first {
			c[i].Full = true
		}
	}
	if got := Place(root(3), c, 2); slices.Contains(got, first) || len(got) != 2 {
		t.Fatalf("a full member placed: %v", got)
	}
	for i := range c {
		if c[i].ID == first {
			c[i].Holds = true
		}
	}
	if got := Place(root(3), c, 2); got[0] != first {
		t.Fatalf("a full member that holds the root lost it: %v", got)
	}
}
