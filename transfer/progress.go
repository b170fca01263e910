package transfer

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// A fetch's progress reports, checkpoints and stall checks.

// report hands p to opts.Progress. Calls never overlap (the ticker may
// still be reporting when the fetch makes its final report), and none
// follows the final one.
func (f *fetch) report(p Progress, final bool) {
	if f.opts.Progress == nil {
		return
	}
	f.reportMu.Lock()
	defer f.reportMu.Unlock()
	if f.reported {
		return
	}
	f.reported = final
	f.opts.Progress(p)
}

// ticker checkpoints progress, reports it, and takes work back from
// stalled providers.
func (f *fetch) ticker(ctx context.Context) {
	report := time.NewTicker(f.opts.ProgressInterval)
	defer report.Stop()
	check := time.NewTicker(min(f.s.cfg.CheckpointInterval, 250*time.Millisecond))
	defer check.Stop()
	lastCheckpoint := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-f.doneCh:
			return
		case now := <-report.C:
			f.sampleRate(now)
			if f.opts.Progress != nil {
				f.report(f.progress(), false)
			}
		case now := <-check.C:
			f.reclaimStalled(now)
			if now.Sub(lastCheckpoint) >= f.s.cfg.CheckpointInterval {
				lastCheckpoint = now
				if err := f.checkpoint(); err != nil {
					f.fail(fmt.Errorf("transfer: checkpoint: %w", err))
				}
			}
		}
	}
}

// reclaimStalled gives the chunks of a provider that has sent nothing of
// them for RequestTimeout to others; a provider that stalls twice in a
// row is dropped.
func (f *fetch) reclaimStalled(now time.Time) {
	f.mu.Lock()
	var dropped []*session
	for _, s := range f.sessions {
		last := s.lastProg
		if b := time.Unix(0, s.bytesAt.Load()); b.After(last) {
			last = b
		}
		if len(s.inflight) == 0 || now.Sub(last) < f.s.cfg.RequestTimeout {
			continue
		}
		s.stalls++
		for i := range s.inflight {
			f.sched.release(i, s, false)
			s.cancelLocked(i)
		}
		s.window = max(1, s.window/2)
		s.lastProg = now
		if s.stalls >= 2 {
			dropped = append(dropped, s)
		}
	}
	for _, s := range f.sessions {
		s.signal()
	}
	f.mu.Unlock()
	for _, s := range dropped {
		f.drop(s, fmt.Errorf("stalled: nothing delivered for %v, twice", f.s.cfg.RequestTimeout), false)
	}
}

func (f *fetch) progress() Progress {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := Progress{
		Root: f.root, Phase: f.phase, Resumed: f.resumed, Durable: f.durable, Received: f.received,
		Duplicates: f.duplicates, Elapsed: time.Since(f.started),
		FirstProvider: time.Duration(f.firstPeer.Load()), Manifest: f.manifestAt,
	}
	if f.traced {
		p.Trace = f.span.SpanContext().TraceID().String()
	}
	if f.m != nil {
		p.Name = f.m.Name
		p.Total = f.m.Size
		p.TotalChunks = f.m.NumChunks()
	}
	if f.sched != nil {
		p.Chunks = f.sched.done
		p.Bytes = f.held
	}
	for id, st := range f.stats {
		pp := *st
		if s := f.sessions[id]; s != nil {
			pp.Inflight = len(s.inflight)
		}
		if secs := p.Elapsed.Seconds(); secs > 0 {
			pp.Rate = float64(pp.Bytes) / secs
		}
		p.Peers = append(p.Peers, pp)
	}
	slices.SortFunc(p.Peers, func(a, b PeerProgress) int { return int(b.Bytes - a.Bytes) })
	p.Rate = f.rate
	if f.rateAt.IsZero() {
		if secs := p.Elapsed.Seconds(); secs > 0 {
			p.Rate = float64(p.Received) / secs
		}
	}
	return p
}

// sampleRate updates the fetch's recent receive rate, a moving average
// over about a second of the ticker's samples.
func (f *fetch) sampleRate(now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.rateAt.IsZero() {
		if d := now.Sub(f.rateAt).Seconds(); d > 0 {
			inst := float64(f.received-f.rateRecv) / d
			a := min(1, d) // a second's samples make the average
			f.rate = (1-a)*f.rate + a*inst
		}
	}
	f.rateAt, f.rateRecv = now, f.received
}
