package seal

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
)

const benchSize = 64 << 20

// benchFile writes a 64 MiB file of random bytes in a temporary directory
// and returns the directory and the file's path.
func benchFile(b *testing.B) (dir, path string) {
	b.Helper()
	dir = b.TempDir()
	path = filepath.Join(dir, "data.bin")
	writeFile(b, path, randomBytes(b, benchSize), 0o644)
	return dir, path
}

// BenchmarkEncryptTree encrypts a 64 MiB file with the default chunk size
// (1 MiB), fsync included, with as many workers as GOMAXPROCS.
func BenchmarkEncryptTree(b *testing.B) {
	dir, src := benchFile(b)
	dst := filepath.Join(dir, "enc")
	k := testKey(1)
	b.SetBytes(benchSize)
	b.ResetTimer()
	for range b.N {
		if err := EncryptTree(context.Background(), src, dst, k, 0); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := os.Remove(dst); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkDecryptTree decrypts the ciphertext of a 64 MiB file, fsync
// included.
func BenchmarkDecryptTree(b *testing.B) {
	dir, src := benchFile(b)
	enc := filepath.Join(dir, "enc")
	k := testKey(1)
	encrypt(b, src, enc, k, 0)
	dst := filepath.Join(dir, "dec")
	b.SetBytes(benchSize)
	b.ResetTimer()
	for range b.N {
		if err := DecryptTree(context.Background(), enc, dst, k, 0, "data.bin"); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := os.Remove(dst); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// onlyWriter hides *os.File's ReadFrom, so io.Copy moves the bytes through
// user space as encryption must.
type onlyWriter struct{ io.Writer }

// BenchmarkCopyBaseline copies the same 64 MiB file, fsync included, so
// EncryptTree and DecryptTree can be quoted as a ratio of it measured in
// the same run. "io.Copy" is a plain io.Copy between files (which Linux
// may do in the kernel with copy_file_range); "userspace" reads and writes
// through a 1 MiB buffer.
func BenchmarkCopyBaseline(b *testing.B) {
	dir, src := benchFile(b)
	dst := filepath.Join(dir, "copy")
	run := func(b *testing.B, copyFn func(out, in *os.File) error) {
		b.SetBytes(benchSize)
		for range b.N {
			in, err := os.Open(src)
			if err != nil {
				b.Fatal(err)
			}
			out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
			if err != nil {
				b.Fatal(err)
			}
			if err := copyFn(out, in); err != nil {
				b.Fatal(err)
			}
			if err := out.Sync(); err != nil {
				b.Fatal(err)
			}
			_ = out.Close()
			_ = in.Close()
			b.StopTimer()
			if err := os.Remove(dst); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	}
	b.Run("io.Copy", func(b *testing.B) {
		run(b, func(out, in *os.File) error { _, err := io.Copy(out, in); return err })
	})
	b.Run("userspace", func(b *testing.B) {
		buf := make([]byte, 1<<20)
		run(b, func(out, in *os.File) error {
			_, err := io.CopyBuffer(onlyWriter{out}, io.LimitReader(in, benchSize), buf)
			return err
		})
	})
}

// BenchmarkSeal measures the AEAD alone on 1 MiB segments, in memory, on
// one goroutine.
func BenchmarkSeal(b *testing.B) {
	l := mustLayout(b, 0)
	c := mustCodec(b, testKey(1), "data.bin")
	pt := randomBytes(b, l.p)
	ct := make([]byte, 0, l.c)
	b.SetBytes(l.p)
	b.ResetTimer()
	for i := range b.N {
		ct = c.seal(ct[:0], pt, int64(i), false)
	}
}
