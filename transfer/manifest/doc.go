// Package manifest cuts shares into chunks, hashes them, and encodes,
// decodes and verifies the share manifest: the content-addressed index that
// names a share's files and the digest of every chunk.
//
// It sits at the bottom of transfer: a publisher builds a manifest with
// BuildFromPath (or Builder, for any other source of digests) and serves
// its blocks; a fetcher gets the root CID from a share link, calls Load
// with a function that fetches blocks from peers, and then checks every
// chunk it receives with Manifest.Verify before writing it at the offset
// Manifest.Locate gives. The package does no networking and keeps no
// state between calls.
//
// # Chunks
//
// A share is a single file or a directory tree. Every file is cut into
// fixed-size chunks (default 1 MiB; any power of two from 256 KiB to
// 16 MiB); the last chunk of a file may be short, and chunks never span two
// files. Chunks are numbered in one global sequence: files in share order,
// each taking ceil(size/chunkSize) consecutive chunks (none when empty), so
// chunk i belongs to exactly one file. A chunk's CID is an ordinary CIDv1
// with codec raw (0x55) and a multihash of the share's hash over the
// chunk's bytes: BLAKE3-256 (code 0x1e, the default) or SHA2-256 (0x12).
// Other content-addressed tools can read these CIDs.
//
// # Share order
//
// Entry paths are relative to the share root and slash-separated. Entries
// are sorted component by component, comparing names byte-wise; this is
// byte-wise order with '/' placed before every other byte. A directory is
// therefore followed at once by everything below it:
//
//	a, a/b, a/b/deep.bin, a/x, a-b, a.txt, emptydir, z
//
// This is the order of a depth-first walk that lists each directory in
// name order, so a directory is built in one pass; and it lets the decoder
// check that every entry's parent came before it with memory proportional
// to the path depth only. For a directory share, the entries are every
// file and every subdirectory below the root (empty ones included, the
// root itself not); for a single-file share, there is one entry whose path
// is the share's name.
//
// # Blocks
//
// A manifest is a set of blocks of at most MaxBlockSize (1 MiB) each,
// encoded as deterministic dag-cbor: definite lengths, shortest integer
// encodings, map keys sorted by length then bytes, no floats and no null.
// Every block's CID is CIDv1, codec dag-cbor (0x71), with the share's hash.
// Links between blocks are CBOR tag 42 around a byte string holding 0x00
// and the binary CID, as dag-cbor defines. The root block's CID is the
// share's address.
//
// The root block is a map:
//
//	shoal        1 (the format version)
//	name         the share's name: one path component
//	single       true for a single-file share
//	chunkSize    chunk size in bytes
//	hash         multihash code of the hash (0x1e or 0x12)
//	size         total bytes of all files
//	chunks       total number of chunks
//	entries      total number of entries
//	entryBlocks  links to the entry blocks, in order
//	chunkBlocks  links to the chunk blocks, in order
//	seal         (only in encrypted shares) the version of the encryption
//	             format of package transfer/seal; the files are ciphertext
//
// An entry block is {"start": index of its first entry, "entries": [...]}
// where each entry is {"p": path, "d": is a directory, "s": size in bytes,
// "m": permission bits (mode & 0o777)} and, only in shares built to record
// times (BuildOptions.Times), "t": the modification time in nanoseconds
// since the Unix epoch, a signed integer. The builder fills each entry block
// until the next entry would take it within 1 KiB of MaxBlockSize.
//
// A chunk block is {"start": index of its first chunk, "digests": bytes}:
// the 32-byte digests of DigestsPerBlock (32,000) chunks concatenated in
// chunk order, fewer in the last block only. Chunk i's digest is therefore
// in chunk block i/32000. Digests are packed into one byte string rather
// than listed as CIDs because that is compact (32 bytes a chunk instead of
// about 40), fast to decode (one copy instead of a parse per chunk), and
// loses nothing: a chunk's CID is the fixed prefix (CIDv1, raw, the share's
// hash, 32 bytes) followed by its digest.
//
// One root can list about 25,000 child blocks: with 1 MiB chunks, shares
// of hundreds of TiB. A larger share fails with ErrTooLarge; use larger
// chunks. A 10 TiB file with 1 MiB chunks takes 328 chunk blocks.
//
// # Validation
//
// A manifest from the network is hostile, and its paths are written to
// disk. Load and DecodeRoot check every block against its CID
// (ErrHashMismatch when the bytes differ; ErrInvalid for a CID that is not
// CIDv1 dag-cbor with a 32-byte BLAKE3 or SHA2-256 multihash, or a block
// over MaxBlockSize), decode with strict limits, and check, failing with an
// error wrapping ErrInvalid that says what is wrong:
//
//   - the encoding: the dag-cbor subset above, exactly one data item with no
//     trailing bytes, every required key present (unknown keys are ignored);
//   - the root: version 1; a name that is a valid path component; a chunk
//     size in range and a power of two; a supported hash equal to the CID's;
//     exactly ceil(chunks/32000) chunk blocks; child CIDs of the same kind
//     as the root's; totals that the number of blocks can hold;
//   - paths: non-empty, at most 4096 bytes, valid UTF-8, no NUL, no
//     backslash, not absolute, no trailing slash, no empty, "." or ".."
//     component, every component at most 255 bytes;
//   - entries: strictly increasing in share order (hence unique); every
//     entry's parent is listed before it as a directory (a file is never a
//     parent); sizes fit in 63 bits and are 0 for directories; modes hold
//     permission bits only; a time, if present, is an integer;
//   - totals: the entries' count, sizes and chunk counts equal the root's;
//     each block's "start" is exactly where the previous block ended; each
//     chunk block holds the exact number of digests; a single-file share has
//     exactly one entry, a file whose path is the name.
//
// Memory grows with the blocks actually received, never with a count that
// the blocks do not back. The Builder enforces the same rules on its input,
// so every manifest it produces loads, and every manifest Load accepts
// encodes again to the same manifest.
//
// # Building
//
// BuildFromPath walks the share, then reads every file once on the calling
// goroutine, chunk by chunk, into a fixed set of 2×Workers buffers, while
// Workers goroutines hash them, each digest going straight to its slot. A
// file that changes while it is read (its size, modification time or
// identity differ between indexing and the end of reading, or a read comes
// up short) fails the build with ErrFileChanged. The result records each
// file's size and modification time as indexed, so that whoever serves the
// files can refuse stale bytes later.
package manifest
