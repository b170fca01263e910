package main

import "math"

// swarmBound is the least time in which every peer can hold a file of
// size bytes, for seeders uploading at seedUp and N peers uploading at
// peerUp[i] and downloading at peerDown[i] (bit/s; 0 is uncapped):
//
//	max(F/u_s, F/d_min, N·F/(u_s + Σu_i))
//
// F/u_s: the seeders must send every byte at least once (u_s is their
// total upload). F/d_min: the slowest downloader must receive all of it.
// N·F/(u_s + Σu_i): N copies must cross the total upload capacity. With
// several seeders u_s is their sum, so one peer fetching from k seeders
// (N = 1) gets F/min(u_s, d). An uncapped rate counts as infinite; the
// bound is 0 if nothing is capped.
func swarmBound(size int64, seedUp, peerUp, peerDown []int64) float64 {
	f := float64(size) * 8
	inf := math.Inf(1)
	sum := func(rates []int64) float64 {
		s := 0.0
		for _, r := range rates {
			if r == 0 {
				return inf
			}
			s += float64(r)
		}
		return s
	}
	us := sum(seedUp)
	dmin := inf
	for _, d := range peerDown {
		if d > 0 {
			dmin = min(dmin, float64(d))
		}
	}
	n := float64(len(peerDown))
	return max(f/us, f/dmin, n*f/(us+sum(peerUp)))
}
