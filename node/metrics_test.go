package node

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/shoalnet/shoal/node/catalog"
	"github.com/shoalnet/shoal/transfer/wire"
)

// metricValue returns the value of the metric name (with the label
// values, comma-separated, if given) in reg, and whether it is there.
func metricValue(t *testing.T, reg *prometheus.Registry, name, label string) (float64, bool) {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if label != "" && !hasLabels(m, strings.Split(label, ",")) {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue(), true
			case m.Gauge != nil:
				return m.Gauge.GetValue(), true
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount()), true
			}
		}
	}
	return 0, false
}

func hasLabels(m *dto.Metric, vs []string) bool {
	for _, v := range vs {
		if !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool { return l.GetValue() == v }) {
			return false
		}
	}
	return true
}

// A fetch moves the counters of both ends by exactly its chunks and
// bytes; libp2p's own metrics are in the same registry.
func TestMetricsCountAFetch(t *testing.T) {
	a, b := newTestNode(t), newTestNode(t)
	const size = 3<<20 + 5 // 4 chunks of 1 MiB, the last one short
	src := randomFile(t, t.TempDir(), "data.bin", size)
	ctx := context.Background()
	root, err := a.Share(ctx, src, ShareOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Fetch(ctx, root, filepath.Join(t.TempDir(), "copy.bin"), FetchOptions{Peers: []peer.AddrInfo{a.AddrInfo()}, NoDHT: true}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		n     *Node
		name  string
		label string
		want  float64
	}{
		{b, "shoal_chunks_fetched_total", "", 4},
		{b, "shoal_fetched_bytes_total", "", size},
		{b, "shoal_fetches_total", "done", 1},
		{b, "shoal_fetches_total", "failed", 0},
		{b, "shoal_fetch_duration_seconds", "", 1},
		{b, "shoal_duplicate_chunks_total", "", 0},
		{b, "shoal_bad_data_total", "", 0},
		{b, "shoal_shares_served", "", 1},
		{a, "shoal_chunks_served_total", "", 4},
		{a, "shoal_served_bytes_total", "", size},
		{a, "shoal_chunks_fetched_total", "", 0},
	} {
		if got, ok := metricValue(t, c.n.Metrics(), c.name, c.label); !ok || got != c.want {
			t.Errorf("%s{%s} = %v (present %v), want %v", c.name, c.label, got, ok, c.want)
		}
	}
	if got, _ := metricValue(t, b.Metrics(), "shoal_received_bytes_total", ""); got < size {
		t.Errorf("received %v bytes, fewer than the %d fetched", got, size)
	}
	// The transfer protocol's bytes: the chunks and a little framing.
	// libp2p's meters take in the bytes counted about once a second.
	for _, c := range []struct {
		n     *Node
		label string
	}{{a, wire.ProtocolID + ",out"}, {b, wire.ProtocolID + ",in"}} {
		var got float64
		waitFor(t, 10*time.Second, "the transfer's bytes in the protocol meters", func() bool {
			got, _ = metricValue(t, c.n.Metrics(), "shoal_protocol_bytes_total", c.label)
			return got >= size
		})
		if got > size*1.01 {
			t.Errorf("shoal_protocol_bytes_total{%s} = %v, want the %d bytes fetched and a little framing", c.label, got, size)
		}
	}
	if _, ok := metricValue(t, b.Metrics(), "shoal_peer_rate_bytes_per_second", a.ID().String()+",in"); !ok {
		t.Error("no rate for the peer fetched from")
	}
	for _, name := range []string{"shoal_gossip_rpcs_total", "shoal_dht_provide_backlog", "shoal_dht_provided_roots", "shoal_dht_provides_total"} {
		if _, ok := metricValue(t, a.Metrics(), name, ""); !ok {
			t.Errorf("no %s", name)
		}
	}
	fams, err := a.Metrics().Gather()
	if err != nil {
		t.Fatal(err)
	}
	libp2p := false
	for _, f := range fams {
		libp2p = libp2p || strings.HasPrefix(f.GetName(), "libp2p_")
	}
	if !libp2p {
		t.Error("no libp2p metric in the node's registry")
	}
}

// Gossip messages are counted by topic and outcome, with a bounded
// number of topics.
func TestGossipCounts(t *testing.T) {
	g := newGossipCounts()
	msg := func(topic string) *pubsub.Message {
		return &pubsub.Message{Message: &pb.Message{Topic: &topic}}
	}
	g.DeliverMessage(msg("shoal/x/catalog"))
	g.DeliverMessage(msg("shoal/x/catalog"))
	g.RejectMessage(msg("shoal/x/catalog"), pubsub.RejectValidationFailed)
	g.DuplicateMessage(msg("shoal/x/members"))
	for i := range maxGossipTopics + 5 {
		g.DeliverMessage(msg(fmt.Sprintf("t%d", i)))
	}
	g.RecvRPC(nil)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectorFunc(g.collect))
	for _, c := range []struct {
		label string
		want  float64
	}{
		{"shoal/x/catalog,delivered", 2}, {"shoal/x/catalog,rejected", 1}, {"shoal/x/members,duplicate", 1},
		{"other,delivered", 7}, // 16 topics by name: the two above and t0..t13
		{"t13,delivered", 1},
	} {
		if got, ok := metricValue(t, reg, "shoal_gossip_messages_total", c.label); !ok || got != c.want {
			t.Errorf("shoal_gossip_messages_total{%s} = %v (present %v), want %v", c.label, got, ok, c.want)
		}
	}
	if got, _ := metricValue(t, reg, "shoal_gossip_rpcs_total", "received"); got != 1 {
		t.Errorf("%v RPCs received, want 1", got)
	}
}

// collectorFunc is a prometheus.Collector of unchecked metrics.
type collectorFunc func(chan<- prometheus.Metric)

func (f collectorFunc) Describe(chan<- *prometheus.Desc)    {}
func (f collectorFunc) Collect(ch chan<- prometheus.Metric) { f(ch) }

// An announcement made just after a peer joined the catalog's topic
// reaches it by gossip (anti-entropy is kept out of the way), and is
// counted as delivered.
func TestAnnouncementReachesNewPeer(t *testing.T) {
	noSync := func(c *Config) { c.CatalogSyncInterval = time.Hour }
	a, b := newTestNode(t, noSync), newTestNode(t, noSync)
	connect(t, b, a)
	topic := catalog.Topic("default")
	waitFor(t, 10*time.Second, "b in a's catalog topic", func() bool {
		return slices.Contains(a.ps.ListPeers(topic), b.ID())
	})
	root, err := a.Share(context.Background(), randomFile(t, t.TempDir(), "late.bin", 10), ShareOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the announcement in b's catalog", func() bool {
		return slices.Contains(b.cat.Holders(root), a.ID())
	})
	if got, _ := metricValue(t, b.Metrics(), "shoal_gossip_messages_total", topic+",delivered"); got < 1 {
		t.Errorf("%v catalog messages delivered to b", got)
	}
}
