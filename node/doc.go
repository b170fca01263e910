// Package node is the embeddable shoal peer. A Node ties together a
// libp2p host (TCP and QUIC; TLS 1.3 preferred, Noise second; yamux), an
// identity kept in its home directory, Kademlia routing (package dht),
// gossipsub, the share catalog (package node/catalog), the state database
// (bbolt) and the transfer service (package transfer).
//
// A program embeds a node with New and DefaultConfig, shares with Share,
// fetches with Fetch and stops with Close:
//
//	cfg := node.DefaultConfig()
//	cfg.Home = "/var/lib/shoal"
//	n, err := node.New(ctx, cfg)
//	...
//	root, err := n.Share(ctx, "/data/image.qcow2", node.ShareOptions{})
//	// on another node:
//	res, err := n.Fetch(ctx, root, "/tmp/image.qcow2", node.FetchOptions{})
//
// Fetch finds providers first among peers that announced the root in the
// catalog, then in the DHT, and does not wait for the DHT when a holder is
// already known. A node serves what it shares, what it has fetched and,
// while a fetch runs, the chunks it already holds.
//
// Open reads a file of a share while it arrives: reads wait only for the
// chunks they need, which the fetch asks for first. A root neither held
// nor being fetched is fetched whole into the store (<home>/store/<root>)
// and then served like any fetched share; Unshare deletes it there, and
// never deletes files shared in place.
//
// Replication: ShareOptions.Replicas and Pin ask the network to keep N
// copies of a root on the members that store for others
// (Config.Replication.Storer). Every node places them by rendezvous
// hashing over the live storers of its own membership view, and fetches
// into its store what is placed on it (replicate.go); a copy no longer
// placed is released after a grace period once the placed members hold
// the root. Replicas reports what the network holds; Store and
// CollectGarbage manage the store (store.go, pins.go).
//
// Encryption at rest: ShareEncrypted encrypts a file or directory with a
// new key (package transfer/seal) into the store and shares the
// ciphertext; FetchDecrypted and OpenDecrypted read it with the key.
// Fetch, Open and Content refuse an encrypted share with ErrSealed.
//
// Reaching peers behind NATs (nat.go): Config.NAT gives relays to hold a
// slot on, offers this node as a relay, and maps ports; hole punching
// turns relayed connections direct, and NAT reports how the node is
// reached. Transfers never cross a relay that bounds what it relays.
//
// Seeing the cluster: Metrics is a Prometheus registry (metrics.go),
// Topology the graph of who is connected to whom (graph.go), and
// Config.TracerProvider records a fetch as one OpenTelemetry trace across
// the peers that serve it.
//
// The home directory holds the identity key (identity.key, mode 0600), the
// state database (state.db), the store and, for the daemon, config.toml
// and api.sock.
// Two nodes must not share a home: New takes the database's lock and
// fails fast if another process holds it.
package node
