package seal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestRoundTripFile(t *testing.T) {
	for _, c := range chunkSizes {
		p := c - Overhead
		for _, size := range []int64{0, 1, p - 1, p, p + 1, 3*p + 5} {
			t.Run(fmt.Sprintf("chunk=%d/size=%d", c, size), func(t *testing.T) {
				dir := t.TempDir()
				src := filepath.Join(dir, "file.bin")
				data := randomBytes(t, size)
				writeFile(t, src, data, 0o640)
				k := testKey(3)
				enc := filepath.Join(dir, "enc")
				encrypt(t, src, enc, k, c)

				ct, err := os.ReadFile(enc)
				if err != nil {
					t.Fatal(err)
				}
				if int64(len(ct)) != CipherSize(size, c) {
					t.Fatalf("ciphertext is %d bytes, CipherSize says %d", len(ct), CipherSize(size, c))
				}
				if want := sealBytes(mustLayout(t, c), mustCodec(t, k, "file.bin"), data); !bytes.Equal(ct, want) {
					t.Fatal("ciphertext differs from the format's, sealed under the share name")
				}

				dec := filepath.Join(dir, "dec")
				if err := DecryptTree(context.Background(), enc, dec, k, c, "file.bin"); err != nil {
					t.Fatalf("DecryptTree: %v", err)
				}
				got, err := os.ReadFile(dec)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, data) {
					t.Fatal("decrypted file differs from the original")
				}
				for _, p := range []string{enc, dec} {
					info, err := os.Stat(p)
					if err != nil {
						t.Fatal(err)
					}
					if info.Mode().Perm() != 0o640 {
						t.Errorf("%s has mode %v, want 0640", p, info.Mode().Perm())
					}
				}
			})
		}
	}
}

