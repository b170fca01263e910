package node

import (
	"cmp"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	libp2pmetrics "github.com/libp2p/go-libp2p/core/metrics"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
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
	bw          *libp2pmetrics.BandwidthCounter // bytes by protocol and by peer
	gossip      *gossipCounts
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
		bw:     libp2pmetrics.NewBandwidthCounter(),
		gossip: newGossipCounts(),
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
	descProto   = prometheus.NewDesc("shoal_protocol_bytes_total", "Bytes sent and received on streams, by protocol.", []string{"protocol", "direction"}, nil)
	descPeer    = prometheus.NewDesc("shoal_peer_rate_bytes_per_second", fmt.Sprintf("Bytes per second to and from the %d busiest connected peers (moving average).", busiestPeers), []string{"peer", "direction"}, nil)
	descGossip  = prometheus.NewDesc("shoal_gossip_messages_total", "Gossip messages by topic and outcome (delivered, rejected, duplicate, undeliverable).", []string{"topic", "result"}, nil)
	descRPC     = prometheus.NewDesc("shoal_gossip_rpcs_total", "Gossip RPCs received, sent and dropped (the peer's queue was full).", []string{"direction"}, nil)
	descProvide = prometheus.NewDesc("shoal_dht_provides_total", "DHT announcements of provided roots, by result.", []string{"result"}, nil)
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
		"backlog":    prometheus.NewDesc("shoal_dht_provide_backlog", "DHT announcements under way or waiting (new shares, reprovide rounds).", nil, nil),
		"provided":   prometheus.NewDesc("shoal_dht_provided_roots", "Roots this node provides in the DHT.", nil, nil),
		"peers":      prometheus.NewDesc("shoal_connected_peers", "Peers connected now.", nil, nil),
	}
)

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descFetches
	ch <- descMembers
	ch <- descProto
	ch <- descPeer
	ch <- descGossip
	ch <- descRPC
	ch <- descProvide
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
	ps := n.dht.ProvideStats()
	gauge("backlog", int(ps.Backlog))
	gauge("provided", ps.Roots)
	ch <- prometheus.MustNewConstMetric(descProvide, prometheus.CounterValue, float64(ps.Provided), "ok")
	ch <- prometheus.MustNewConstMetric(descProvide, prometheus.CounterValue, float64(ps.Failed), "failed")
	n.metrics.collectTraffic(ch, n.h.Network().Peers())
	gauge("peers", len(n.h.Network().Peers()))
	states := map[membership.State]int{}
	for _, m := range n.Members() {
		states[m.State]++
	}
	for _, s := range []membership.State{membership.Alive, membership.Suspect, membership.Dead, membership.Left} {
		ch <- prometheus.MustNewConstMetric(descMembers, prometheus.GaugeValue, float64(states[s]), s.String())
	}
}

// busiestPeers caps the peers with a rate of their own in the metrics:
// one series per peer would grow without bound as peers come and go.
const busiestPeers = 16

// collectTraffic sends the bytes by protocol and the rates of the
// busiest of the connected peers.
func (m *metrics) collectTraffic(ch chan<- prometheus.Metric, connected []peer.ID) {
	for proto, st := range m.bw.GetBandwidthByProtocol() {
		if proto == "" {
			proto = "(none)" // streams before their protocol was agreed
		}
		ch <- prometheus.MustNewConstMetric(descProto, prometheus.CounterValue, float64(st.TotalIn), string(proto), "in")
		ch <- prometheus.MustNewConstMetric(descProto, prometheus.CounterValue, float64(st.TotalOut), string(proto), "out")
	}
	type rate struct {
		p       peer.ID
		in, out float64
	}
	rates := make([]rate, 0, len(connected))
	for _, p := range connected {
		st := m.bw.GetBandwidthForPeer(p)
		rates = append(rates, rate{p, st.RateIn, st.RateOut})
	}
	slices.SortFunc(rates, func(a, b rate) int { return cmp.Compare(b.in+b.out, a.in+a.out) })
	for _, r := range rates[:min(len(rates), busiestPeers)] {
		ch <- prometheus.MustNewConstMetric(descPeer, prometheus.GaugeValue, r.in, r.p.String(), "in")
		ch <- prometheus.MustNewConstMetric(descPeer, prometheus.GaugeValue, r.out, r.p.String(), "out")
	}
	// Peers gone for a while leave the meters.
	m.bw.TrimIdle(time.Now().Add(-10 * time.Minute))
	m.gossip.collect(ch)
}

