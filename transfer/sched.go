package transfer

import (
	"math"
	"math/rand/v2"
	"time"
)

// Chunk states in the scheduler.
const (
	chunkMissing  uint8 = iota // nobody is asked for it
	chunkAssigned              // requested from one peer (two in the endgame), or being verified
	chunkDone                  // verified and written
)

// scheduler decides which chunk to ask which peer for. It is not safe for
// concurrent use: the fetch's mutex guards it.
//
// Missing chunks sit in buckets by the number of partial holders that
// have them (peers holding everything add to every chunk alike, so they
// do not change the order): picking from the lowest bucket a peer can
// serve is rarest first. Each bucket is an indexable set with O(1) add,
// remove and random pick.
type scheduler struct {
	n       int64
	state   []uint8
	avail   []uint16 // partial holders per chunk
	pos     []int32  // index of the chunk in its bucket, -1 when not missing
	buckets [][]int64
	missing int64
	done    int64
	owners  map[int64][]*session
	rng     *rand.Rand
	chunk   int64 // chunk size in bytes, for time estimates
	now     func() time.Time
	stolen  int64 // requests taken over from a slower peer
	// urgent lists the chunks readers wait for or will read next, most
	// urgent first (read.go): they are picked before any other.
	urgent []int64
}

func newScheduler(n int64, have Bitfield) *scheduler {
	sc := &scheduler{
		n:      n,
		state:  make([]uint8, n),
		avail:  make([]uint16, n),
		pos:    make([]int32, n),
		owners: make(map[int64][]*session),
		rng:    rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
		chunk:  1 << 20,
		now:    time.Now,
	}
	sc.buckets = [][]int64{make([]int64, 0, n)}
	for i := int64(0); i < n; i++ {
		sc.pos[i] = -1
		if have.Has(i) {
			sc.state[i] = chunkDone
			sc.done++
			continue
		}
		sc.add(i)
	}
	return sc
}

func (sc *scheduler) complete() bool { return sc.done == sc.n }

// doneBits returns the verified chunks, or nil if there are none.
func (sc *scheduler) doneBits() Bitfield {
	if sc.done == 0 {
		return nil
	}
	b := NewBitfield(sc.n)
	for i, st := range sc.state {
		if st == chunkDone {
			b.Set(int64(i))
		}
	}
	return b
}

// add puts a missing chunk into its bucket.
func (sc *scheduler) add(i int64) {
	b := int(sc.avail[i])
	for len(sc.buckets) <= b {
		sc.buckets = append(sc.buckets, nil)
	}
	sc.pos[i] = int32(len(sc.buckets[b]))
	sc.buckets[b] = append(sc.buckets[b], i)
	sc.state[i] = chunkMissing
	sc.missing++
}

// remove takes a missing chunk out of its bucket.
func (sc *scheduler) remove(i int64) {
	b := sc.buckets[sc.avail[i]]
	p := sc.pos[i]
	last := b[len(b)-1]
	b[p] = last
	sc.pos[last] = p
	sc.buckets[sc.avail[i]] = b[:len(b)-1]
	sc.pos[i] = -1
	sc.missing--
}

// setAvail moves chunk i to the bucket of its new availability.
func (sc *scheduler) setAvail(i int64, a uint16) {
	if sc.state[i] == chunkMissing {
		sc.remove(i)
		sc.avail[i] = a
		sc.add(i)
		return
	}
	sc.avail[i] = a
}

// gained records that a partial holder has chunk i.
func (sc *scheduler) gained(i int64) {
	if sc.avail[i] < ^uint16(0) {
		sc.setAvail(i, sc.avail[i]+1)
	}
}

// lost records that a partial holder no longer counts for chunk i.
func (sc *scheduler) lost(i int64) {
	if sc.avail[i] > 0 {
		sc.setAvail(i, sc.avail[i]-1)
	}
}

// next picks a chunk for s, or -1. It marks the chunk assigned to s.
func (sc *scheduler) next(s *session) pick {
	if i := sc.pickMissing(s); i >= 0 {
		sc.remove(i)
		sc.state[i] = chunkAssigned
		sc.owners[i] = append(sc.owners[i], s)
		return pick{i: i}
	}
	if sc.missing > 0 {
		return pick{i: -1}
	}
	return sc.steal(s)
}

// pick is what the scheduler decided for a session: ask it for chunk i
// (none when i < 0), after cancelling the request for i at from, when
// from is not nil. The scheduler keeps its own state; the fetch applies
// the decision to the sessions.
type pick struct {
	i    int64
	from *session
}

// nextUrgent picks a chunk from the urgent list for s, or -1, and marks
// it assigned to s. With probe, s may also be asked for an urgent chunk
// no peer has shown, unless it said it lacks it: a seed reveals its
// chunks a few at a time and may not have shown the one a reader waits
// for.
func (sc *scheduler) nextUrgent(s *session, probe bool) int64 {
	i := sc.pickUrgent(s, probe)
	if i >= 0 {
		sc.remove(i)
		sc.state[i] = chunkAssigned
		sc.owners[i] = append(sc.owners[i], s)
	}
	return i
}