// makeTree writes a directory tree with nested and empty directories, an
// empty file, files of several segments and various modes; it returns the
// root and the contents by share path.
func makeTree(t *testing.T, dir string, c int64) (string, map[string][]byte) {
	t.Helper()
	p := c - Overhead
	root := filepath.Join(dir, "share")
	files := map[string][]byte{
		"a.txt":             []byte("alpha"),
		"sub/b.bin":         randomBytes(t, 2*p+3),
		"sub/deeper/c.bin":  randomBytes(t, p),
		"sub/deeper/empty":  {},
		"ro/readonly.txt":   []byte("read only"),
		"z-last.bin":        randomBytes(t, p+1),
		"sub/deeper/d e f!": []byte("odd name"),
	}
	modes := map[string]os.FileMode{"ro/readonly.txt": 0o444, "a.txt": 0o600, "z-last.bin": 0o755}
	for name, data := range files {
		mode, ok := modes[name]
		if !ok {
			mode = 0o644
		}
		writeFile(t, filepath.Join(root, filepath.FromSlash(name)), data, mode)
	}
	if err := os.MkdirAll(filepath.Join(root, "emptydir", "nested-empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	old := time.Date(2001, 2, 3, 4, 5, 6, 7000, time.UTC)
	if err := os.Chtimes(filepath.Join(root, "a.txt"), time.Time{}, old); err != nil {
		t.Fatal(err)
	}
	for d, mode := range map[string]os.FileMode{"ro": 0o555, "emptydir": 0o700, "sub/deeper": 0o750} {
		if err := os.Chmod(filepath.Join(root, filepath.FromSlash(d)), mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chtimes(filepath.Join(root, "sub"), time.Time{}, old); err != nil {
		t.Fatal(err)
	}
	return root, files
}

// allowRemoval makes every directory under dir writable at the end of the
// test, so t.TempDir can remove read-only ones.
func allowRemoval(t *testing.T, dir string) {
	t.Cleanup(func() {
		_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				_ = os.Chmod(p, 0o755)
			}
			return nil
		})
	})
}

func TestRoundTripTree(t *testing.T) {
	for _, c := range chunkSizes {
		t.Run(fmt.Sprint(c), func(t *testing.T) {
			dir := t.TempDir()
			allowRemoval(t, dir)
			root, files := makeTree(t, dir, c)
			k := testKey(5)
			enc := filepath.Join(dir, "enc")
			encrypt(t, root, enc, k, c)
			compareTrees(t, root, enc, false)

			l := mustLayout(t, c)
			for name, data := range files {
				ct, err := os.ReadFile(filepath.Join(enc, filepath.FromSlash(name)))
				if err != nil {
					t.Fatal(err)
				}
				// Paths are relative to the shared directory, not
				// prefixed by its name.
				if want := sealBytes(l, mustCodec(t, k, name), data); !bytes.Equal(ct, want) {
					t.Fatalf("%s: ciphertext is not the format's for path %q", name, name)
				}
			}

			dec := filepath.Join(dir, "dec")
			if err := DecryptTree(context.Background(), enc, dec, k, c, "share"); err != nil {
				t.Fatalf("DecryptTree: %v", err)
			}
			compareTrees(t, root, dec, true)
		})
	}
}

func TestWorkers(t *testing.T) {
	dir := t.TempDir()
	const c = 256 * kib
	data := randomBytes(t, 9*(c-Overhead)+100)
	src := filepath.Join(dir, "f")
	writeFile(t, src, data, 0o644)
	k := testKey(8)
	var first []byte
	for _, w := range []int{1, 2, 3, 16} {
		enc := filepath.Join(dir, fmt.Sprint("enc", w))
		encrypt(t, src, enc, k, c, Workers(w))
		ct, err := os.ReadFile(enc)
		if err != nil {
			t.Fatal(err)
		}
		if first == nil {
			first = ct
		} else if !bytes.Equal(ct, first) {
			t.Fatalf("ciphertext with %d workers differs from 1 worker's", w)
		}
		dec := filepath.Join(dir, fmt.Sprint("dec", w))
		if err := DecryptTree(context.Background(), enc, dec, k, c, "f", Workers(w)); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(dec); !bytes.Equal(got, data) {
			t.Fatalf("round trip with %d workers differs", w)
		}
	}
}

func TestNoPlaintextInCiphertext(t *testing.T) {
	const marker = "SHOAL-PLAINTEXT-MARKER"
	dir := t.TempDir()
	root := filepath.Join(dir, "share")
	big := bytes.Repeat([]byte(marker), (3*mib)/len(marker))
	writeFile(t, filepath.Join(root, "big.txt"), big, 0o644)
	writeFile(t, filepath.Join(root, "small.txt"), []byte(marker), 0o644)
	enc := filepath.Join(dir, "enc")
	encrypt(t, root, enc, testKey(1), 256*kib)
	for _, name := range []string{"big.txt", "small.txt"} {
		ct, err := os.ReadFile(filepath.Join(enc, name))
		if err != nil {
			t.Fatal(err)
		}
		if len(ct) == 0 {
			t.Fatalf("%s: empty ciphertext", name)
		}
		if bytes.Contains(ct, []byte(marker)) || bytes.Contains(ct, []byte(marker[:8])) {
			t.Fatalf("%s: ciphertext contains the plaintext marker", name)
		}
	}
}

func TestWrongKey(t *testing.T) {
	dir := t.TempDir()
	root, _ := makeTree(t, dir, 256*kib)
	allowRemoval(t, dir)
	enc := filepath.Join(dir, "enc")
	encrypt(t, root, enc, testKey(1), 256*kib)
	dec := filepath.Join(dir, "dec")
	err := DecryptTree(context.Background(), enc, dec, testKey(2), 256*kib, "share")
	if !errors.Is(err, ErrWrongKey) {
		t.Fatalf("DecryptTree with the wrong key: %v, want ErrWrongKey", err)
	}
	if !strings.Contains(err.Error(), "does not match") {
		t.Errorf("error does not say the key does not match: %v", err)
	}
	assertGone(t, dec)

	// A single file decrypted under another name fails the same way.
	src := filepath.Join(dir, "one")
	writeFile(t, src, []byte("contents"), 0o644)
	encrypt(t, src, filepath.Join(dir, "one.enc"), testKey(1), 256*kib)
	err = DecryptTree(context.Background(), filepath.Join(dir, "one.enc"), dec, testKey(1), 256*kib, "other")
	if !errors.Is(err, ErrWrongKey) {
		t.Fatalf("DecryptTree under the wrong name: %v, want ErrWrongKey", err)
	}
	assertGone(t, dec)
}

// tamper encrypts a fresh tree, applies f to the ciphertext tree, and
// returns DecryptTree's error after checking that nothing is left at dst.
func tamper(t *testing.T, f func(enc string)) error {
	t.Helper()
	const c = 256 * kib
	p := int64(c - Overhead)
	dir := t.TempDir()
	root := filepath.Join(dir, "share")
	writeFile(t, filepath.Join(root, "a.bin"), randomBytes(t, 3*p), 0o644) // three full segments
	writeFile(t, filepath.Join(root, "b.bin"), randomBytes(t, 3*p), 0o644)
	writeFile(t, filepath.Join(root, "c.bin"), randomBytes(t, 2*p+7), 0o644)
	enc := filepath.Join(dir, "enc")
	encrypt(t, root, enc, testKey(1), c)
	f(enc)
	dec := filepath.Join(dir, "dec")
	err := DecryptTree(context.Background(), enc, dec, testKey(1), c, "share")
	if err == nil {
		t.Fatal("DecryptTree accepted tampered ciphertext")
	}
	assertGone(t, dec)
	return err
}

// modify rewrites a file with f.
func modify(t *testing.T, path string, f func([]byte) []byte) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, f(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestTampering(t *testing.T) {
	const c = 256 * kib
	swap := func(b []byte, i, j int) []byte {
		si, sj := slices.Clone(b[i*c:(i+1)*c]), slices.Clone(b[j*c:(j+1)*c])
		copy(b[i*c:], sj)
		copy(b[j*c:], si)
		return b
	}
	cases := []struct {
		name string
		f    func(t *testing.T, enc string)
		want error
	}{
		{"flipped byte", func(t *testing.T, enc string) {
			modify(t, filepath.Join(enc, "b.bin"), func(b []byte) []byte { b[c+100] ^= 1; return b })
		}, ErrDamaged},
		{"flipped tag byte", func(t *testing.T, enc string) {
			modify(t, filepath.Join(enc, "c.bin"), func(b []byte) []byte { b[len(b)-1] ^= 0x80; return b })
		}, ErrDamaged},
		{"flipped byte in first segment", func(t *testing.T, enc string) {
			modify(t, filepath.Join(enc, "a.bin"), func(b []byte) []byte { b[5] ^= 1; return b })
		}, ErrWrongKey}, // documented: indistinguishable from a wrong key
		{"truncated at a segment boundary", func(t *testing.T, enc string) {
			modify(t, filepath.Join(enc, "b.bin"), func(b []byte) []byte { return b[:2*c] })
		}, ErrDamaged},
		{"first file cut to one segment", func(t *testing.T, enc string) {
			modify(t, filepath.Join(enc, "a.bin"), func(b []byte) []byte { return b[:c] })
		}, ErrDamaged},
		{"truncated mid-segment", func(t *testing.T, enc string) {
			modify(t, filepath.Join(enc, "c.bin"), func(b []byte) []byte { return b[:len(b)-1] })
		}, ErrDamaged},
		{"impossible length", func(t *testing.T, enc string) {
			modify(t, filepath.Join(enc, "c.bin"), func(b []byte) []byte { return b[:2*c+5] })
		}, ErrDamaged},
		{"extended by a segment", func(t *testing.T, enc string) {
			modify(t, filepath.Join(enc, "b.bin"), func(b []byte) []byte { return append(b, b[:c]...) })
		}, ErrDamaged},
		{"segments 1 and 2 swapped", func(t *testing.T, enc string) {
			modify(t, filepath.Join(enc, "b.bin"), func(b []byte) []byte { return swap(b, 1, 2) })
		}, ErrDamaged},
		{"segments 0 and 1 swapped", func(t *testing.T, enc string) {
			modify(t, filepath.Join(enc, "b.bin"), func(b []byte) []byte { return swap(b, 0, 1) })
		}, ErrDamaged},
		{"segments 0 and 1 of the first file swapped", func(t *testing.T, enc string) {
			modify(t, filepath.Join(enc, "a.bin"), func(b []byte) []byte { return swap(b, 0, 1) })
		}, ErrWrongKey},
		{"two files swapped", func(t *testing.T, enc string) {
			a, b := filepath.Join(enc, "a.bin"), filepath.Join(enc, "b.bin")
			tmp := filepath.Join(enc, "tmp")
			for _, mv := range [][2]string{{a, tmp}, {b, a}, {tmp, b}} {
				if err := os.Rename(mv[0], mv[1]); err != nil {
					t.Fatal(err)
				}
			}
		}, ErrWrongKey},
		{"segment moved from another file", func(t *testing.T, enc string) {
			other, err := os.ReadFile(filepath.Join(enc, "a.bin"))
			if err != nil {
				t.Fatal(err)
			}
			modify(t, filepath.Join(enc, "b.bin"), func(b []byte) []byte { copy(b[c:2*c], other[c:2*c]); return b })
		}, ErrDamaged},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tamper(t, func(enc string) { tc.f(t, enc) })
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestDestination(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	writeFile(t, filepath.Join(src, "f"), []byte("x"), 0o644)
	file := filepath.Join(dir, "file")
	writeFile(t, file, []byte("y"), 0o644)
	existing := filepath.Join(dir, "existing")
	writeFile(t, filepath.Join(existing, "keep"), []byte("keep me"), 0o644)
	ctx := context.Background()

	for _, s := range []string{src, file} {
		for _, dst := range []string{existing, file} {
			if s == dst {
				continue
			}
			err := EncryptTree(ctx, s, dst, testKey(1), 0)
			if err == nil || !strings.Contains(err.Error(), "already exists") {
				t.Fatalf("EncryptTree(%s, %s) onto an existing path: %v", s, dst, err)
			}
		}
	}
	if got, err := os.ReadFile(filepath.Join(existing, "keep")); err != nil || string(got) != "keep me" {
		t.Fatalf("the existing destination was changed: %q, %v", got, err)
	}
	if got, err := os.ReadFile(file); err != nil || string(got) != "y" {
		t.Fatalf("the existing destination file was changed: %q, %v", got, err)
	}

	inside := filepath.Join(src, "enc")
	if err := EncryptTree(ctx, src, inside, testKey(1), 0); err == nil || !strings.Contains(err.Error(), "inside the source") {
		t.Fatalf("EncryptTree into its own source: %v", err)
	}
	assertGone(t, inside)

	if err := EncryptTree(ctx, filepath.Join(dir, "missing"), filepath.Join(dir, "out"), testKey(1), 0); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("EncryptTree of a missing source: %v", err)
	}
	if err := EncryptTree(ctx, src, filepath.Join(dir, "out"), testKey(1), 12345); err == nil {
		t.Fatal("EncryptTree accepted chunk size 12345")
	}
	assertGone(t, filepath.Join(dir, "out"))
	if err := DecryptTree(ctx, src, filepath.Join(dir, "out"), testKey(1), 0, "a/b"); err == nil {
		t.Fatal("DecryptTree accepted a share name with a slash")
	}
}

func TestSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "share")
	writeFile(t, filepath.Join(root, "a"), []byte("a"), 0o644)
	writeFile(t, filepath.Join(root, "sub", "b"), []byte("b"), 0o644)
	if err := os.Symlink("a", filepath.Join(root, "sub", "link")); err != nil {
		t.Skip("no symbolic links:", err)
	}
	enc := filepath.Join(dir, "enc")
	err := EncryptTree(context.Background(), root, enc, testKey(1), 0)
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("EncryptTree with a symbolic link: %v", err)
	}
	assertGone(t, enc)

	var skipped []string
	encrypt(t, root, enc, testKey(1), 0, SkipSpecial(func(path, kind string) { skipped = append(skipped, path+" "+kind) }))
	if !slices.Equal(skipped, []string{"sub/link symbolic link"}) {
		t.Fatalf("skipped %q", skipped)
	}
	assertGone(t, filepath.Join(enc, "sub", "link"))

	if _, err := os.Stat(os.DevNull); err == nil {
		err := EncryptTree(context.Background(), os.DevNull, filepath.Join(dir, "null.enc"), testKey(1), 0)
		if !errors.Is(err, ErrUnsupported) {
			t.Fatalf("EncryptTree of %s: %v, want ErrUnsupported", os.DevNull, err)
		}
		assertGone(t, filepath.Join(dir, "null.enc"))
	}

	// A symbolic link given as the source is followed, and the share is
	// named after the link.
	link := filepath.Join(dir, "alias")
	if err := os.Symlink(filepath.Join(root, "a"), link); err != nil {
		t.Fatal(err)
	}
	encrypt(t, link, filepath.Join(dir, "alias.enc"), testKey(1), 0)
	dec := filepath.Join(dir, "alias.dec")
	if err := DecryptTree(context.Background(), filepath.Join(dir, "alias.enc"), dec, testKey(1), 0, "alias"); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(dec); string(got) != "a" {
		t.Fatalf("decrypted %q", got)
	}
}