// maxGossipTopics bounds the topics counted by name; gossip on others
// (none, in a shoal network: it joins its network's few) counts as
// "other".
const maxGossipTopics = 16

// gossipCounts counts gossipsub's messages by topic and outcome: it is
// the node's pubsub.RawTracer.
type gossipCounts struct {
	mu                        sync.Mutex
	msgs                      map[[2]string]int64 // topic, outcome
	topics                    map[string]bool     // the topics counted by name
	rpcIn, rpcOut, rpcDropped atomic.Int64
}

func newGossipCounts() *gossipCounts {
	return &gossipCounts{msgs: make(map[[2]string]int64), topics: make(map[string]bool)}
}

func (g *gossipCounts) count(msg *pubsub.Message, result string) {
	topic := msg.GetTopic()
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.topics[topic] {
		if len(g.topics) >= maxGossipTopics {
			topic = "other"
		} else {
			g.topics[topic] = true
		}
	}
	g.msgs[[2]string{topic, result}]++
}

func (g *gossipCounts) collect(ch chan<- prometheus.Metric) {
	g.mu.Lock()
	for k, v := range g.msgs {
		ch <- prometheus.MustNewConstMetric(descGossip, prometheus.CounterValue, float64(v), k[0], k[1])
	}
	g.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(descRPC, prometheus.CounterValue, float64(g.rpcIn.Load()), "received")
	ch <- prometheus.MustNewConstMetric(descRPC, prometheus.CounterValue, float64(g.rpcOut.Load()), "sent")
	ch <- prometheus.MustNewConstMetric(descRPC, prometheus.CounterValue, float64(g.rpcDropped.Load()), "dropped")
}

func (g *gossipCounts) DeliverMessage(msg *pubsub.Message)                   { g.count(msg, "delivered") }
func (g *gossipCounts) RejectMessage(msg *pubsub.Message, _ string)          { g.count(msg, "rejected") }
func (g *gossipCounts) DuplicateMessage(msg *pubsub.Message)                 { g.count(msg, "duplicate") }
func (g *gossipCounts) UndeliverableMessage(msg *pubsub.Message)             { g.count(msg, "undeliverable") }
func (g *gossipCounts) RecvRPC(*pubsub.RPC)                                  { g.rpcIn.Add(1) }
func (g *gossipCounts) SendRPC(*pubsub.RPC, peer.ID)                         { g.rpcOut.Add(1) }
func (g *gossipCounts) DropRPC(*pubsub.RPC, peer.ID)                         { g.rpcDropped.Add(1) }
func (g *gossipCounts) OnNewOutboundStream(peer.ID, protocol.ID)             {}
func (g *gossipCounts) OnClosedOutboundStream(peer.ID)                       {}
func (g *gossipCounts) Join(string)                                          {}
func (g *gossipCounts) Leave(string)                                         {}
func (g *gossipCounts) Graft(peer.ID, string)                                {}
func (g *gossipCounts) Prune(peer.ID, string)                                {}
func (g *gossipCounts) ValidateMessage(*pubsub.Message)                      {}
func (g *gossipCounts) ThrottlePeer(peer.ID)                                 {}
func (g *gossipCounts) SendRPCCompleted(*pubsub.RPC, peer.ID, time.Duration) {}
