package transfer

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"
)

// Initial seeding. A node holding a whole root that several peers fetch
// at once would, if it told each of them "I have everything", send the
// same chunks to many of them: each picks among the chunks no other peer
// holds yet, and they cannot see each other's requests to it. Its upload,
// which bounds the whole swarm, would carry each chunk several times.
//
// So the node keeps a view of the swarm it serves: for each chunk, how
// many of the peers it has streams with hold it (fetchers tell their
// providers each chunk they verify) or have been shown it by this node.
// When a peer opens a stream for the root, the node reveals its chunks to
// that peer a few at a time, each time the ones the fewest of its peers
// hold or were shown: first every chunk goes to one peer, and the peers
// trade what they got; the node's upload goes to what nobody else can
// give. A peer is shown more when what it was shown is nearly all sent or
// held, or when it leaves shown chunks unasked for a while (it is busy
// elsewhere). A peer alone in fetching the root from this node is shown
// far ahead of its requests, so that a fast link never waits for a
// showing. BitTorrent's "super-seeding" follows the same idea.
//
// A root of at most aloneBatch chunks is not worth revealing: its peers
// are told the node holds everything. Their requests and the chunks they
// report still count in the view, so that the peers revealed to later do
// not get the same chunks.

const (
	revealFirst = 8 // chunks shown at first, at most
	revealBatch = 4 // chunks shown each time a peer has nearly all it was shown

	// A peer alone in fetching the root from this node is shown at least
	// aloneBatch chunks whenever fewer than aloneAhead of those it was
	// shown, or fewer than it has asked for and not received (its
	// window), are left for it to ask for, so that its requests never
	// wait for a showing; it is not told "all", so that peers that come
	// later are not sent what it was.
	aloneBatch = 16
	aloneAhead = 8
)

// seedView is a complete source's view of the peers it serves a root to:
// for each chunk, how many of them hold it or were shown it.
type seedView struct {
	mu    sync.Mutex
	n     int64
	count []int32
	next  int64 // where the next search starts, so streams spread out
	refs  int   // streams using the view (changed with seedViews.mu held too)
	// queued counts the chunks asked of this node and not yet sent or
	// found elsewhere.
	queued  int64
	streams map[*revealer]struct{}
}

// busy returns the work this node's upload has ahead of it: the chunks
// asked of it and not yet sent, and those shown to peers that ask for
// what they are shown (v.mu held). Chunks shown to a peer that has asked
// for nothing lately do not count: a stuck peer must not keep others
// from being shown them.
func (v *seedView) busy(now time.Time, self *revealer) int64 {
	b := v.queued
	for r := range v.streams {
		if r != self && now.UnixNano()-r.lastAsk.Load() < int64(revealStale) {
			b += r.unasked.Load()
		}
	}
	return b
}

// revealStale is how long a peer that asks for nothing keeps its shown
// chunks counted as work ahead.
const revealStale = 2 * time.Second

// busyQueue is how much work ahead (see busy) keeps this node from
// showing a chunk that some peer already holds or was shown: while its
// upload is busy with chunks nobody else has, a second copy would only
// delay them.
const busyQueue = 1

// seedViews holds the views by root while streams use them.
type seedViews struct {
	mu    sync.Mutex
	roots map[cid.Cid]*seedView
}

// acquire returns root's view for a root of n chunks; release it when the
// stream ends.
func (x *seedViews) acquire(root cid.Cid, n int64) *seedView {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.roots == nil {
		x.roots = make(map[cid.Cid]*seedView)
	}
	v := x.roots[root]
	if v == nil || v.n != n {
		// Seeders of one root start at different places in it.
		v = &seedView{n: n, count: make([]int32, n), next: rand.Int64N(max(1, n))}
		x.roots[root] = v
	}
	v.mu.Lock()
	v.refs++
	v.mu.Unlock()
	return v
}

func (x *seedViews) release(root cid.Cid, v *seedView) {
	x.mu.Lock()
	defer x.mu.Unlock()
	v.mu.Lock()
	v.refs--
	gone := v.refs == 0
	v.mu.Unlock()
	if gone && x.roots[root] == v {
		delete(x.roots, root)
	}
}

