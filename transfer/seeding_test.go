package transfer

import (
	"testing"
	"time"

	"github.com/ipfs/go-cid"
)

// showAll drives r until it shows nothing more, as a peer that is sent
// each chunk it is shown would, and returns the chunks in the order shown.
func showAll(t *testing.T, r *revealer) []int64 {
	t.Helper()
	var order []int64
	for rounds := 0; rounds <= int(r.n)+1; rounds++ {
		got := r.take()
		if len(got) == 0 {
			r.want = true // as a tick would
			if got = r.take(); len(got) == 0 {
				return order
			}
		}
		for _, i := range got {
			r.requested(i)
			r.served(i)
		}
		order = append(order, got...)
	}
	t.Fatal("shows chunks forever")
	return nil
}

// Streams of one root are shown different chunks until every chunk has
// been shown once; each is shown more as it is sent what it was shown,
// or asks for nothing for a tick; in the end each has seen every chunk
// once.
func TestRevealerSharesChunksOut(t *testing.T) {
	const n = 200
	var views seedViews
	root := cid.Cid{}
	v := views.acquire(root, n) // one reference per stream, as serve takes
	views.acquire(root, n)
	a, b := newRevealer(v, true, 2), newRevealer(v, true, 2)
	firstA, firstB := a.take(), b.take()
	if len(firstA) != revealFirst || len(firstB) != revealFirst {
		t.Fatalf("first batches: %d and %d", len(firstA), len(firstB))
	}
	seen := map[int64]bool{}
	for _, i := range append(firstA, firstB...) {
		if seen[i] {
			t.Fatalf("chunk %d shown to both first", i)
		}
		seen[i] = true
	}
	if more := a.take(); more != nil {
		t.Fatalf("shown more before asking: %v", more)
	}
	// a is sent what it was shown: it is shown more once at most one is
	// left to send.
	for k, i := range firstA {
		a.requested(i)
		more := a.served(i)
		if more != (k >= len(firstA)-2) {
			t.Fatalf("after %d of %d sent: show more = %v", k+1, len(firstA), more)
		}
	}
	more := a.take()
	if len(more) != revealBatch {
		t.Fatalf("second batch of %d, want %d", len(more), revealBatch)
	}
	for _, i := range more {
		a.requested(i)
		a.served(i)
	}
	// b leaves its chunks unasked for a whole tick: it is shown more.
	b.tick()
	if more := b.take(); len(more) == 0 {
		t.Fatal("a peer that asked for nothing was shown nothing more")
	}
	// Until every chunk has gone out once, no chunk goes out twice.
	for {
		a.want = true
		got := a.take()
		if len(got) == 0 {
			break
		}
		for _, i := range got {
			if b.known.Has(i) {
				t.Fatalf("chunk %d shown to a second peer while %d had not gone out", i, n-countKnown(v))
			}
			a.requested(i)
			a.served(i)
		}
	}
	if free := n - countKnown(v); free != 0 {
		t.Fatalf("a was shown nothing more while %d chunks had not gone out", free)
	}
	// While b asks for what it was shown, a is shown no second copies;
	// once b has been sent it all, a is.
	for i := int64(0); i < n; i++ {
		if b.shown.Has(i) {
			b.requested(i)
		}
	}
	a.want = true
	if got := a.take(); len(got) != 0 {
		t.Fatalf("second copies %v shown while the node is busy", got)
	}
	for i := int64(0); i < n; i++ {
		if b.shown.Has(i) {
			b.served(i)
		}
	}
	a.want = true
	got := a.take()
	if len(got) == 0 {
		t.Fatal("no second copies shown once the node is idle")
	}
	for _, i := range got {
		a.requested(i)
		a.served(i)
	}
	// Eventually everything, each chunk once per stream.
	for _, r := range []*revealer{a, b} {
		showAll(t, r)
		if r.shown.Count() != n {
			t.Fatalf("shown %d of %d", r.shown.Count(), n)
		}
	}
	a.close()
	b.close()
	views.release(root, v)
	views.release(root, v)
	for i, c := range v.count {
		if c != 0 {
			t.Fatalf("chunk %d still counted %d times after both streams closed", i, c)
		}
	}
	if len(views.roots) != 0 {
		t.Fatal("view kept after its streams ended")
	}
}

// countKnown returns how many chunks some stream holds or was shown.
func countKnown(v *seedView) int64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	var k int64
	for _, c := range v.count {
		if c > 0 {
			k++
		}
	}
	return k
}

