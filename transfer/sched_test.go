package transfer

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

func testSession(all bool, n int64, have ...int64) *session {
	s := &session{all: all, inflight: map[int64]time.Time{}, cancelled: map[int64]int{}, kick: make(chan struct{}, 1)}
	if !all {
		s.have = NewBitfield(n)
		for _, i := range have {
			s.have.Set(i)
		}
	}
	return s
}

// addPartial registers a partial holder's chunks with the scheduler.
// nextFor asks sc for s's next chunk and applies the decision as the
// fetch does (a chunk moved from another peer is cancelled there).
func nextFor(sc *scheduler, s *session) int64 {
	p := sc.next(s)
	if p.from != nil {
		p.from.cancelLocked(p.i)
	}
	return p.i
}

func addPartial(sc *scheduler, s *session) {
	for i := int64(0); i < sc.n; i++ {
		if s.have.Has(i) {
			sc.gained(i)
		}
	}
}

func TestSchedulerRarestFirst(t *testing.T) {
	const n = 100
	sc := newScheduler(n, nil)
	seeder := testSession(true, n)
	a := testSession(false, n, 0, 1, 2, 3, 4)
	b := testSession(false, n, 0, 1, 2)
	addPartial(sc, a)
	addPartial(sc, b)
	// Chunks 0-2 are held by both partial peers, 3-4 by one, the rest by
	// the seeder alone: the seeder is asked for what only it has.
	for k := 0; k < n-5; k++ {
		i := nextFor(sc, seeder)
		if i < 5 {
			t.Fatalf("seeder was given chunk %d while rarer ones were missing", i)
		}
	}
	// a is asked for its rarest chunks (3, 4) before the common ones.
	got := map[int64]bool{nextFor(sc, a): true, nextFor(sc, a): true}
	if !got[3] || !got[4] {
		t.Fatalf("partial peer picked %v, want its rarest chunks 3 and 4", got)
	}
	for k := 0; k < 3; k++ {
		if i := nextFor(sc, b); i < 0 || i > 2 {
			t.Fatalf("b picked %d, which it does not hold", i)
		}
	}
	if sc.missing != 0 {
		t.Fatalf("%d chunks still missing", sc.missing)
	}
}

func TestSchedulerNoDuplicatesBeforeEndgame(t *testing.T) {
	const n = 1000
	sc := newScheduler(n, nil)
	peers := []*session{testSession(true, n), testSession(true, n), testSession(true, n)}
	seen := make(map[int64]bool)
	for k := 0; sc.missing > 0; k++ {
		i := nextFor(sc, peers[k%3])
		if seen[i] {
			t.Fatalf("chunk %d assigned twice while chunks were still missing", i)
		}
		seen[i] = true
	}
	if len(seen) != n {
		t.Fatalf("assigned %d of %d", len(seen), n)
	}
}

func TestSchedulerEndgameSteals(t *testing.T) {
	const n = 4
	sc := newScheduler(n, nil)
	slow, fast := testSession(true, n), testSession(true, n)
	slow.rate, fast.rate = 1<<20, 100<<20 // 1 and 100 MiB/s
	t0 := time.Now()
	for k := range n {
		i := nextFor(sc, slow)
		slow.inflight[i] = t0.Add(time.Duration(k) * time.Millisecond)
	}
	// A peer with nothing measured takes one chunk over, from deep in
	// slow's queue (moved, not duplicated), and no more until measured.
	unknown := testSession(true, n)
	probe := nextFor(sc, unknown)
	if probe < 0 || len(sc.owners[probe]) != 1 {
		t.Fatalf("probe chunk %d, owners %d", probe, len(sc.owners[probe]))
	}
	unknown.inflight[probe] = time.Now()
	if i := nextFor(sc, unknown); i >= 0 {
		t.Fatalf("second chunk %d given to a peer of unknown rate", i)
	}
	sc.release(probe, unknown, false)
	delete(unknown.inflight, probe)
	// Back to slow, as the fetch would on the probe's failure.
	sc.remove(probe)
	sc.state[probe] = chunkAssigned
	sc.owners[probe] = []*session{slow}
	slow.inflight[probe] = t0.Add(time.Hour)
	slow.cancels = nil
	sc.stolen = 0
	// fast takes over the chunks still queued at slow: they move (slow is
	// told to cancel them), no duplicate. slow's head may be on the wire:
	// it stays with slow while slow is on time.
	slow.lastProg = time.Now()
	var got []int64
	for {
		i := nextFor(sc, fast)
		if i < 0 {
			break
		}
		fast.inflight[i] = time.Now()
		got = append(got, i)
	}
	if len(got) != n-1 || len(slow.cancels) != n-1 || sc.stolen != n-1 {
		t.Fatalf("fast took %d chunks (want %d), cancels %d, stolen %d", len(got), n-1, len(slow.cancels), sc.stolen)
	}
	for _, i := range got {
		if len(sc.owners[i]) != 1 {
			t.Fatalf("chunk %d has %d owners", i, len(sc.owners[i]))
		}
		if _, still := slow.inflight[i]; still {
			t.Fatalf("chunk %d moved but still in flight at slow", i)
		}
	}
	// slow falls silent: its head is late, and fast is asked too.
	slow.lastProg = time.Now().Add(-time.Hour)
	for i := range slow.inflight {
		slow.inflight[i] = time.Now().Add(-time.Hour)
	}
	head := nextFor(sc, fast)
	if head < 0 || len(sc.owners[head]) != 2 {
		t.Fatalf("late head: chunk %d", head)
	}
	got = append(got, head)
	third := testSession(true, n)
	third.rate = 1000 << 20
	for range n {
		if i := nextFor(sc, third); i >= 0 && len(sc.owners[i]) > 2 {
			t.Fatalf("chunk %d has %d owners", i, len(sc.owners[i]))
		}
	}
	losers, first := sc.finish(got[0])
	if !first || len(losers) == 0 {
		t.Fatalf("finish: first=%v owners=%d", first, len(losers))
	}
	if _, again := sc.finish(got[0]); again {
		t.Fatal("a chunk finished twice")
	}
}

