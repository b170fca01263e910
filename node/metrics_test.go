package node

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// metricValue returns the value of the metric name (with the label
// value, if given) in reg, and whether it is there.
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
			if label != "" && !hasLabel(m, label) {
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

func hasLabel(m *dto.Metric, v string) bool {
	for _, l := range m.GetLabel() {
		if l.GetValue() == v {
			return true
		}
	}
	return false
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
