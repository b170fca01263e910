// Package catalog keeps the shares known in a shoal network: signed
// announcements that publishers send on the gossipsub topic
// shoal/<network>/catalog, kept in the state database and queried by
// root.
//
// An announcement names a root and says who holds it (the publisher), what
// it is (name, total size, file count) and when it was made. It is signed
// by the publisher's libp2p key over its deterministic CBOR encoding, so it
// can be relayed and synced by anyone and still be checked: gossipsub's own
// signature proves only the last author of a message, not the one inside
// a synced catalog. A newer announcement from the same publisher for the
// same root replaces the older; a withdrawal (Removed) deletes it.
//
// Gossip does not replay history, so a peer that connects pulls the other's
// catalog once over /shoal/sync/1.0.0 (anti-entropy), and every node
// re-announces its own shares periodically.
package catalog