// A peer that would not deliver clearly sooner takes nothing over: here
// the last chunk is the head of a peer about as fast.
func TestSchedulerNoStealFromEqualPeer(t *testing.T) {
	const n = 1
	sc := newScheduler(n, nil)
	a, b := testSession(true, n), testSession(true, n)
	a.rate, b.rate = 10<<20, 12<<20
	a.inflight[nextFor(sc, a)] = time.Now()
	if i := nextFor(sc, b); i >= 0 {
		t.Fatalf("chunk %d stolen by a peer barely faster", i)
	}
}

func TestSchedulerReleaseReturnsWork(t *testing.T) {
	const n = 10
	sc := newScheduler(n, nil)
	gone, other := testSession(true, n), testSession(true, n)
	var mine []int64
	for range 5 {
		mine = append(mine, nextFor(sc, gone))
	}
	for _, i := range mine {
		sc.release(i, gone, false)
	}
	if sc.missing != n {
		t.Fatalf("missing %d after release, want %d", sc.missing, n)
	}
	for range n {
		if nextFor(sc, other) < 0 {
			t.Fatal("released chunk not reassigned")
		}
	}
}

func TestSchedulerResumeSkipsHeld(t *testing.T) {
	const n = 16
	have := NewBitfield(n)
	for i := int64(0); i < n; i += 2 {
		have.Set(i)
	}
	sc := newScheduler(n, have)
	if sc.done != n/2 || sc.missing != n/2 {
		t.Fatalf("done %d missing %d", sc.done, sc.missing)
	}
	s := testSession(true, n)
	for range n / 2 {
		if i := nextFor(sc, s); i%2 == 0 {
			t.Fatalf("held chunk %d scheduled", i)
		}
	}
}

// The cost of scheduling a chunk must not grow with the chunks already
// done: pick, finish, repeat over 10,000 chunks and 50 peers.
func BenchmarkSchedulerNext(b *testing.B) {
	const n, peers = 10000, 50
	b.ReportAllocs()
	for b.Loop() {
		sc := newScheduler(n, nil)
		ss := make([]*session, peers)
		for k := range ss {
			if k%2 == 0 {
				ss[k] = testSession(true, n)
			} else {
				ss[k] = testSession(false, n)
				for i := int64(k); i < n; i += 3 {
					ss[k].have.Set(i)
				}
				addPartial(sc, ss[k])
			}
		}
		for k := 0; !sc.complete(); k++ {
			s := ss[k%peers]
			if i := nextFor(sc, s); i >= 0 {
				sc.release(i, s, true)
				sc.finish(i)
			}
		}
	}
}

// BenchmarkSchedulerNextAtDone measures one scheduling decision (pick a
// chunk for a peer, then give it back) with 10,000 chunks and 50 peers,
// half of them holding every third chunk, at several fractions of the
// chunks already done. The cost must not grow with the done fraction:
// compare each sub-benchmark's ns/op with done=0.
func BenchmarkSchedulerNextAtDone(b *testing.B) {
	const n, peers = 10000, 50
	for _, done := range []int64{0, 5000, 9000, 9900} {
		b.Run(fmt.Sprintf("done=%d", done), func(b *testing.B) {
			// The done chunks are a random set, as a fetch leaves them.
			have := NewBitfield(n)
			for _, i := range rand.New(rand.NewPCG(1, 2)).Perm(n)[:done] {
				have.Set(int64(i))
			}
			sc := newScheduler(n, have)
			ss := make([]*session, peers)
			for k := range ss {
				if k%2 == 0 {
					ss[k] = testSession(true, n)
					continue
				}
				ss[k] = testSession(false, n)
				for i := int64(k); i < n; i += 3 {
					ss[k].have.Set(i)
				}
				addPartial(sc, ss[k])
			}
			b.ReportAllocs()
			k := 0
			for b.Loop() {
				s := ss[k%peers]
				k++
				if i := nextFor(sc, s); i >= 0 {
					sc.release(i, s, false)
				}
			}
		})
	}
}

// A provider's window holds about windowQueue of its measured rate, plus
// 2: a slow or shared provider is asked for little beyond its next chunk,
// a fast one for as much as MaxWindow.
func TestWindowLimit(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		rate float64 // bytes/s
		want int
	}{
		{0, 64},            // not measured yet: the window grows from InitialWindow
		{170e3, 2},         // one of 15 providers sharing a 20 Mbit/s download
		{2.5e6, 2},         // a 20 Mbit/s link alone
		{12.5e6, 4},        // 100 Mbit/s: 0.25 s is 2.98 chunks
		{600e6, 64},        // loopback: capped
		{40 * mib * 4, 42}, // 160 MiB/s: 40 chunks in 0.25 s
	} {
		s := &session{rate: c.rate}
		if got := s.windowLimit(64, mib); got != c.want {
			t.Errorf("rate %.0f B/s: window limit %d, want %d", c.rate, got, c.want)
		}
	}
}
