package manifest

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"time"

	"github.com/ipfs/go-cid"
)

// Limits and sizes of the format.
const (
	// DefaultChunkSize is the chunk size used when none is given: 1 MiB.
	DefaultChunkSize = 1 << 20
	// MinChunkSize is the smallest allowed chunk size: 256 KiB.
	MinChunkSize = 256 << 10
	// MaxChunkSize is the largest allowed chunk size: 16 MiB.
	MaxChunkSize = 16 << 20
	// MaxBlockSize is the largest encoded manifest block: 1 MiB.
	MaxBlockSize = 1 << 20
	// DigestSize is the length in bytes of every chunk digest.
	DigestSize = 32
	// DigestsPerBlock is the number of digests in every chunk block but the
	// last one of a share.
	DigestsPerBlock = 32000
)

// Limits on paths, enforced by the builder and the decoder.
const (
	maxPathLen      = 4096
	maxComponentLen = 255
)

var (
	// ErrInvalid marks a malformed or hostile block or manifest, or a
	// builder input that would produce one.
	ErrInvalid = errors.New("manifest: invalid")
	// ErrTooLarge means the share needs more child blocks than one root
	// block can list (shares of hundreds of TiB); use a larger chunk size.
	ErrTooLarge = errors.New("manifest: too large")
	// ErrUnsupported marks a file that is neither a regular file nor a
	// directory (symbolic link, device, socket, named pipe).
	ErrUnsupported = errors.New("manifest: unsupported file type")
	// ErrHashMismatch means a block's bytes do not hash to the CID it was
	// fetched under: whoever served it sent wrong data.
	ErrHashMismatch = errors.New("manifest: block does not match its CID")
	// ErrChunkMismatch means chunk data does not match the manifest's digest
	// or length for that chunk.
	ErrChunkMismatch = errors.New("manifest: chunk does not match its digest")
	// ErrFileChanged means a file changed on disk while BuildFromPath read
	// it (size, modification time or identity differ, or a short read).
	// Retry once the file is stable.
	ErrFileChanged = errors.New("manifest: file changed while being indexed")
)

// Entry is one file or directory of a share.
type Entry struct {
	// Path is slash-separated and relative to the share root. For a
	// single-file share it equals the share's name.
	Path string
	// Dir reports whether the entry is a directory.
	Dir bool
	// Size is the file's length in bytes; 0 for directories.
	Size int64
	// Mode holds the permission bits only (mode & 0o777).
	Mode fs.FileMode
	// ModTime is the modification time recorded for the entry, to
	// nanosecond precision, or the zero Time when the share records none
	// (the default: see BuildOptions.Times).
	ModTime time.Time
	// FirstChunk is the index of the file's first chunk in the share's
	// global chunk sequence. For directories and empty files it is the index
	// the next file's first chunk has. The builder and the decoder set it;
	// inputs to the builder may leave it zero.
	FirstChunk int64
}

// Chunks returns the number of chunks of the entry: ceil(Size/chunkSize),
// 0 for directories and empty files.
func (e Entry) Chunks(chunkSize int64) int64 {
	if e.Dir || e.Size <= 0 || chunkSize <= 0 {
		return 0
	}
	return e.Size/chunkSize + btoi(e.Size%chunkSize != 0)
}

