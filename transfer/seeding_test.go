package transfer

import "testing"

// Streams of one root are shown different chunks first; each is shown
// more as it asks for what it was shown, or asks for nothing for a tick;
// in the end each has seen every chunk.
func TestRevealerSharesChunksOut(t *testing.T) {
	const n = 200
	seq := &seedSeq{}
	a, b := newRevealer(seq, n, 2), newRevealer(seq, n, 2)
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
	if more := a.take(); len(more) != revealBatch {
		t.Fatalf("second batch of %d, want %d", len(more), revealBatch)
	}
	// b leaves its chunks unasked for a whole tick: it is shown more.
	b.tick()
	if more := b.take(); len(more) == 0 {
		t.Fatal("a peer that asked for nothing was shown nothing more")
	}
	// Eventually everything, each chunk once per stream.
	for _, r := range []*revealer{a, b} {
		got := map[int64]bool{}
		for i := int64(0); i < n; i++ {
			if r.shown.Has(i) {
				got[i] = true
			}
		}
		for rounds := 0; r.nShown < n; rounds++ {
			if rounds > n {
				t.Fatal("never shows everything")
			}
			r.tick()
			r.tick()
			for i := int64(0); i < n; i++ {
				if r.shown.Has(i) && !r.asked.Has(i) {
					r.requested(i)
					r.served(i)
				}
			}
			for _, i := range r.take() {
				if got[i] {
					t.Fatalf("chunk %d shown twice", i)
				}
				got[i] = true
			}
		}
		if len(got) != n {
			t.Fatalf("shown %d of %d", len(got), n)
		}
	}
}
