package manifest

import (
	"crypto/sha256"
	"fmt"
	"math/bits"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
	"lukechampine.com/blake3/guts"
)

const (
	codeBLAKE3 = mh.BLAKE3   // 0x1e
	codeSHA256 = mh.SHA2_256 // 0x12
)

// Hasher computes DigestSize-byte digests with one hash algorithm. A Hasher
// keeps scratch state: use one per goroutine.
type Hasher interface {
	// Sum appends the digest of data to dst and returns the extended
	// slice. It does not allocate when dst has room for the digest.
	Sum(dst, data []byte) []byte
}

// NewHasher returns a Hasher for the multihash code (multihash.BLAKE3 or
// multihash.SHA2_256).
func NewHasher(code uint64) (Hasher, error) {
	switch code {
	case codeBLAKE3:
		return new(blake3Hasher), nil
	case codeSHA256:
		return sha256Hasher{}, nil
	}
	return nil, fmt.Errorf("%w: hash code %#x is not supported (use BLAKE3 %#x or SHA2-256 %#x)",
		ErrInvalid, code, uint64(codeBLAKE3), uint64(codeSHA256))
}

func checkHash(code uint64) error {
	_, err := NewHasher(code)
	return err
}

func hashName(code uint64) string {
	switch code {
	case codeBLAKE3:
		return "blake3"
	case codeSHA256:
		return "sha2-256"
	}
	return fmt.Sprintf("unknown hash %#x", code)
}

type sha256Hasher struct{}

func (sha256Hasher) Sum(dst, data []byte) []byte {
	s := sha256Sum(data)
	return append(dst, s[:]...)
}

func sha256Sum(data []byte) [DigestSize]byte { return sha256.Sum256(data) }

// blake3Hasher computes unkeyed BLAKE3-256 on the calling goroutine, using
// the SIMD kernels of lukechampine.com/blake3/guts 16 KiB at a time.
// blake3.Sum256 spreads large inputs over new goroutines and allocates for
// each call; here the pipeline already runs one hasher per core, so a
// sequential, allocation-free tree hash is faster.
type blake3Hasher struct {
	stack   [64][8]uint32 // chaining values of complete subtrees, by height
	scratch [guts.MaxSIMD * guts.ChunkSize]byte
}

const simdBytes = guts.MaxSIMD * guts.ChunkSize

func (h *blake3Hasher) Sum(dst, data []byte) []byte {
	key := &guts.IV
	var counter uint64 // chunks done; its bits mark the occupied stack slots

	// The last chunk (possibly short, or empty for empty input) is kept
	// back: it becomes the root after merging with the stack.
	last := len(data) % guts.ChunkSize
	if last == 0 && len(data) > 0 {
		last = guts.ChunkSize
	}
	body := data[:len(data)-last]
	for len(body) >= simdBytes { // counter stays a multiple of 16 here
		n := guts.CompressBuffer((*[simdBytes]byte)(body[:simdBytes]), simdBytes, key, counter, 0)
		h.push(guts.ChainingValue(n), 4, &counter)
		body = body[simdBytes:]
	}
	for len(body) > 0 { // fewer than 16 chunks: aligned power-of-two subtrees, largest first
		height := bits.Len(uint(len(body)/guts.ChunkSize)) - 1
		size := guts.ChunkSize << height
		var n guts.Node
		if height == 0 {
			n = guts.CompressChunk(body[:size], key, counter, 0)
		} else {
			copy(h.scratch[:], body[:size])
			n = guts.CompressBuffer(&h.scratch, size, key, counter, 0)
		}
		h.push(guts.ChainingValue(n), height, &counter)
		body = body[size:]
	}
	n := guts.CompressChunk(data[len(data)-last:], key, counter, 0)
	for i := bits.TrailingZeros64(counter); i < bits.Len64(counter); i++ {
		if counter&(1<<i) != 0 {
			n = guts.ParentNode(h.stack[i], guts.ChainingValue(n), key, 0)
		}
	}
	n.Flags |= guts.FlagRoot
	out := guts.WordsToBytes(guts.CompressNode(n))
	return append(dst, out[:DigestSize]...)
}

// push adds the chaining value of a complete subtree of 2^height chunks,
// merging it with the equal-height subtrees before it.
func (h *blake3Hasher) push(cv [8]uint32, height int, counter *uint64) {
	i := height
	for *counter&(1<<i) != 0 {
		cv = guts.ChainingValue(guts.ParentNode(h.stack[i], cv, &guts.IV, 0))
		i++
	}
	h.stack[i] = cv
	*counter += 1 << height
}

// makeCID returns the CIDv1 with codec and a multihash of code over digest.
// Both supported codes and the digest length encode as one-byte varints.
func makeCID(codec, code uint64, digest []byte) cid.Cid {
	var buf [2 + DigestSize]byte
	mhash := append(buf[:0], byte(code), byte(len(digest)))
	mhash = append(mhash, digest...)
	return cid.NewCidV1(codec, mhash)
}

// blockCID returns the CID of a manifest block.
func blockCID(code uint64, data []byte) cid.Cid {
	var sum [DigestSize]byte
	switch code {
	case codeSHA256:
		sum = sha256Sum(data)
	default:
		var h blake3Hasher
		h.Sum(sum[:0], data)
	}
	return makeCID(cid.DagCBOR, code, sum[:])
}
