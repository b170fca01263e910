package membership

import (
	"math"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// suspicion is Lifeguard's dynamic suspicion timer: it starts at max and
// shrinks towards min as k independent confirmations arrive, on the
// logarithmic curve of the Lifeguard paper (and memberlist).
type suspicion struct {
	mu       sync.Mutex
	from     map[peer.ID]struct{}
	k        int
	min, max time.Duration
	start    time.Time
	timer    *time.Timer
	expire   func(confirmations int)
	n        int
}

func newSuspicion(from peer.ID, k int, min, max time.Duration, expire func(int)) *suspicion {
	s := &suspicion{from: map[peer.ID]struct{}{}, k: k, min: min, max: max, start: time.Now(), expire: expire}
	if from != "" {
		s.from[from] = struct{}{}
	}
	timeout := max
	if k < 1 {
		timeout = min
	}
	s.timer = time.AfterFunc(timeout, func() {
		s.mu.Lock()
		n := s.n
		s.mu.Unlock()
		expire(n)
	})
	return s
}

// remaining is the timeout after n confirmations.
func (s *suspicion) timeout(n int) time.Duration {
	frac := math.Log(float64(n)+1) / math.Log(float64(s.k)+1)
	t := s.max - time.Duration(frac*float64(s.max-s.min))
	if t < s.min {
		t = s.min
	}
	return t
}

// confirm records an independent suspicion from p and shortens the timer.
// It reports whether p's confirmation was new.
func (s *suspicion) confirm(p peer.ID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.k < 1 || s.n >= s.k {
		return false
	}
	if _, ok := s.from[p]; ok {
		return false
	}
	s.from[p] = struct{}{}
	s.n++
	left := s.timeout(s.n) - time.Since(s.start)
	if s.timer.Stop() {
		if left <= 0 {
			left = 0
		}
		s.timer.Reset(left)
	}
	return true
}

func (s *suspicion) stop() { s.timer.Stop() }