func (sc *scheduler) pickUrgent(s *session, probe bool) int64 {
	for _, i := range sc.urgent {
		if sc.state[i] != chunkMissing {
			continue
		}
		if s.hasChunk(i) || probe && sc.avail[i] == 0 && !s.lacks.Has(i) {
			return i
		}
	}
	return -1
}

// stealScan caps the chunks one steal looks at.
const stealScan = 128

// steal is the endgame: every chunk is asked for. s takes over a chunk
// another peer is working on when, by the peers' measured rates and
// queues, s would deliver it in less than half the time. If the slower
// peer has not started on it (it waits behind others there), its request
// is cancelled: work moves to the faster peer with no duplicate. If it
// may be on the wire already, both are asked and the loser is cancelled
// when one arrives. A peer whose rate is unknown takes nothing over; one
// that stalls is handled by the fetch's request timeout.
func (sc *scheduler) steal(s *session) pick {
	mine := s.eta(len(s.inflight), sc.chunk)
	probe := mine < 0
	if probe && len(s.inflight) > 0 {
		return pick{i: -1} // a peer not yet measured gets one chunk at a time
	}
	now := sc.now()
	best, bestGain := int64(-1), time.Duration(0)
	var bestPos int
	seen := 0
	for i, ow := range sc.owners {
		if seen >= stealScan {
			break
		}
		if len(ow) != 1 || ow[0] == s || !s.hasChunk(i) {
			continue
		}
		seen++
		o := ow[0]
		t, ok := o.inflight[i]
		if !ok {
			continue // arrived, being verified
		}
		pos := o.position(i)
		theirs := o.eta(pos, sc.chunk)
		mine := mine
		if probe {
			// Not measured yet: try it on a chunk deep in another's queue,
			// as if it were as fast as that peer.
			mine = o.eta(0, sc.chunk)
			if mine < 0 {
				mine = time.Second
			}
		}
		if theirs < 0 {
			// Nothing measured from that peer yet: only a request that has
			// waited far longer than s needs counts as late.
			if now.Sub(t) < 4*mine+time.Second || probe {
				continue
			}
			theirs = time.Duration(math.MaxInt64 / 2)
		}
		last := t
		if o.lastProg.After(last) {
			last = o.lastProg
		}
		if pos == 0 && now.Sub(last) < 2*theirs {
			// It may be on the wire already: ask a second peer only when
			// that peer is late with it (nothing delivered for twice its
			// usual time per chunk), not merely slow.
			continue
		}
		if 2*mine < theirs && theirs-mine > bestGain {
			best, bestGain, bestPos = i, theirs-mine, pos
		}
	}
	if best < 0 {
		return pick{i: -1}
	}
	o := sc.owners[best][0]
	sc.stolen++
	if bestPos > 0 {
		// Still queued behind others at the slow peer: move it.
		sc.owners[best] = []*session{s}
		return pick{i: best, from: o}
	}
	sc.owners[best] = append(sc.owners[best], s)
	return pick{i: best}
}

// pickMissing returns a missing chunk s can serve from the rarest bucket
// that has one, at random within the bucket. At the start every chunk is
// equally rare, so the first picks are random: fetchers of the same root
// hold different chunks early and can trade them at once.
func (sc *scheduler) pickMissing(s *session) int64 {
	if sc.missing == 0 {
		return -1
	}
	if i := sc.pickUrgent(s, false); i >= 0 {
		return i
	}
	for b := range sc.buckets {
		bucket := sc.buckets[b]
		if len(bucket) == 0 {
			continue
		}
		start := sc.rng.IntN(len(bucket))
		if s.all {
			return bucket[start]
		}
		for k := range bucket {
			i := bucket[(start+k)%len(bucket)]
			if s.hasChunk(i) {
				return i
			}
		}
	}
	return -1
}

// release removes s as an owner of chunk i; a chunk nobody owns any more
// goes back to the missing set unless keep is set (it arrived and is
// being verified).
func (sc *scheduler) release(i int64, s *session, keep bool) {
	ow := sc.owners[i]
	for k, o := range ow {
		if o == s {
			ow = append(ow[:k], ow[k+1:]...)
			break
		}
	}
	if len(ow) > 0 {
		sc.owners[i] = ow
		return
	}
	delete(sc.owners, i)
	if !keep && sc.state[i] == chunkAssigned {
		sc.add(i)
	}
}

// requeue puts an assigned chunk back into the missing set (its arrival
// failed verification or its write failed) unless another peer has it in
// flight.
func (sc *scheduler) requeue(i int64) {
	if sc.state[i] == chunkAssigned && len(sc.owners[i]) == 0 {
		sc.add(i)
	}
}

// finish marks chunk i done and returns the other peers that were asked
// for it; first is false if it was done already.
func (sc *scheduler) finish(i int64) (others []*session, first bool) {
	if sc.state[i] == chunkDone {
		return nil, false
	}
	if sc.state[i] == chunkMissing {
		sc.remove(i)
	}
	sc.state[i] = chunkDone
	sc.done++
	ow := sc.owners[i]
	delete(sc.owners, i)
	return ow, true
}
