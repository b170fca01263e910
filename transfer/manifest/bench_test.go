package manifest

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	mh "github.com/multiformats/go-multihash"
	"lukechampine.com/blake3"
)

// BenchmarkBuildFromPath builds a 256 MiB file (from the page cache) with
// the defaults. Compare with BenchmarkHashRaw: the ratio is the pipeline's
// efficiency against BLAKE3's own speed on all cores.
func BenchmarkBuildFromPath(b *testing.B) {
	const size = 256 << 20
	p := filepath.Join(b.TempDir(), "data.bin")
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	block := pattern(1<<20, 42)
	for range size / len(block) {
		if _, err := f.Write(block); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := BuildFromPath(context.Background(), p, BuildOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHashRaw is BLAKE3 (lukechampine.com/blake3.Sum256) of 1 MiB
// chunks on all cores.
func BenchmarkHashRaw(b *testing.B) {
	data := pattern(1<<20, 7)
	b.SetBytes(1 << 20)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			blake3.Sum256(data)
		}
	})
}

// BenchmarkHasher is this package's BLAKE3 and SHA2-256 Hasher on 1 MiB
// chunks on all cores, as the build pipeline uses it.
func BenchmarkHasher(b *testing.B) {
	for _, code := range []uint64{mh.BLAKE3, mh.SHA2_256} {
		b.Run(hashName(code), func(b *testing.B) {
			data := pattern(1<<20, 7)
			b.SetBytes(1 << 20)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				h, _ := NewHasher(code)
				dst := make([]byte, 0, DigestSize)
				for pb.Next() {
					h.Sum(dst, data)
				}
			})
		})
	}
}

// BenchmarkVerify is Manifest.Verify of one 1 MiB chunk.
func BenchmarkVerify(b *testing.B) {
	data := pattern(1<<20, 3)
	sum := blake3.Sum256(data)
	m := &Manifest{Name: "v", Single: true, ChunkSize: 1 << 20, Hash: mh.BLAKE3, Size: 1 << 20,
		Entries: []Entry{{Path: "v", Size: 1 << 20}}, Digests: sum[:]}
	b.SetBytes(1 << 20)
	b.ReportAllocs()
	for b.Loop() {
		if err := m.Verify(0, data); err != nil {
			b.Fatal(err)
		}
	}
}