// A peer is shown first what no peer holds: chunks another peer reports
// holding, or asked for while told "all", go out last.
func TestRevealerShowsRarestFirst(t *testing.T) {
	const n = 64
	var views seedViews
	v := views.acquire(cid.Cid{}, n)
	for range 3 {
		views.acquire(cid.Cid{}, n) // the streams below
	}
	all := newRevealer(v, false, 1) // a stream told "all"
	if got := all.take(); got != nil {
		t.Fatalf("a stream told all was shown %v", got)
	}
	// It asks for the first quarter; another peer reports holding the
	// second quarter.
	for i := int64(0); i < n/4; i++ {
		all.requested(i)
	}
	other := newRevealer(v, true, 3)
	for i := int64(n / 4); i < n/2; i++ {
		other.holds(i)
	}
	r := newRevealer(v, true, 3)
	order := showAll(t, r)
	// While the first stream's 16 requests wait, the node is busy: it
	// shows only the chunks nobody has.
	if int64(len(order)) != n/2 {
		t.Fatalf("shown %d chunks while busy, want the %d nobody has", len(order), n/2)
	}
	for k, i := range order {
		if i < n/2 {
			t.Fatalf("chunk %d (held or asked for elsewhere) shown %dth, before the chunks nobody has", i, k+1)
		}
	}
	// Once they are sent, the rest is shown too.
	for i := int64(0); i < n/4; i++ {
		all.served(i)
	}
	order = append(order, showAll(t, r)...)
	if int64(len(order)) != n {
		t.Fatalf("shown %d of %d", len(order), n)
	}
	// What the peer reports holding is never shown to it.
	q := newRevealer(v, true, 3)
	for i := int64(0); i < n; i += 2 {
		q.holds(i)
	}
	for _, i := range showAll(t, q) {
		if i%2 == 0 {
			t.Fatalf("chunk %d shown to the peer that holds it", i)
		}
	}
}

// A peer alone in fetching a root is shown chunks well ahead of its
// requests; a peer that comes later is shown other chunks.
func TestRevealerAlonePeerShownAhead(t *testing.T) {
	const n = 200
	var views seedViews
	v := views.acquire(cid.Cid{}, n)
	a := newRevealer(v, true, 1)
	first := a.take()
	if len(first) != aloneBatch {
		t.Fatalf("first batch of %d, want %d", len(first), aloneBatch)
	}
	// It asks for chunks; once fewer than aloneAhead are left to ask
	// for, it is shown more, before any was sent.
	for k, i := range first {
		a.requested(i)
		left := aloneBatch - (k + 1)
		if more := a.take(); (len(more) > 0) != (left < aloneAhead) {
			t.Fatalf("%d left to ask for: shown %d more", left, len(more))
		} else if len(more) > 0 {
			first = append(first, more...)
			break
		}
	}
	// A second peer comes: it is shown none of what a was shown.
	views.acquire(cid.Cid{}, n)
	b := newRevealer(v, true, 2)
	for _, i := range b.take() {
		if a.known.Has(i) {
			t.Fatalf("chunk %d shown to the newcomer and to the first peer", i)
		}
	}
	// And a, no longer alone, is shown more only when it has nearly all.
	for _, i := range first {
		a.requested(i)
	}
	if more := a.take(); len(more) != 0 {
		t.Fatalf("shown %d more with %d chunks still to send", len(more), len(first))
	}
}

// Chunks shown to a peer that asks for nothing keep others from being
// shown them for revealStale only: a stuck peer does not stall a swarm.
func TestRevealerStuckPeerDoesNotHoldOthersBack(t *testing.T) {
	const n = 20
	var views seedViews
	v := views.acquire(cid.Cid{}, n)
	views.acquire(cid.Cid{}, n)
	stuck, r := newRevealer(v, true, 2), newRevealer(v, true, 2)
	for stuck.nKnown < n/2 {
		stuck.want = true
		stuck.take()
	}
	for _, i := range showAll(t, r) {
		if stuck.shown.Has(i) {
			t.Fatalf("chunk %d shown to both while the first peer may still ask for it", i)
		}
	}
	if r.nKnown != n-stuck.nKnown {
		t.Fatalf("shown %d chunks, want the %d nobody was shown", r.nKnown, n-stuck.nKnown)
	}
	stuck.lastAsk.Store(time.Now().Add(-revealStale - time.Second).UnixNano())
	showAll(t, r)
	if r.nKnown != n {
		t.Fatalf("shown %d of %d once the other peer asked for nothing for %v", r.nKnown, n, revealStale)
	}
}
