// Package wire is the codec of /shoal/xfer/1.0.0, the chunk transfer
// protocol. It knows nothing of hosts, files or schedulers: it reads and
// writes messages on any io.Reader/io.Writer, so it is tested over net.Pipe
// and fuzzed on raw bytes.
//
// # Framing
//
// Every message is a frame:
//
//	uvarint(n) | type (1 byte) | fields (n-1 bytes)
//
// Fields are uvarints, length-prefixed byte strings (uvarint length, then
// bytes) and CIDs (as length-prefixed byte strings of their binary form), in
// the fixed order of each type. A frame's n is capped at MaxHeader: a larger
// one is a protocol error and the stream is dropped, so a peer can never
// make the reader allocate more than MaxHeader bytes for a control message.
//
// Block, Chunk, Tree and Part messages carry a payload: its length is the
// last field of the header, and exactly that many raw bytes follow the
// frame. Payloads are
// never re-encoded or copied by the codec: the reader hands the length to
// the caller, who reads the bytes straight into its own (pooled) buffer with
// ReadPayload; the writer writes the caller's slice as is. Payloads are
// capped at MaxPayload (Tree: MaxTree, Part: PartSize).
//
// # Conversation
//
// The fetching side (client) opens one stream per (peer, root) and sends
// Open{Root} first. The serving side answers with its holdings: HaveAll, or
// one or more Have messages (a bitfield in slices of at most MaxBitsBytes
// bytes, Start a multiple of 8), or an Error (NotFound, Denied, ...) and
// closes. Before its holdings it sends one Limits{Allow} per access list the
// root is limited to, so that the client enforces them when it serves the
// root in turn. It then sends HaveUpdate for each chunk it acquires later
// (or, seeding a whole root to several peers, each chunk it chooses to
// show), and now and then Peers{[ID, addresses]}: other peers fetching the
// same root (peer exchange).
//
// The client pipelines GetBlock{ID, CID} (manifest blocks) and
// Request{Index} (chunks), many in flight, and may Cancel{Index} a request
// it no longer needs. The server answers each with Block{ID}/Chunk{Index}
// and its payload, or Error{Code, About, Ref} where Ref is the ID
// (About=block) or Index (About=chunk). A cancelled request that was
// already being sent may still arrive.
//
// A chunk of a BLAKE3 share longer than PartSize is answered part by part
// instead: Tree{Index} with the chaining values of the chunk's PartSize
// groups as its payload (32 bytes each; the client checks them against
// the chunk's digest), then Part{Index, Offset} for each group in order,
// each checked against its hash on arrival. Other messages may come
// between the parts. A server passing on a chunk it is still receiving
// sends each group once it has verified it, and ends the answer with
// Error{Unavailable, About=chunk} if the rest stops coming; a Cancel of
// a request being answered this way ends it at the next group with
// Error{Cancelled, About=chunk}. A server offers such a chunk with a
// HaveUpdate as soon as its tree checks out, before it holds all of it.
//
// The client also tells the server what it holds: after Open, the Have
// messages of the chunks it already verified (none if it holds none), and
// then a HaveUpdate for each chunk it verifies, from whichever peer. A
// server seeding a whole root uses them to show each peer the chunks the
// fewest of its peers hold; others may ignore them. A client that drops a
// server for a chunk that failed verification first sends it
// Error{Corrupt, About=chunk, Ref=Index}: a server whose file was changed
// in place (same size and time) learns of it, checks the chunk itself,
// and stops serving the share if it no longer matches. A server acts on
// one such report per stream.
//
// # Tracing
//
// A GetBlock or Request of a traced fetch carries the W3C trace context
// of the fetcher's span after its fields: version 0 (1 byte), trace ID
// (16), parent span ID (8), flags (1) — traceparent's fields in binary.
// The server records its work on the request (disk, network) as child
// spans of that parent; a request without it ends after its fields and
// is served without spans. A fetch that is not traced sends none, so the
// field costs nothing when tracing is off.
package wire
