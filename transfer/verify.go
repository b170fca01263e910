package transfer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ipfs/go-cid"
	"go.opentelemetry.io/otel/trace"

	"github.com/shoalnet/shoal/transfer/manifest"
	"github.com/shoalnet/shoal/transfer/wire"
)

// Verifying what providers send: manifest blocks and chunks, and dropping
// a provider that sends bad data.

// fetchManifest gets and verifies the manifest from the providers.
func (f *fetch) fetchManifest(ctx context.Context) (*manifest.Manifest, error) {
	blocks := make(map[cid.Cid][]byte)
	get := func(ctx context.Context, c cid.Cid) ([]byte, error) {
		var errs []error
		for attempt := 0; attempt < 8; attempt++ {
			s, err := f.readySession(ctx)
			if err != nil {
				return nil, errors.Join(append(errs, err)...)
			}
			f.mu.Lock()
			f.nextBlockID++
			id := f.nextBlockID
			f.mu.Unlock()
			data, err := s.getBlock(ctx, id, wire.Msg{Type: wire.TGetBlock, ID: id, CID: c})
			if err == nil {
				if err := verifyBlock(c, data); err != nil {
					f.bad(s, err)
					errs = append(errs, err)
					continue
				}
				blocks[c] = data
				return data, nil
			}
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			errs = append(errs, err)
			f.drop(s, fmt.Errorf("manifest: %w", err), false)
		}
		return nil, errors.Join(errs...)
	}
	m, err := manifest.Load(ctx, f.root, get)
	if err != nil {
		if errors.Is(err, ErrNoProviders) || errors.Is(err, ErrDenied) || ctx.Err() != nil {
			return nil, err
		}
		return nil, fmt.Errorf("transfer: manifest of %s: %w", f.root, err)
	}
	if err := putBlocks(f.s.db, blocks); err != nil {
		return nil, fmt.Errorf("transfer: store manifest: %w", err)
	}
	return m, nil
}

// verifyBlock checks that data hashes to c.
func verifyBlock(c cid.Cid, data []byte) error {
	got, err := c.Prefix().Sum(data)
	if err != nil {
		return err
	}
	if !got.Equals(c) {
		return fmt.Errorf("%w: %s", manifest.ErrHashMismatch, c)
	}
	return nil
}

// readySession waits for a provider that has answered Open.
func (f *fetch) readySession(ctx context.Context) (*session, error) {
	for {
		f.mu.Lock()
		var ready []*session
		for _, s := range f.sessions {
			if s.ready && s.dead == nil {
				ready = append(ready, s)
			}
		}
		f.mu.Unlock()
		if len(ready) > 0 {
			// Spread the few manifest blocks over the ready providers.
			return ready[int(f.nextID())%len(ready)], nil
		}
		select {
		case <-f.ready:
		case err := <-f.fatal:
			f.fail(err) // keep it for run
			return nil, err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (f *fetch) nextID() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.nextBlockID
}

// bad drops a provider that sent data failing verification.
func (f *fetch) bad(s *session, err error) {
	f.s.counts.bad.Add(1)
	f.s.log.Warn("provider sent bad data; dropped for this fetch", "root", f.root, "peer", s.p, "err", err)
	f.drop(s, fmt.Errorf("sent bad data: %w", err), true)
	if f.opts.OnBadPeer != nil {
		f.opts.OnBadPeer(s.p, err)
	}
}

// badChunk drops a provider whose chunk i failed verification, telling it
// first: a provider whose file was changed in place learns it, checks
// the chunk itself and stops serving stale bytes.
func (f *fetch) badChunk(s *session, i int64, err error) {
	s.tell(wire.Msg{Type: wire.TError, About: wire.AboutChunk, Ref: uint64(i), Code: wire.CodeCorrupt,
		Text: "the chunk failed verification here"})
	f.bad(s, fmt.Errorf("chunk %d: %w", i, err))
}

// verifier checks arriving chunks and writes the good ones.
func (f *fetch) verifier(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case a := <-f.arrivals:
			f.accept(a)
		}
	}
}

func (f *fetch) accept(a arrival) {
	if a.p != nil {
		// Its readers go on from buf; they find the chunk held once
		// it is written, or here while it is.
		defer a.p.release()
		defer f.src.endPartial(a.p, false)
	} else {
		defer f.s.putBuf(a.buf)
	}
	data := *a.buf
	var (
		err       error
		duplicate bool
	)
	if a.span != nil {
		a.span.AddEvent("first byte", trace.WithTimestamp(a.firstByte))
		defer func() { endChunkSpan(a.span, err, duplicate) }()
	}
	f.mu.Lock()
	already := f.sched.state[a.i] == chunkDone
	f.mu.Unlock()
	if already {
		f.mu.Lock()
		f.duplicates++
		f.mu.Unlock()
		f.s.counts.duplicates.Add(1)
		duplicate = true
		return
	}
	if a.p == nil { // else verified group by group on arrival
		t0 := time.Now()
		err = f.m.Verify(a.i, data)
		if a.span != nil {
			f.s.childSpan(a.span, "shoal.verify", t0, time.Now(), err)
		}
		if err != nil {
			f.mu.Lock()
			f.sched.requeue(a.i)
			f.mu.Unlock()
			f.badChunk(a.s, a.i, err)
			return
		}
	}
	t0 := time.Now()
	err = f.files.writeChunk(a.i, data)
	if a.span != nil {
		f.s.childSpan(a.span, "shoal.write", t0, time.Now(), err)
	}
	if err != nil {
		f.fail(fmt.Errorf("transfer: %w", err))
		return
	}
	f.mu.Lock()
	losers, first := f.sched.finish(a.i)
	if !first {
		f.duplicates++
		f.mu.Unlock()
		f.s.counts.duplicates.Add(1)
		duplicate = true
		return
	}
	f.held += int64(len(data))
	f.s.counts.chunksFetched.Add(1)
	f.s.counts.bytesFetched.Add(int64(len(data)))
	if !a.askedAt.IsZero() && f.s.log.Enabled(context.Background(), slog.LevelDebug) {
		// Where a chunk's time went: waiting for its first byte (the
		// provider's queue and the round trip), then arriving and being
		// verified. shoal-bench chunktrace reads these.
		now := time.Now()
		f.s.log.Debug("chunk verified", "root", f.root, "chunk", a.i, "peer", a.s.p,
			"wait", a.firstByte.Sub(a.askedAt), "transfer", now.Sub(a.firstByte))
	}
	st := f.stats[a.s.p]
	st.Bytes += int64(len(data))
	st.Chunks++
	a.s.bytes += int64(len(data))
	a.s.chunks++
	for _, o := range losers {
		if o != a.s {
			o.cancelLocked(a.i)
		}
	}
	complete := f.sched.complete()
	f.mu.Unlock()
	// Served from here first, then told: a provider told may ask for it.
	f.src.acquired(a.i)
	f.mu.Lock()
	for _, o := range f.sessions {
		if o.st != nil && o.dead == nil {
			o.haves = append(o.haves, a.i)
			o.signal()
		}
	}
	f.mu.Unlock()
	if complete {
		select {
		case <-f.doneCh:
		default:
			close(f.doneCh)
		}
	}
}
