// Package dht is shoal's Kademlia routing, on go-libp2p-kad-dht: it joins
// the DHT through bootstrap peers, provides share roots (never individual
// chunks: one record per share keeps the provider load independent of
// file size), re-provides them before the records expire, finds the
// providers of a root, and offers DHT-backed discovery for gossipsub
// topics.
//
// The protocol prefix is /shoal/<network> by default, so a shoal cluster
// forms a DHT of its own. With the prefix /ipfs and IPFS bootstrap peers a
// node is a full member of the public IPFS DHT (the Amino DHT): IPFS nodes
// can route to it and find the roots it provides, which are ordinary CIDs.
//
// Members run in server mode: the library's automatic mode waits for
// AutoNAT to call the node public, which never happens on a LAN or
// loopback, and such a node would answer no queries.
//
// dht sits below node and imports nothing of shoal.
package dht
