// Package transfer moves shares between peers: it indexes and serves them
// (Service.Share), fetches them from many peers at once, verifying every
// byte (Service.Fetch, Service.Start), and reads them while they arrive
// (Service.Open). It speaks /shoal/xfer/1.0.0 (package transfer/wire) and
// keeps its state in the node's bbolt database. It never imports node.
//
// # Files
//
//	service.go   Service, Config, shares and the sources served (a share,
//	             or a fetch's partial copy), their holdings and readers
//	server.go    the serving side of a stream: Open, limits, holdings,
//	             the request queue, answers, upload pacing, staleness
//	stream.go    verified streaming: a chunk sent as its BLAKE3 group tree
//	             and parts, and passed on while it still arrives
//	seeding.go   initial seeding: a whole root shown to its fetchers a few
//	             chunks at a time, the rarest first
//	pex.go       peer exchange: fetchers of a root learn of each other
//	fetch.go     a fetch: its options and result, Start, the run from
//	             manifest to rename
//	provider.go  a fetch's providers: sessions, holdings, errors, drops,
//	             redials, running out of them
//	verify.go    the manifest's blocks and the chunks checked as they
//	             arrive, written, and passed on; bad providers dropped
//	progress.go  progress reports, checkpoints, stalls
//	session.go   a fetch's stream to one provider: requests, windows,
//	             rates, arrivals
//	sched.go     the scheduler: rarest first, readers first, endgame
//	             stealing
//	read.go      Reader: a file read while its chunks arrive
//	disk.go      a fetch's partial copy beside its destination, resume,
//	             checkpoints, the final rename
//	fileset.go   positional reads and writes of a manifest's files
//	store.go     the database records: shares, manifest blocks, fetches
//	bitfield.go  chunk sets
//	json.go      JSON forms of the public types
//
// # Locks
//
// Taken in this order, never the reverse: Service.mu, then source.mu,
// then haveSub.mu; session.wmu, then fetch.mu; seedViews.mu or
// revealer.mu, then seedView.mu. Service.mu and fetch.mu are never held
// together: code that needs both copies what it needs under one and
// releases it first (fetchesOf, prepare). fileSet.mu, serveQueue.mu,
// partialChunk.mu and pexSet.mu are leaves: nothing else is taken while
// one is held. fetch.reportMu is held only around the caller's Progress
// callback, with no other lock. A session's reader goroutine owns its rx
// map; bytesAt is atomic.
package transfer