// revealer is one stream's part in the view: what its peer holds or was
// shown, and, when it reveals, what to show it next.
type revealer struct {
	v      *seedView
	n      int64
	reveal bool // chunks are shown a few at a time (else the peer was told "all")

	mu         sync.Mutex
	known      Bitfield // held or shown: counted in v.count
	nKnown     int64
	held       Bitfield // sent by this node, or the peer said it holds it
	shown      Bitfield
	pending    int64        // shown, not held
	unasked    atomic.Int64 // shown, neither asked for nor held (read by other streams' busy)
	lastAsk    atomic.Int64 // unix ns of the last request, or of the stream's start
	asked      Bitfield
	queued     int64 // asked, not held: this stream's part of v.queued
	batch      int64
	fresh, dup int64 // chunks sent that no other peer held or was shown, and others
	askedSince bool  // a request came since the last tick
	want       bool  // the writer should show more
	closed     bool
}

// newRevealer returns a stream's part in view v. With reveal, the stream
// is shown chunks a few at a time, the first batch sized for the number
// of streams the root has here.
func newRevealer(v *seedView, reveal bool, streams int) *revealer {
	n := v.n
	first := min(revealFirst, max(1, n/int64(2*max(1, streams))))
	if streams <= 1 {
		first = aloneBatch
	}
	r := &revealer{
		v: v, n: n, reveal: reveal,
		known: NewBitfield(n), held: NewBitfield(n), shown: NewBitfield(n), asked: NewBitfield(n),
		batch: first, want: reveal,
	}
	r.lastAsk.Store(time.Now().UnixNano())
	v.mu.Lock()
	if v.streams == nil {
		v.streams = make(map[*revealer]struct{})
	}
	v.streams[r] = struct{}{}
	v.mu.Unlock()
	return r
}

// knowLocked counts chunk i for this stream's peer in the view (r.mu held).
func (r *revealer) knowLocked(i int64) {
	if r.known.Has(i) || r.closed {
		return
	}
	r.known.Set(i)
	r.nKnown++
	r.v.mu.Lock()
	r.v.count[i]++
	r.v.mu.Unlock()
}

// holdLocked records that the peer holds chunk i (r.mu held).
func (r *revealer) holdLocked(i int64) {
	if r.held.Has(i) {
		return
	}
	r.held.Set(i)
	r.knowLocked(i)
	if r.asked.Has(i) && !r.closed {
		r.queued--
		r.v.mu.Lock()
		r.v.queued--
		r.v.mu.Unlock()
	}
	if r.shown.Has(i) {
		r.pending--
		if !r.asked.Has(i) {
			r.unasked.Add(-1)
		}
	}
	r.checkWantLocked()
}

// checkWantLocked sets r.want when the peer should be shown more (r.mu
// held).
func (r *revealer) checkWantLocked() {
	if !r.reveal || r.want || r.nKnown >= r.n || r.closed {
		return
	}
	if r.pending <= 1 || (r.unasked.Load() < max(aloneAhead, r.queued) && r.alone()) {
		r.want = true
	}
}

// alone reports whether the peer is the only one this node serves the
// root to.
func (r *revealer) alone() bool {
	r.v.mu.Lock()
	defer r.v.mu.Unlock()
	return r.v.refs == 1
}

// holds records that the peer says it holds chunk i (i < n). It reports
// whether the writer should show more now.
func (r *revealer) holds(i int64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.holdLocked(i)
	return r.want
}

// requested notes a request for chunk i (i < n).
func (r *revealer) requested(i int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.askedSince = true
	r.lastAsk.Store(time.Now().UnixNano())
	// A peer told "all" will hold what it asks for: count it now, so that
	// it is not revealed to others as if nobody had it.
	r.knowLocked(i)
	if r.asked.Has(i) || r.held.Has(i) {
		return
	}
	if r.shown.Has(i) {
		r.unasked.Add(-1)
	}
	r.asked.Set(i)
	if !r.closed {
		r.queued++
		r.v.mu.Lock()
		r.v.queued++
		r.v.mu.Unlock()
	}
	r.checkWantLocked()
}

