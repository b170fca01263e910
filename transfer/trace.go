package transfer

import (
	"context"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/shoalnet/shoal/transfer/wire"
)

// Tracing (OpenTelemetry). A fetch is the span "shoal.transfer", under
// whatever span its context carries (the node's "shoal.fetch"). Under it:
// "shoal.manifest" while the manifest is fetched, and "shoal.chunk" for
// every chunk request, from the request until the chunk is written or the
// request given up, with the provider, the chunk and its bytes, an event
// when the answer's first byte came, and children "shoal.verify" and
// "shoal.write" (disk). Requests carry the chunk span's context
// (wire.Trace), and the serving peer records "shoal.serve_chunk" (or
// "shoal.serve_block") under it, with children "shoal.read" (disk) and
// "shoal.send" (the write into the stream, which blocks while the
// fetcher's flow-control window is full, and the upload limit's wait).
// So one trace shows which peer served which chunk and where the time
// went, on both sides.
//
// Nothing of this costs anything when the fetch's span is not recording
// (no tracer provider, or not sampled): no spans are made and requests
// carry no context. A server makes spans only for requests that carry
// one.

// tracerName names the tracer of this package.
const tracerName = "github.com/shoalnet/shoal/transfer"

// Attribute keys.
const (
	attrRoot  = attribute.Key("shoal.root")
	attrPeer  = attribute.Key("shoal.peer")
	attrChunk = attribute.Key("shoal.chunk")
	attrBytes = attribute.Key("shoal.bytes")
)

// toWire is sc as a wire.Trace; the zero Trace (not sent) when sc is not
// a sampled span's context.
func toWire(sc trace.SpanContext) wire.Trace {
	if !sc.IsValid() || !sc.IsSampled() {
		return wire.Trace{}
	}
	return wire.Trace{TraceID: sc.TraceID(), SpanID: sc.SpanID(), Flags: byte(sc.TraceFlags())}
}

// fromWire is the remote span context a request carried.
func fromWire(t wire.Trace) trace.SpanContext {
	return trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: t.TraceID, SpanID: t.SpanID, TraceFlags: trace.TraceFlags(t.Flags), Remote: true,
	})
}

// startChunkSpan begins the span of a request for chunk i of s's
// provider, made at now (f.mu held; only when f.traced).
func (s *session) startChunkSpan(i int64, now time.Time) wire.Trace {
	f := s.f
	if old := s.spans[i]; old != nil {
		old.End()
	}
	_, span := f.s.tracer.Start(trace.ContextWithSpan(context.Background(), f.span), "shoal.chunk",
		trace.WithSpanKind(trace.SpanKindClient), trace.WithTimestamp(now),
		trace.WithAttributes(attrPeer.String(s.p.String()), attrChunk.Int64(i), attrBytes.Int64(f.m.ChunkLen(i))))
	if s.spans == nil {
		s.spans = make(map[int64]trace.Span)
	}
	s.spans[i] = span
	return toWire(span.SpanContext())
}

// takeSpanLocked removes and returns the span of the request for chunk
// i, nil if there is none (f.mu held).
func (s *session) takeSpanLocked(i int64) trace.Span {
	span := s.spans[i]
	if span != nil {
		delete(s.spans, i)
	}
	return span
}

// endSpanLocked ends the span of the request for chunk i, which came to
// nothing for the reason given (f.mu held).
func (s *session) endSpanLocked(i int64, why string) {
	if span := s.takeSpanLocked(i); span != nil {
		span.SetStatus(codes.Error, why)
		span.End()
	}
}

// endSpansLocked ends every span of the session's requests (f.mu held).
func (s *session) endSpansLocked(why string) {
	for i := range s.spans {
		s.endSpanLocked(i, why)
	}
}

// childSpan records a finished phase [from, to] of span's work.
func (s *Service) childSpan(span trace.Span, name string, from, to time.Time, err error) {
	_, c := s.tracer.Start(trace.ContextWithSpan(context.Background(), span), name, trace.WithTimestamp(from))
	if err != nil {
		c.SetStatus(codes.Error, err.Error())
	}
	c.End(trace.WithTimestamp(to))
}

// endChunkSpan ends an arrived chunk's span: duplicate chunks and errors
// say so.
func endChunkSpan(span trace.Span, err error, duplicate bool) {
	if span == nil {
		return
	}
	if duplicate {
		span.SetAttributes(attribute.Bool("shoal.duplicate", true))
	}
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// serveSpan begins the serving side's span of req, a child of the
// fetcher's span it carries; ctx is returned as is (and end does
// nothing) when it carries none.
func (s *Service) serveSpan(ctx context.Context, req request, root cid.Cid, p peer.ID) (context.Context, func(error)) {
	t := req.trace
	if req.block {
		t = req.c.Trace
	}
	if !t.Valid() {
		return ctx, noEnd // the common case: nothing to make, on every request
	}
	name := "shoal.serve_chunk"
	attrs := []attribute.KeyValue{attrRoot.String(root.String()), attrPeer.String(p.String())}
	if req.block {
		name = "shoal.serve_block"
		attrs = append(attrs, attribute.String("shoal.block", req.c.CID.String()))
	} else {
		attrs = append(attrs, attrChunk.Int64(int64(req.id)))
	}
	ctx, span := s.tracer.Start(trace.ContextWithRemoteSpanContext(ctx, fromWire(t)), name,
		trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attrs...))
	return ctx, func(err error) {
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}

func noEnd(error) {}

// phase begins a child span of ctx's span, if that records; the function
// returned ends it.
func (s *Service) phase(ctx context.Context, name string) func(error) {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return noEnd
	}
	_, span := s.tracer.Start(ctx, name)
	return func(err error) {
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}

// answered notes on ctx's span that a request was answered with an
// Error message.
func answered(ctx context.Context, m *wire.Msg) {
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.SetStatus(codes.Error, "answered "+m.Code.String()+": "+m.Text)
	}
}