// cancelAfter is a context whose Err reports cancellation from its n-th
// call on, so tests can stop a call at a fixed point.
type cancelAfter struct {
	context.Context
	n atomic.Int64
}

func (c *cancelAfter) Err() error {
	if c.n.Add(-1) < 0 {
		return context.Canceled
	}
	return nil
}

func TestCancel(t *testing.T) {
	const c = 256 * kib
	dir := t.TempDir()
	root := filepath.Join(dir, "share")
	writeFile(t, filepath.Join(root, "a.bin"), randomBytes(t, 20*c), 0o644)
	writeFile(t, filepath.Join(root, "b.bin"), randomBytes(t, 20*c), 0o644)
	enc := filepath.Join(dir, "enc")
	for _, n := range []int64{0, 1, 3, 10, 30} {
		ctx := &cancelAfter{Context: context.Background()}
		ctx.n.Store(n)
		err := EncryptTree(ctx, root, enc, testKey(1), c)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("EncryptTree cancelled after %d checks: %v", n, err)
		}
		assertGone(t, enc)
	}

	// A real cancellation while workers run.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := EncryptTree(ctx, root, enc, testKey(1), c); !errors.Is(err, context.Canceled) {
		t.Fatalf("EncryptTree with a cancelled context: %v", err)
	}
	assertGone(t, enc)

	encrypt(t, root, enc, testKey(1), c)
	dec := filepath.Join(dir, "dec")
	for _, n := range []int64{0, 5, 30} {
		ctx := &cancelAfter{Context: context.Background()}
		ctx.n.Store(n)
		if err := DecryptTree(ctx, enc, dec, testKey(1), c, "share"); !errors.Is(err, context.Canceled) {
			t.Fatalf("DecryptTree cancelled after %d checks: %v", n, err)
		}
		assertGone(t, dec)
	}
}

