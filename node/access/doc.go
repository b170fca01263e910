// Package access holds the parts of a closed network's rules that do not
// need a libp2p host: the token exchange run on every new connection
// (/shoal/auth/1.0.0), the table of what each connected peer proved, the
// connection gater that keeps refused peers out for a while, and the store
// of allow lists that limit who may fetch a share from this node.
//
// The node package wires them to the host: it runs Ask on connections it
// dials and Answer on the streams it accepts, closes the connections of
// peers that fail, and spreads revocations over gossip. Everything here
// works on an io.ReadWriter, a bbolt database and the auth package, so it
// is tested over pipes.
//
// # The exchange
//
// Each side sends one message and reads one: a uvarint length, then a
// canonical CBOR map {"tok": token, "revs": [revocations], "err": reason}.
// The dialling side (Ask) writes first; the dialled side (Answer) reads,
// checks the token, and answers with its own token, or with only a reason
// when it refuses. Both sides take the valid revocations the other sent.
// A message is at most 1 MiB, with at most 1024 revocations (the newest;
// gossip carries the rest).
//
// # Files
//
//	msg.go       the message and its codec (fuzzed)
//	exchange.go  Side: Ask and Answer
//	table.go     Table of admissions, Gater
//	acl.go       ACL: allow lists per root, written now or soon
//
// No lock is held while another is taken: Table, Gater and ACL each guard
// their own state with one mutex, and call nothing outside it while
// holding it.
package access
