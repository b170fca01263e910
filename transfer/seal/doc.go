// Package seal encrypts shares at rest: `shoal share PATH --encrypt`
// encrypts a file or directory tree into a ciphertext copy, and that copy is
// shared as an ordinary share. Chunk CIDs then address ciphertext, so the
// peers that store, serve and repair replicas hold only ciphertext. A fetcher
// holding the key decrypts, either the whole tree once it has arrived
// (DecryptTree) or one file while it arrives (NewReaderAt).
//
// The key travels only inside the share link, "<root CID>#<key>" (Link,
// ParseLink); it is never announced, and the root CID alone gives access to
// the ciphertext only.
//
// # What is hidden and what is not
//
// File contents are confidential and authenticated: without the key a peer
// learns nothing about them, and any change to the ciphertext (a flipped
// byte, a file cut at a chunk boundary, chunks reordered, two files swapped)
// fails decryption instead of yielding altered plaintext.
//
// Each file's contents are authenticated under its path, but which files
// the share holds is not authenticated by the key: that is the root CID's
// job. The link carries both, and the manifest the root CID addresses pins
// every path and every chunk, so a fetcher that starts from the link gets
// exactly the published tree. A share whose files are all empty has
// nothing to authenticate and decrypts with any key.
//
// Names are NOT encrypted. The ciphertext tree has the same directories and
// file names as the plaintext tree, and every ciphertext file's size is its
// plaintext size plus 16 bytes a chunk. Anyone who stores or lists the share
// sees its name, every path, every file's size (to within a few bytes), the
// number of files, and the permission bits; with `--preserve-times`, the
// modification times too. Give a share and its files neutral names if those
// matter.
//
// # Format, version 1
//
// Key: 32 random bytes per share (Key, NewKey), written in links as 43
// characters of unpadded base64url (RFC 4648 section 5). A key must never
// encrypt two different contents: nonces are derived from paths and
// segment indexes, so re-encrypting a changed file under the same key and
// path reuses nonces, which reveals the XOR of the two plaintexts and lets
// anyone forge segments. Use a new key for every EncryptTree call.
//
// AEAD: XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha), 24-byte nonce,
// 16-byte tag (Overhead).
//
// Each file is encrypted on its own, in segments aligned with the chunks of
// its ciphertext. With the share's chunk size C (a power of two from 256 KiB
// to 16 MiB), a plaintext segment holds P = C - 16 bytes. A file of
// plaintext length L has S = ceil(L/P) segments (an empty file has none,
// and its ciphertext is empty too); segment i is the plaintext bytes
// [i*P, min((i+1)*P, L)), sealed to its length plus 16 bytes. The ciphertext
// file is the sealed segments in order, L + 16*S bytes long (CipherSize,
// PlainSize), so sealed segment i is exactly chunk i of the ciphertext file
// when the ciphertext is shared with chunk size C, and a fetcher can decrypt
// any chunk as soon as it has arrived and been verified.
//
// Every segment is sealed with:
//
//	nonce = SHA-256(path)[0:16] || uint64 big-endian (i)
//	additional data = "shoal-seal/1" || 0x00 || path || 0x00 || last
//
// where path is the file's slash-separated path in the share, exactly as the
// manifest entry names it, and last is the byte 1 for the file's last
// segment and 0 for every other. For a directory share, paths are relative
// to the shared directory ("sub/a.bin", not prefixed by the directory's
// name); for a single-file share, the path is the share's name (the file's
// base name). Because XChaCha20 derives its subkey from the first 16 nonce
// bytes, every file is effectively sealed under its own key, and the segment
// index and last-segment flag bind every segment to its place: a segment
// moved within a file, into another file, or left as the last one by
// truncation at a segment boundary fails authentication.
//
// The ciphertext tree has the plaintext tree's directories (empty ones
// included) and file names, and copies each entry's permission bits (mode &
// 0o777) and modification time. Symbolic links, devices, sockets and named
// pipes are refused with ErrUnsupported, or left out with the SkipSpecial
// option.
//
// # Errors
//
// AEAD cannot tell a wrong key from damaged data: both fail the tag. This
// package uses the first segment it opens to tell them apart as well as
// that allows. If the first segment of the first non-empty file (in share
// order) fails, the error wraps ErrWrongKey: the likely cause is a wrong or
// mistyped key, or the wrong share name for a single-file share; less
// likely, that chunk is damaged (it has been checked against its CID by
// the fetcher, so damage means the publisher's copy was bad). If that
// segment opens with the other value of the last-segment flag, the key is
// right and the file was cut or extended at a segment boundary, and the
// error wraps ErrDamaged instead. Once a segment has opened, the key is
// known to be right and every later failure wraps ErrDamaged. A ReaderAt
// applies the same rule to its file's first segment.
//
// On any error, EncryptTree and DecryptTree remove the partial output they
// created, so a destination either holds a complete, fsynced tree or does
// not exist.
package seal
