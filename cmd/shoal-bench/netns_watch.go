package main

import (
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/shoalnet/shoal/transfer"
)

// What the testbed watches while the fetches run: their progress and the
// fetching daemon's memory.

// liveProgress holds the latest progress report of every fetch, for
// --progress.
type liveProgress struct {
	mu      sync.Mutex
	latest  []transfer.Progress
	names   sourceNames
	seedIDs []string
}

func newLiveProgress(n int, names sourceNames, seedIDs []string) *liveProgress {
	return &liveProgress{latest: make([]transfer.Progress, n), names: names, seedIDs: seedIDs}
}

func (l *liveProgress) set(i int, p transfer.Progress) {
	l.mu.Lock()
	l.latest[i] = p
	l.mu.Unlock()
}

// print prints a summary line every interval until the returned function
// is called.
func (l *liveProgress) print(w io.Writer, interval time.Duration, t0 time.Time) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			l.mu.Lock()
			var total, fromPeers, minB, maxB, dups int64
			var inflight, sources, dropped int
			minB = -1
			for _, p := range l.latest {
				total += p.Bytes
				dups += p.Duplicates
				_, fp := splitSources(p, l.names, l.seedIDs)
				fromPeers += fp
				if minB < 0 || p.Bytes < minB {
					minB = p.Bytes
				}
				maxB = max(maxB, p.Bytes)
				for _, pp := range p.Peers {
					inflight += pp.Inflight
					if pp.Active {
						sources++
					}
					if pp.Error != "" {
						dropped++
					}
				}
			}
			l.mu.Unlock()
			fmt.Fprintf(w, "  %6.1fs: %d fetches hold %.0f MB (each %.1f to %.1f MB), %.0f MB of it from peers; %d active sources, %d requests in flight, %d dropped, %d duplicate chunks\n",
				time.Since(t0).Seconds(), len(l.latest), float64(total)/1e6, float64(minB)/1e6, float64(maxB)/1e6, float64(fromPeers)/1e6, sources, inflight, dropped, dups)
		}
	})
	return func() { close(done); wg.Wait() }
}

// fill records the final progress of a fetch.
func (c *Completion) fill(p transfer.Progress, names sourceNames, seedIDs []string) {
	c.FetchReported = p.Elapsed.Seconds()
	c.Received = p.Received
	c.Duplicates = p.Duplicates
	c.FromSeeders, c.FromPeers = splitSources(p, names, seedIDs)
	c.BySource = map[string]int64{}
	for _, pp := range p.Peers {
		if pp.Bytes > 0 {
			c.BySource[names.name(pp.Peer.String())] += pp.Bytes
		}
		if pp.Error != "" {
			if c.Dropped == nil {
				c.Dropped = map[string]string{}
			}
			c.Dropped[names.name(pp.Peer.String())] = pp.Error
		}
	}
}

// splitSources adds up the verified bytes from the seeders and from
// everyone else.
func splitSources(p transfer.Progress, names sourceNames, seedIDs []string) (fromSeeders, fromPeers int64) {
	for _, pp := range p.Peers {
		if slices.Contains(seedIDs, pp.Peer.String()) {
			fromSeeders += pp.Bytes
		} else {
			fromPeers += pp.Bytes
		}
	}
	return fromSeeders, fromPeers
}

// sampleMem records the process's memory every 200 ms until the returned
// function is called.
func (e *tbEnv) sampleMem(pid int, run *TestbedRun) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	t0 := time.Now()
	wg.Go(func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			if m, err := readMemStatus(pid); err == nil {
				run.MemSamples = append(run.MemSamples, MemSample{T: time.Since(t0).Seconds(), VmRSS: m.VmRSS, RssAnon: m.RssAnon, RssFile: m.RssFile})
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	})
	return func() { close(done); wg.Wait() }
}
