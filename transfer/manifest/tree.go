package manifest

import (
	"encoding/binary"
	"fmt"
	"math/bits"

	"lukechampine.com/blake3/guts"
)

// Verified streaming of a chunk. A BLAKE3 digest is the root of a hash
// tree over the chunk's 1 KiB pieces; the subtree over each aligned
// GroupSize bytes (a group) has a chaining value of its own. A chunk's
// tree is the list of its groups' chaining values, 32 bytes each (2 KiB
// for a 1 MiB chunk). Whoever holds the digest can check a tree against
// it (VerifyTree), and with a checked tree each group on its own
// (VerifyGroup): a peer can verify, write and pass on the start of a
// chunk while the rest is still on its way. This is the outboard
// encoding of Bao (github.com/oconnor663/bao) cut at the group level;
// the digests and CIDs stay plain BLAKE3.

// GroupSize is the size of a group: every group of a chunk but the last
// is this long.
const GroupSize = simdBytes

// Groups returns the number of groups of a chunk of n bytes.
func Groups(n int64) int { return int((n + GroupSize - 1) / GroupSize) }

// Streamable reports whether chunk i can be sent with its tree and
// verified group by group: the share hashes with BLAKE3 and the chunk is
// longer than one group.
func (m *Manifest) Streamable(i int64) bool {
	return m.Hash == codeBLAKE3 && m.ChunkLen(i) > GroupSize
}

// Tree appends chunk i's tree to dst, computed from data, and checks that
// it hashes to the chunk's digest: data that is not chunk i returns an
// error wrapping ErrChunkMismatch. The chunk must be Streamable.
func (m *Manifest) Tree(dst []byte, i int64, data []byte) ([]byte, error) {
	if !m.Streamable(i) {
		return dst, fmt.Errorf("manifest: chunk %d has no tree (hash %#x, %d bytes)", i, m.Hash, m.ChunkLen(i))
	}
	if n := m.ChunkLen(i); int64(len(data)) != n {
		return dst, fmt.Errorf("%w: chunk %d is %d bytes, want %d", ErrChunkMismatch, i, len(data), n)
	}
	start := len(dst)
	var scratch [simdBytes]byte
	for g := 0; g < Groups(int64(len(data))); g++ {
		cv := groupCV(data[g*GroupSize:min(len(data), (g+1)*GroupSize)], g, &scratch)
		for _, w := range cv {
			dst = binary.LittleEndian.AppendUint32(dst, w)
		}
	}
	if err := m.VerifyTree(i, dst[start:]); err != nil {
		return dst[:start], fmt.Errorf("%w: chunk %d", ErrChunkMismatch, i)
	}
	return dst, nil
}

// VerifyTree checks that tree is chunk i's tree: one chaining value per
// group, hashing to the chunk's digest. The chunk must be Streamable.
func (m *Manifest) VerifyTree(i int64, tree []byte) error {
	if !m.Streamable(i) {
		return fmt.Errorf("manifest: chunk %d has no tree (hash %#x, %d bytes)", i, m.Hash, m.ChunkLen(i))
	}
	k := Groups(m.ChunkLen(i))
	if len(tree) != k*DigestSize {
		return fmt.Errorf("%w: tree of chunk %d is %d bytes, want %d", ErrChunkMismatch, i, len(tree), k*DigestSize)
	}
	// As in blake3Hasher.Sum, with whole groups for chunks: each group but
	// the last is a complete subtree of 16 chunks, merged while more
	// follow; the last joins the stack's subtrees under the root.
	var h blake3Hasher
	var counter uint64
	for g := 0; g < k-1; g++ {
		h.push(cvAt(tree, g), 4, &counter)
	}
	cv := cvAt(tree, k-1)
	var n guts.Node
	for b := bits.TrailingZeros64(counter); b < bits.Len64(counter); b++ {
		if counter&(1<<b) != 0 {
			n = guts.ParentNode(h.stack[b], cv, &guts.IV, 0)
			cv = guts.ChainingValue(n)
		}
	}
	n.Flags |= guts.FlagRoot
	root := guts.WordsToBytes(guts.CompressNode(n))
	if string(root[:DigestSize]) != string(m.Digest(i)) {
		return fmt.Errorf("%w: tree of chunk %d", ErrChunkMismatch, i)
	}
	return nil
}

// VerifyGroup checks that data is group g of a chunk whose tree, already
// checked with VerifyTree, is tree. data is GroupSize bytes, or what is
// left of the chunk for its last group; the caller checks the lengths.
func VerifyGroup(tree []byte, g int, data []byte) error {
	if g < 0 || (g+1)*DigestSize > len(tree) || len(data) == 0 || len(data) > GroupSize {
		return fmt.Errorf("%w: group %d of %d bytes", ErrChunkMismatch, g, len(data))
	}
	var scratch [simdBytes]byte
	if groupCV(data, g, &scratch) != cvAt(tree, g) {
		return fmt.Errorf("%w: group %d", ErrChunkMismatch, g)
	}
	return nil
}

// groupCV returns the chaining value of group g (a non-root subtree
// starting at chunk 16g).
func groupCV(data []byte, g int, scratch *[simdBytes]byte) [8]uint32 {
	counter := uint64(g) * (GroupSize / guts.ChunkSize)
	buf := scratch
	if len(data) == simdBytes {
		buf = (*[simdBytes]byte)(data)
	} else {
		copy(scratch[:], data)
	}
	return guts.ChainingValue(guts.CompressBuffer(buf, len(data), &guts.IV, counter, 0))
}

func cvAt(tree []byte, g int) (cv [8]uint32) {
	b := tree[g*DigestSize : (g+1)*DigestSize]
	for j := range cv {
		cv[j] = binary.LittleEndian.Uint32(b[4*j:])
	}
	return cv
}