// served notes that chunk i went to the peer. It reports whether the
// writer should show more now.
func (r *revealer) served(i int64) bool {
	r.mu.Lock()
	r.v.mu.Lock()
	others := r.v.count[i]
	r.v.mu.Unlock()
	if r.known.Has(i) {
		others--
	}
	if others > 0 {
		r.dup++
	} else {
		r.fresh++
	}
	r.holdLocked(i)
	want := r.want
	r.mu.Unlock()
	return want
}

// sent returns how many chunks went to the peer that no other peer held
// or was shown, and how many others.
func (r *revealer) sent() (fresh, dup int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.fresh, r.dup
}

// tick is called now and then: a peer that left shown chunks unasked for
// a whole tick is busy elsewhere or found them elsewhere; show it more.
func (r *revealer) tick() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reveal && !r.askedSince && r.unasked.Load() > 0 && r.nKnown < r.n {
		r.want = true
	}
	r.askedSince = false
}

// take returns the chunks to show next (nil if none are due): those the
// peer neither holds nor was shown that the fewest peers hold or were
// shown.
func (r *revealer) take() []int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.want || !r.reveal || r.nKnown >= r.n || r.closed {
		r.want = false
		return nil
	}
	batch := r.batch
	if r.alone() {
		// Enough that the peer can fill its window again without waiting.
		batch = max(aloneBatch, r.queued+aloneAhead)
	}
	out, held := r.v.pick(r, r.known, batch)
	// Chunks others have are held back while this node is busy: keep
	// wanting, to show them when it is not.
	r.want = held
	for _, i := range out {
		// Counted by pick; not held, since held chunks are known.
		r.known.Set(i)
		r.nKnown++
		r.shown.Set(i)
		r.pending++
		r.unasked.Add(1)
	}
	r.batch = revealBatch // the first batch only is sized by the crowd
	return out
}

// close takes the stream's peer out of the view.
func (r *revealer) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.closed = true
	r.v.mu.Lock()
	for i := int64(0); i < r.n; i++ {
		if r.known.Has(i) {
			r.v.count[i]--
		}
	}
	r.v.queued -= r.queued
	delete(r.v.streams, r)
	r.v.mu.Unlock()
}

// pick returns up to k chunks not in known (self's) with the lowest
// counts, and counts them. The search starts where the last one left
// off, so that among equally rare chunks each stream gets different ones.
// While the other streams keep this node busy (see busy), only chunks no
// peer holds or was shown are picked; held reports whether others were
// left out for that.
func (v *seedView) pick(self *revealer, known Bitfield, k int64) (out []int64, held bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.n == 0 || k <= 0 {
		return nil, false
	}
	// best holds the k rarest candidates so far, in the order met; a
	// rarer one replaces the commonest.
	best := make([]int64, 0, k)
	worst := func() int {
		w := 0
		for j := range best {
			if v.count[best[j]] > v.count[best[w]] {
				w = j
			}
		}
		return w
	}
	start := v.next % v.n
	var last int64 = -1
	for d := int64(0); d < v.n; d++ {
		i := (start + d) % v.n
		if known.Has(i) {
			continue
		}
		if int64(len(best)) < k {
			best = append(best, i)
		} else if w := worst(); v.count[i] < v.count[best[w]] {
			best[w] = i
		} else {
			continue
		}
		last = i
		if int64(len(best)) == k && v.count[best[worst()]] == 0 {
			break // nothing is rarer than held by none
		}
	}
	if last >= 0 {
		v.next = last + 1
	}
	if v.busy(time.Now(), self) >= busyQueue {
		fresh := best[:0]
		for _, i := range best {
			if v.count[i] == 0 {
				fresh = append(fresh, i)
			}
		}
		held = len(fresh) < len(best)
		best = fresh
	}
	for _, i := range best {
		v.count[i]++
	}
	return best, held
}