func btoi(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// Manifest is a decoded share manifest. Its methods only read it, so a
// Manifest that is not modified is safe for concurrent use.
type Manifest struct {
	// Name is the share's name: the base name of the shared file or
	// directory.
	Name string
	// Single reports a single-file share (one entry, whose Path is Name).
	Single bool
	// ChunkSize is the chunk size in bytes: a power of two between
	// MinChunkSize and MaxChunkSize.
	ChunkSize int64
	// Hash is the multihash code of the hash of chunks and blocks:
	// multihash.BLAKE3 or multihash.SHA2_256.
	Hash uint64
	// Size is the total length of all files in bytes.
	Size int64
	// Entries lists the files and directories in share order (see the
	// package documentation).
	Entries []Entry
	// Digests holds the chunk digests, DigestSize bytes each, in global chunk
	// order: len(Digests) == NumChunks()*DigestSize.
	Digests []byte
	// Seal, if not 0, says the files are encrypted (the version of the
	// format of package transfer/seal): their bytes are ciphertext, which
	// only the holder of the share's key can read.
	Seal int
}

// NumChunks returns the number of chunks of the share.
func (m *Manifest) NumChunks() int64 { return int64(len(m.Digests) / DigestSize) }

// Digest returns chunk i's digest, a sub-slice of m.Digests (not a copy;
// do not modify it), or nil if i is out of range.
func (m *Manifest) Digest(i int64) []byte {
	if i < 0 || i >= m.NumChunks() {
		return nil
	}
	off := i * DigestSize
	return m.Digests[off : off+DigestSize : off+DigestSize]
}

// ChunkCID returns chunk i's CID: CIDv1, codec raw, multihash m.Hash over
// the digest. It returns cid.Undef if i is out of range.
func (m *Manifest) ChunkCID(i int64) cid.Cid {
	d := m.Digest(i)
	if d == nil {
		return cid.Undef
	}
	return makeCID(cid.Raw, m.Hash, d)
}

// ChunkLen returns chunk i's length in bytes: ChunkSize, except for the last
// chunk of a file, which may be shorter. It returns 0 if i is out of range.
func (m *Manifest) ChunkLen(i int64) int64 {
	e, off := m.Locate(i)
	if e < 0 {
		return 0
	}
	return min(m.ChunkSize, m.Entries[e].Size-off)
}

// Locate returns the index in m.Entries of the file holding chunk i and the
// byte offset of the chunk in that file. It returns (-1, 0) if i is out of
// range. It runs in O(log n) time.
func (m *Manifest) Locate(i int64) (entry int, offset int64) {
	if i < 0 || i >= m.NumChunks() || m.ChunkSize <= 0 {
		return -1, 0
	}
	// FirstChunk never decreases along Entries, and a file holding chunks is
	// the last entry with its FirstChunk (directories and empty files before
	// it share the value; entries after it start past its chunks).
	j := sort.Search(len(m.Entries), func(k int) bool { return m.Entries[k].FirstChunk > i }) - 1
	if j < 0 {
		return -1, 0
	}
	e := m.Entries[j]
	if i >= e.FirstChunk+e.Chunks(m.ChunkSize) {
		return -1, 0 // inconsistent manifest
	}
	return j, (i - e.FirstChunk) * m.ChunkSize
}

// Verify checks that data is chunk i: its length is ChunkLen(i) and it
// hashes to Digest(i). A mismatch returns an error wrapping
// ErrChunkMismatch. Verify does not allocate and is safe for concurrent use.
func (m *Manifest) Verify(i int64, data []byte) error {
	want := m.Digest(i)
	if want == nil {
		return fmt.Errorf("manifest: chunk %d out of range: the share has %d chunks", i, m.NumChunks())
	}
	if n := m.ChunkLen(i); int64(len(data)) != n {
		return fmt.Errorf("%w: chunk %d is %d bytes, want %d", ErrChunkMismatch, i, len(data), n)
	}
	var sum [DigestSize]byte
	switch m.Hash {
	case codeBLAKE3:
		var h blake3Hasher
		h.Sum(sum[:0], data)
	case codeSHA256:
		sum = sha256Sum(data)
	default:
		return fmt.Errorf("manifest: unsupported hash code %#x", m.Hash)
	}
	if !bytes.Equal(sum[:], want) {
		return fmt.Errorf("%w: chunk %d", ErrChunkMismatch, i)
	}
	return nil
}

func fsMode(m uint64) fs.FileMode { return fs.FileMode(m) & fs.ModePerm }