// TestFileChanged checks that a file growing during encryption fails it.
func TestFileChanged(t *testing.T) {
	const c = 256 * kib
	dir := t.TempDir()
	src := filepath.Join(dir, "f")
	writeFile(t, src, randomBytes(t, 4*c), 0o644)
	ctx := &growOnErr{Context: context.Background(), path: src}
	enc := filepath.Join(dir, "enc")
	err := EncryptTree(ctx, src, enc, testKey(1), c, Workers(1))
	if err == nil || !strings.Contains(err.Error(), "changed while being encrypted") {
		t.Fatalf("EncryptTree of a growing file: %v", err)
	}
	assertGone(t, enc)
}

// growOnErr appends to a file the third time Err is called: while the
// file's segments are being encrypted.
type growOnErr struct {
	context.Context
	path  string
	calls int
}

func (g *growOnErr) Err() error {
	g.calls++
	if g.calls == 3 {
		f, err := os.OpenFile(g.path, os.O_APPEND|os.O_WRONLY, 0)
		if err == nil {
			_, _ = f.Write([]byte("more"))
			_ = f.Close()
		}
	}
	return nil
}

func TestEmptyFiles(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "share")
	writeFile(t, filepath.Join(root, "a-empty"), nil, 0o644)
	enc := filepath.Join(dir, "enc")
	encrypt(t, root, enc, testKey(1), 0)
	// Nothing to authenticate: documented to decrypt with any key.
	if err := DecryptTree(context.Background(), enc, filepath.Join(dir, "dec"), testKey(2), 0, "share"); err != nil {
		t.Fatalf("all-empty share: %v", err)
	}

	// The key is checked on the first file that has a segment.
	writeFile(t, filepath.Join(root, "b"), []byte("b"), 0o644)
	enc2 := filepath.Join(dir, "enc2")
	encrypt(t, root, enc2, testKey(1), 0)
	dec := filepath.Join(dir, "dec2")
	if err := DecryptTree(context.Background(), enc2, dec, testKey(2), 0, "share"); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("wrong key after an empty file: %v, want ErrWrongKey", err)
	}
	assertGone(t, dec)
}
