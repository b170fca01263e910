package node

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/shoalnet/shoal/node/membership"
)

// Metrics: one Prometheus registry per node, holding shoal's metrics (read
// from the node's own counters when scraped) and libp2p's (the host
// registers them there). The daemon serves it at /metrics.

// metrics are the instruments the node updates as things happen; the rest
// is read at scrape time by collector.
type metrics struct {
	reg         *prometheus.Registry
	fetchTime   prometheus.Histogram
	transitions *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		fetchTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "shoal_fetch_duration_seconds",
			Help:    "Time of the fetches that completed, from start to the content in place.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 16), // 50 ms to 27 min
		}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_member_transitions_total",
			Help: "Changes of members' states seen by this node, by the new state.",
		}, []string{"state"}),
	}
	m.reg.MustRegister(m.fetchTime, m.transitions,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Metrics returns the node's Prometheus registry.
func (n *Node) Metrics() *prometheus.Registry { return n.metrics.reg }

// collector reads the node's state when the registry is scraped.
type collector struct{ n *Node }

var (
	descCounter = func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, nil, nil) }
	descFetches = prometheus.NewDesc("shoal_fetches_total", "Fetches that ended, by result.", []string{"result"}, nil)
	descMembers = prometheus.NewDesc("shoal_members", "Members in this node's view, by state.", []string{"state"}, nil)
	descs       = map[string]*prometheus.Desc{
		"served":     descCounter("shoal_chunks_served_total", "Chunks held here sent in full to fetchers."),
		"servedB":    descCounter("shoal_served_bytes_total", "Bytes of the chunks served."),
		"fetched":    descCounter("shoal_chunks_fetched_total", "Chunks verified and written by fetches."),
		"fetchedB":   descCounter("shoal_fetched_bytes_total", "Bytes of the chunks fetched."),
		"received":   descCounter("shoal_received_bytes_total", "Chunk bytes received by fetches, duplicates and bad ones included."),
		"dups":       descCounter("shoal_duplicate_chunks_total", "Chunks that arrived when they were held already."),
		"bad":        descCounter("shoal_bad_data_total", "Providers dropped for data that failed verification."),
		"denied":     descCounter("shoal_denied_streams_total", "Transfer streams refused (closed network, allow lists)."),
		"rejected":   descCounter("shoal_catalog_rejected_total", "Announcements rejected by the catalog's checks."),
		"active":     prometheus.NewDesc("shoal_fetches_active", "Fetches in progress.", nil, nil),
		"shares":     prometheus.NewDesc("shoal_shares_served", "Shares served in full (stale ones not counted).", nil, nil),
		"catalog":    prometheus.NewDesc("shoal_catalog_entries", "Shares known in the network (one per share and publisher).", nil, nil),
		"storeUsed":  prometheus.NewDesc("shoal_store_used_bytes", "Bytes of the store.", nil, nil),
		"storeQuota": prometheus.NewDesc("shoal_store_quota_bytes", "The store's quota (0: none).", nil, nil),
		"replicas":   prometheus.NewDesc("shoal_store_replicas", "Roots held here as replicas.", nil, nil),
		"repairs":    prometheus.NewDesc("shoal_replica_repairs_active", "Replicas being fetched here.", nil, nil),
		"under":      prometheus.NewDesc("shoal_replicas_below_count", "Wanted roots with fewer live copies than asked.", nil, nil),
		"dht":        prometheus.NewDesc("shoal_dht_routing_table_peers", "Peers in the DHT routing table.", nil, nil),
		"peers":      prometheus.NewDesc("shoal_connected_peers", "Peers connected now.", nil, nil),
	}
)

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descFetches
	ch <- descMembers
	for _, d := range descs {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	n := c.n
	st := n.xfer.Stats()
	counter := func(k string, v int64) {
		ch <- prometheus.MustNewConstMetric(descs[k], prometheus.CounterValue, float64(v))
	}
	gauge := func(k string, v int) {
		ch <- prometheus.MustNewConstMetric(descs[k], prometheus.GaugeValue, float64(v))
	}
	counter("served", st.ChunksServed)
	counter("servedB", st.BytesServed)
	counter("fetched", st.ChunksFetched)
	counter("fetchedB", st.BytesFetched)
	counter("received", st.BytesReceived)
	counter("dups", st.DuplicateChunks)
	counter("bad", st.BadData)
	counter("denied", st.Denied)
	counter("rejected", n.cat.Rejected())
	ch <- prometheus.MustNewConstMetric(descFetches, prometheus.CounterValue, float64(st.FetchesDone), "done")
	ch <- prometheus.MustNewConstMetric(descFetches, prometheus.CounterValue, float64(st.FetchesFailed), "failed")
	gauge("active", len(n.xfer.Fetches()))
	gauge("shares", n.servedShares())
	gauge("catalog", n.cat.Count())
	store := n.Store()
	gauge("storeUsed", int(store.Used))
	gauge("storeQuota", int(store.Quota))
	gauge("replicas", store.Replicas)
	gauge("repairs", len(store.Repairs))
	gauge("under", len(n.UnderReplicated()))
	gauge("dht", n.DHTPeers())
	gauge("peers", len(n.h.Network().Peers()))
	states := map[membership.State]int{}
	for _, m := range n.Members() {
		states[m.State]++
	}
	for _, s := range []membership.State{membership.Alive, membership.Suspect, membership.Dead, membership.Left} {
		ch <- prometheus.MustNewConstMetric(descMembers, prometheus.GaugeValue, float64(states[s]), s.String())
	}
}
