package transfer

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/shoalnet/shoal/transfer/manifest"
)

// tracedService is a Service whose spans land in the exporter returned,
// each as it ends.
func tracedService(t *testing.T, sampler sdktrace.Sampler) (*Service, *tracetest.InMemoryExporter, peer.AddrInfo) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithSampler(sampler))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	s, h := newHostServiceWith(t, func(c *Config) { c.TracerProvider = tp })
	return s, exp, peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()}
}

func attrOf(s tracetest.SpanStub, k attribute.Key) attribute.Value {
	for _, kv := range s.Attributes {
		if kv.Key == k {
			return kv.Value
		}
	}
	return attribute.Value{}
}

// tracedFetch shares chunks chunks on a seed and fetches them, each
// service tracing with its own sampler; both are closed when it returns,
// so every span has ended and been exported.
func tracedFetch(t *testing.T, seedSampler, fetchSampler sdktrace.Sampler, chunks int) (seedSpans, fetchSpans *tracetest.InMemoryExporter, seedID peer.ID) {
	t.Helper()
	seed, seedSpans, seedInfo := tracedService(t, seedSampler)
	fetcher, fetchSpans, _ := tracedService(t, fetchSampler)
	if err := fetcher.h.Connect(context.Background(), seedInfo); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(path, randomBytes(chunks*manifest.MinChunkSize, uint64(chunks)), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rec, err := seed.Share(ctx, path, ShareOptions{Build: manifest.BuildOptions{ChunkSize: manifest.MinChunkSize}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fetcher.Fetch(ctx, rec.Root, filepath.Join(t.TempDir(), "copy"), FetchOptions{Peers: []peer.ID{seedInfo.ID}}); err != nil {
		t.Fatal(err)
	}
	// Every span ends before its service's Close returns.
	fetcher.Close()
	seed.Close()
	return seedSpans, fetchSpans, seedInfo.ID
}

// A traced fetch is one trace across both peers: every chunk request is
// a span of the fetcher's, and the serving peer records its answer to it
// as a child span, with the disk read and the send under that.
func TestTraceAcrossPeers(t *testing.T) {
	const chunks = 4
	seedSpans, fetchSpans, seedID := tracedFetch(t, sdktrace.AlwaysSample(), sdktrace.AlwaysSample(), chunks)

	byName := func(spans tracetest.SpanStubs) map[string][]tracetest.SpanStub {
		m := map[string][]tracetest.SpanStub{}
		for _, s := range spans {
			m[s.Name] = append(m[s.Name], s)
		}
		return m
	}
	fs, ss := byName(fetchSpans.GetSpans()), byName(seedSpans.GetSpans())
	if len(fs["shoal.transfer"]) != 1 || len(fs["shoal.manifest"]) != 1 {
		t.Fatalf("fetcher's spans: %d transfer, %d manifest; want 1 of each", len(fs["shoal.transfer"]), len(fs["shoal.manifest"]))
	}
	root := fs["shoal.transfer"][0].SpanContext
	tid := root.TraceID()

	// The fetcher: one span per chunk, under the fetch, naming the
	// provider, each with its verification and write.
	requests := map[trace.SpanID]int64{}
	for _, s := range fs["shoal.chunk"] {
		if s.SpanContext.TraceID() != tid || s.Parent.SpanID() != root.SpanID() {
			t.Errorf("chunk span %s is not under the fetch's span", s.SpanContext.SpanID())
		}
		if got := attrOf(s, attrPeer).AsString(); got != seedID.String() {
			t.Errorf("chunk span's peer %q, want %s", got, seedID)
		}
		requests[s.SpanContext.SpanID()] = attrOf(s, attrChunk).AsInt64()
	}
	if len(requests) != chunks {
		t.Fatalf("%d chunk spans, want %d", len(requests), chunks)
	}
	for _, phase := range []string{"shoal.verify", "shoal.write"} {
		under := map[trace.SpanID]bool{}
		for _, s := range fs[phase] {
			under[s.Parent.SpanID()] = true
		}
		for id := range requests {
			if !under[id] {
				t.Errorf("chunk span %s has no %s child", id, phase)
			}
		}
	}

	// The seed: every request answered under the fetcher's span that
	// made it, in the fetcher's trace.
	served := map[int64]bool{}
	for _, s := range ss["shoal.serve_chunk"] {
		if s.SpanContext.TraceID() != tid {
			t.Fatalf("served chunk's trace %s, want the fetcher's %s", s.SpanContext.TraceID(), tid)
		}
		i, ok := requests[s.Parent.SpanID()]
		if !ok || !s.Parent.IsRemote() {
			t.Fatalf("served chunk's parent %s is none of the fetcher's chunk spans", s.Parent.SpanID())
		}
		if got := attrOf(s, attrChunk).AsInt64(); got != i {
			t.Errorf("seed served chunk %d under the request for chunk %d", got, i)
		}
		served[i] = true
	}
	if len(served) != chunks {
		t.Fatalf("seed's spans cover %d chunks, want %d", len(served), chunks)
	}
	for _, phase := range []string{"shoal.read", "shoal.send"} {
		under := map[trace.SpanID]bool{}
		for _, s := range ss[phase] {
			under[s.Parent.SpanID()] = true
		}
		for _, s := range ss["shoal.serve_chunk"] {
			if !under[s.SpanContext.SpanID()] {
				t.Errorf("served chunk %d has no %s child", attrOf(s, attrChunk).AsInt64(), phase)
			}
		}
	}
	manifestID := fs["shoal.manifest"][0].SpanContext.SpanID()
	if len(ss["shoal.serve_block"]) == 0 {
		t.Error("no span for the manifest blocks served")
	}
	for _, s := range ss["shoal.serve_block"] {
		if s.SpanContext.TraceID() != tid || s.Parent.SpanID() != manifestID {
			t.Errorf("served block's parent %s, want the fetcher's manifest span %s", s.Parent.SpanID(), manifestID)
		}
	}
}

// A fetch that is not sampled sends no trace context: the serving peer,
// tracing everything it is asked to, records nothing.
func TestTraceOffSendsNothing(t *testing.T) {
	seedSpans, fetchSpans, _ := tracedFetch(t, sdktrace.AlwaysSample(), sdktrace.NeverSample(), 3)
	if n := len(fetchSpans.GetSpans()); n != 0 {
		t.Errorf("an unsampled fetch exported %d spans", n)
	}
	if n := len(seedSpans.GetSpans()); n != 0 {
		t.Errorf("the seed recorded %d spans for requests that carried no trace context", n)
	}
}

// BenchmarkFetchTracing fetches 64 MiB over loopback with tracing off
// and with every span recorded (and exported to nowhere): the cost of a
// traced fetch is the ratio of the two.
//
//	go test -run '^$' -bench FetchTracing -count 5 ./transfer
func BenchmarkFetchTracing(b *testing.B) {
	for _, traced := range []bool{false, true} {
		name := "off"
		if traced {
			name = "on"
		}
		b.Run(name, func(b *testing.B) {
			sampler := sdktrace.NeverSample()
			if traced {
				sampler = sdktrace.AlwaysSample()
			}
			tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()), sdktrace.WithSampler(sampler))
			defer tp.Shutdown(context.Background())
			withTP := func(c *Config) { c.TracerProvider = tp }
			seed, seedHost := newHostServiceWith(b, withTP)
			fetcher, fetchHost := newHostServiceWith(b, withTP)
			if err := fetchHost.Connect(context.Background(), peer.AddrInfo{ID: seedHost.ID(), Addrs: seedHost.Addrs()}); err != nil {
				b.Fatal(err)
			}
			benchFetches(b, seed, fetcher, seedHost.ID())
		})
	}
}

// benchFetches shares 64 MiB on seed and has fetcher fetch it b.N times,
// forgetting each copy (untimed) so that the next fetch fetches again.
func benchFetches(b *testing.B, seed, fetcher *Service, seedID peer.ID) {
	const size = 64 << 20
	path := filepath.Join(b.TempDir(), "data")
	if err := os.WriteFile(path, randomBytes(size, 9), 0o644); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	rec, err := seed.Share(ctx, path, ShareOptions{})
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	b.SetBytes(size)
	b.ResetTimer()
	for i := range b.N {
		dst := filepath.Join(dir, strconv.Itoa(i))
		if _, err := fetcher.Fetch(ctx, rec.Root, dst, FetchOptions{Peers: []peer.ID{seedID}}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := fetcher.Unshare(rec.Root); err != nil {
			b.Fatal(err)
		}
		os.Remove(dst)
		b.StartTimer()
	}
}
