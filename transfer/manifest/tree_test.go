package manifest

import (
	"errors"
	"testing"

	mh "github.com/multiformats/go-multihash"
	"lukechampine.com/blake3"
)

// oneChunk returns a manifest whose only chunk is data, hashed with BLAKE3
// by the reference implementation (not by this package).
func oneChunk(data []byte) *Manifest {
	sum := blake3.Sum256(data)
	return &Manifest{
		ChunkSize: MaxChunkSize, Hash: mh.BLAKE3, Size: int64(len(data)),
		Entries: []Entry{{Path: "f", Size: int64(len(data))}},
		Digests: sum[:],
	}
}

// chunkTree returns n bytes of pattern seed, the manifest whose only
// chunk they are, and the chunk's tree.
func chunkTree(t testing.TB, n int, seed byte) ([]byte, *Manifest, []byte) {
	t.Helper()
	data := pattern(n, seed)
	m := oneChunk(data)
	tree, err := m.Tree(nil, 0, data)
	if err != nil {
		t.Fatal(err)
	}
	return data, m, tree
}

func TestTreeMatchesBLAKE3(t *testing.T) {
	// Whole groups, a short last group, a last group of one short 1 KiB
	// piece, and the largest chunk: each tree must hash to the reference
	// digest and verify every group.
	for _, n := range []int{GroupSize + 1, GroupSize + 1024, 2 * GroupSize, 40<<10 + 5,
		3*GroupSize - 1, 256 << 10, 1<<20 - 1, 1 << 20, 3<<20 + 123, MaxChunkSize} {
		data := pattern(n, byte(n))
		m := oneChunk(data)
		if !m.Streamable(0) {
			t.Fatalf("%d bytes: not streamable", n)
		}
		tree, err := m.Tree(nil, 0, data)
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		if len(tree) != Groups(int64(n))*DigestSize {
			t.Fatalf("%d bytes: tree of %d bytes", n, len(tree))
		}
		if err := m.VerifyTree(0, tree); err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		for g := 0; g < Groups(int64(n)); g++ {
			part := data[g*GroupSize : min(n, (g+1)*GroupSize)]
			if err := VerifyGroup(tree, g, part); err != nil {
				t.Fatalf("%d bytes, group %d: %v", n, g, err)
			}
		}
	}
}

func TestTreeRejects(t *testing.T) {
	data, m, tree := chunkTree(t, 1<<20, 7)
	// A tree that does not hash to the digest.
	bad := append([]byte(nil), tree...)
	bad[100] ^= 1
	if err := m.VerifyTree(0, bad); !errors.Is(err, ErrChunkMismatch) {
		t.Fatalf("flipped bit: %v", err)
	}
	if err := m.VerifyTree(0, tree[:len(tree)-DigestSize]); !errors.Is(err, ErrChunkMismatch) {
		t.Fatalf("short tree: %v", err)
	}
	// Groups swapped, moved or altered.
	if err := VerifyGroup(tree, 1, data[:GroupSize]); !errors.Is(err, ErrChunkMismatch) {
		t.Fatalf("group 0 as group 1: %v", err)
	}
	g := append([]byte(nil), data[GroupSize:2*GroupSize]...)
	g[5] ^= 0x80
	if err := VerifyGroup(tree, 1, g); !errors.Is(err, ErrChunkMismatch) {
		t.Fatalf("altered group: %v", err)
	}
	if err := VerifyGroup(tree, 64, data[:GroupSize]); err == nil {
		t.Fatal("group past the tree verified")
	}
	if err := VerifyGroup(tree, 0, data[:GroupSize+1]); err == nil {
		t.Fatal("oversized group verified")
	}
	// Data that is not the chunk has no tree.
	other := append([]byte(nil), data...)
	other[len(other)-1] ^= 1
	if _, err := m.Tree(nil, 0, other); !errors.Is(err, ErrChunkMismatch) {
		t.Fatalf("tree of other data: %v", err)
	}
	// SHA2-256 shares and one-group chunks are not streamed.
	small := oneChunk(data[:GroupSize])
	if small.Streamable(0) {
		t.Fatal("a one-group chunk is streamable")
	}
	sha := oneChunk(data)
	sha.Hash = mh.SHA2_256
	if sha.Streamable(0) {
		t.Fatal("a SHA2-256 chunk is streamable")
	}
	if _, err := sha.Tree(nil, 0, data); err == nil {
		t.Fatal("tree of a SHA2-256 chunk")
	}
}

// FuzzVerifyTree: a tree from the network is checked against a digest
// before any group is trusted; arbitrary bytes never verify and never
// panic, and every group of the real chunk verifies only at its place.
func FuzzVerifyTree(f *testing.F) {
	data, m, tree := chunkTree(f, 200<<10, 3)
	f.Add(tree, 0)
	f.Add(tree[:64], 3)
	f.Fuzz(func(t *testing.T, in []byte, g int) {
		if err := m.VerifyTree(0, in); err == nil && string(in) != string(tree) {
			t.Fatalf("a forged tree verified")
		}
		end := min(len(data), max(0, g+1)*GroupSize)
		start := max(0, g) * GroupSize
		if start >= end {
			return
		}
		if err := VerifyGroup(in, g, data[start:end]); err == nil && string(in[g*DigestSize:(g+1)*DigestSize]) != string(tree[g*DigestSize:(g+1)*DigestSize]) {
			t.Fatalf("group %d verified against a forged hash", g)
		}
	})
}

func BenchmarkTree(b *testing.B) {
	data, m, tree := chunkTree(b, 1<<20, 1)
	b.Run("tree", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		buf := make([]byte, 0, len(tree))
		for b.Loop() {
			if _, err := m.Tree(buf[:0], 0, data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("groups", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			for g := 0; g < len(data)/GroupSize; g++ {
				if err := VerifyGroup(tree, g, data[g*GroupSize:(g+1)*GroupSize]); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("verify", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if err := m.Verify(0, data); err != nil {
				b.Fatal(err)
			}
		}
	})
}
