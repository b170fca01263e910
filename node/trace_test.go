package node

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// Two nodes, one fetch: the fetch is one trace, from the provider
// search to the chunks, and the serving node's spans are in it.
func TestFetchTrace(t *testing.T) {
	traced := func() (func(*Config), *tracetest.InMemoryExporter) {
		exp := tracetest.NewInMemoryExporter()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
		t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
		return func(c *Config) { c.TracerProvider = tp }, exp
	}
	withA, spansA := traced()
	withB, spansB := traced()
	a, b := newTestNode(t, withA), newTestNode(t, withB)
	src := randomFile(t, t.TempDir(), "data.bin", 3<<20)
	ctx := context.Background()
	root, err := a.Share(ctx, src, ShareOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Fetch(ctx, root, filepath.Join(t.TempDir(), "copy.bin"), FetchOptions{Peers: []peer.AddrInfo{a.AddrInfo()}, NoDHT: true}); err != nil {
		t.Fatal(err)
	}
	// Spans end before Close returns.
	b.Close()
	a.Close()

	var fetch *tracetest.SpanStub
	names := map[string]int{}
	fetched := spansB.GetSpans()
	for i, s := range fetched {
		names[s.Name]++
		if s.Name == "shoal.fetch" {
			fetch = &fetched[i]
		}
	}
	if fetch == nil || fetch.Parent.IsValid() {
		t.Fatalf("no root span shoal.fetch among the fetcher's: %v", names)
	}
	tid := fetch.SpanContext.TraceID()
	for _, s := range fetched {
		if s.SpanContext.TraceID() != tid {
			t.Errorf("fetcher's span %s is in another trace", s.Name)
		}
		switch s.Name {
		case "shoal.find_providers", "shoal.transfer":
			if s.Parent.SpanID() != fetch.SpanContext.SpanID() {
				t.Errorf("%s is not under shoal.fetch", s.Name)
			}
		}
		if s.Name == "shoal.find_providers" {
			if len(s.Events) != 1 || s.Events[0].Name != "provider" {
				t.Errorf("provider search events %+v, want one provider", s.Events)
			}
		}
	}
	if names["shoal.find_providers"] != 1 || names["shoal.transfer"] != 1 || names["shoal.chunk"] < 3 {
		t.Errorf("fetcher's spans %v", names)
	}
	served := 0
	for _, s := range spansA.GetSpans() {
		if s.Name != "shoal.serve_chunk" {
			continue
		}
		served++
		if s.SpanContext.TraceID() != tid {
			t.Errorf("serving node's span has trace %s, want the fetcher's %s", s.SpanContext.TraceID(), tid)
		}
	}
	if served != 3 {
		t.Errorf("serving node recorded %d chunks served, want 3", served)
	}
}
