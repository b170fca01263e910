package manifest

import (
	"bytes"
	"crypto/sha256"
	"math/rand/v2"
	"testing"

	mh "github.com/multiformats/go-multihash"
	"lukechampine.com/blake3"
)

func TestHasherMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, 3<<20+777)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	sizes := []int{0, 1, 63, 64, 65, 1023, 1024, 1025, 2047, 2048, 2049, 3072, 15 << 10, 16<<10 - 1, 16 << 10,
		16<<10 + 1, 17 << 10, 31<<10 + 5, 32 << 10, 33 << 10, 100 << 10, 255<<10 + 1, 256 << 10, 1<<20 - 1, 1 << 20,
		1<<20 + 1, 1<<20 + 15<<10 + 3, 3<<20 + 777}
	for range 40 {
		sizes = append(sizes, rng.IntN(len(data)+1))
	}
	b3, err := NewHasher(mh.BLAKE3)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := NewHasher(mh.SHA2_256)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range sizes {
		// Offset the input so that its alignment varies too.
		off := n % 7
		in := data[off : off+n-min(n, off)]
		if want, got := blake3.Sum256(in), b3.Sum(nil, in); !bytes.Equal(want[:], got) {
			t.Fatalf("blake3 of %d bytes: got %x, want %x", len(in), got, want)
		}
		if want, got := sha256.Sum256(in), s2.Sum(nil, in); !bytes.Equal(want[:], got) {
			t.Fatalf("sha256 of %d bytes: got %x, want %x", len(in), got, want)
		}
	}
	if _, err := NewHasher(mh.MD5); err == nil {
		t.Fatal("NewHasher(MD5) succeeded")
	}
}

func TestHasherDoesNotAllocate(t *testing.T) {
	data := make([]byte, 1<<20+100)
	dst := make([]byte, 0, DigestSize)
	for _, code := range []uint64{mh.BLAKE3, mh.SHA2_256} {
		h, err := NewHasher(code)
		if err != nil {
			t.Fatal(err)
		}
		if n := testing.AllocsPerRun(5, func() { h.Sum(dst, data) }); n != 0 {
			t.Errorf("%s: %v allocations per Sum", hashName(code), n)
		}
	}
}
