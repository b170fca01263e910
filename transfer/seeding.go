package transfer

import (
	"math/rand/v2"
	"sync"

	"github.com/ipfs/go-cid"
)

// Initial seeding. A node holding a whole root that several peers fetch
// at once would, if it told each of them "I have everything", send the
// same chunks to many of them: each picks at random among the chunks no
// other peer holds yet, and they cannot see each other's requests to it.
// Its upload, which bounds the whole swarm, would carry each chunk several
// times. So when a peer opens a stream for a root that other peers are
// fetching from it too, the node reveals its chunks to that peer a few
// at a time, drawing them from one sequence shared by all its streams of
// the root: the first pass gives each chunk to one peer, the next to a
// second, and so on. The peers then trade what they got. A peer that has
// been sent nearly all it was shown, or leaves shown chunks unasked for a
// while (it got them from other peers), is shown more. The first batch
// is smaller the more peers share the root, so that the first pass gives
// every peer something different. (BitTorrent's "super-seeding" follows
// the same idea.)

const (
	revealFirst = 8 // chunks shown at first, at most
	revealBatch = 4 // chunks shown each time a peer has asked for all it was shown
)

// seedSeq is the sequence a root's chunks are revealed in, shared by the
// node's streams of that root.
type seedSeq struct {
	mu   sync.Mutex
	next int64
}

// seedSeqs holds the sequences by root.
type seedSeqs struct {
	mu    sync.Mutex
	roots map[cid.Cid]*seedSeq
}

func (x *seedSeqs) get(root cid.Cid) *seedSeq {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.roots == nil {
		x.roots = make(map[cid.Cid]*seedSeq)
	}
	q := x.roots[root]
	if q == nil {
		// Seeders of one root start at different places in it.
		q = &seedSeq{next: rand.Int64N(1 << 40)}
		x.roots[root] = q
	}
	return q
}

// revealer is one stream's view of initial seeding.
type revealer struct {
	seq *seedSeq
	n   int64

	mu         sync.Mutex
	shown      Bitfield
	nShown     int64
	asked      Bitfield
	sent       Bitfield
	unasked    int64 // shown, not asked for yet
	unsent     int64 // shown, not sent yet
	batch      int64
	askedSince bool  // a request came since the last tick
	fill       int64 // chunks below it were all shown (the in-order fill)
	want       bool  // the writer should show more
}

// newRevealer returns a stream's revealer for a root of n chunks that
// streams peers fetch from this node.
func newRevealer(seq *seedSeq, n int64, streams int) *revealer {
	first := min(revealFirst, max(1, n/int64(2*max(1, streams))))
	return &revealer{seq: seq, n: n, shown: NewBitfield(n), asked: NewBitfield(n), sent: NewBitfield(n), batch: first, want: true}
}

// requested notes a request for chunk i.
func (r *revealer) requested(i int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.askedSince = true
	if r.shown.Has(i) && !r.asked.Has(i) {
		r.asked.Set(i)
		r.unasked--
	}
}

// served notes that chunk i went to the peer; when little of what it
// was shown is left to send, it is shown more. It reports whether the
// writer should show more now.
func (r *revealer) served(i int64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.shown.Has(i) && !r.sent.Has(i) {
		r.sent.Set(i)
		r.unsent--
	}
	if !r.want && r.unsent <= 1 && r.nShown < r.n {
		r.want = true
	}
	return r.want
}

// tick is called now and then: a peer that left shown chunks unasked for
// a whole tick has likely found them elsewhere; show it more.
func (r *revealer) tick() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.askedSince && r.unasked > 0 && r.nShown < r.n {
		r.want = true
	}
	r.askedSince = false
}

// take returns the chunks to show next (nil if none are due).
func (r *revealer) take() []int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.want || r.nShown >= r.n {
		r.want = false
		return nil
	}
	r.want = false
	var out []int64
	r.seq.mu.Lock()
	for tries := int64(0); int64(len(out)) < r.batch && r.nShown < r.n && tries < 4*r.batch+64; tries++ {
		i := r.seq.next % r.n
		r.seq.next++
		if r.shown.Has(i) {
			continue
		}
		r.shown.Set(i)
		r.nShown++
		r.unasked++
		r.unsent++
		out = append(out, i)
	}
	r.seq.mu.Unlock()
	// The shared sequence may skip this stream's chunks for a whole
	// pass; fill the batch from the rest in order.
	for ; int64(len(out)) < r.batch && r.fill < r.n && r.nShown < r.n; r.fill++ {
		if i := r.fill; !r.shown.Has(i) {
			r.shown.Set(i)
			r.nShown++
			r.unasked++
			r.unsent++
			out = append(out, i)
		}
	}
	r.batch = revealBatch // the first batch only is sized by the crowd
	return out
}
