package seal

import (
	"bytes"
	"context"
	"crypto/rand"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"
)

const (
	kib = 1 << 10
	mib = 1 << 20
)

// chunkSizes are the chunk sizes the round-trip tests use.
var chunkSizes = []int64{256 * kib, 1 * mib}

// testKey returns a fixed key made of b.
func testKey(b byte) Key {
	var k Key
	for i := range k {
		k[i] = b
	}
	return k
}

// randomBytes returns n random bytes.
func randomBytes(t testing.TB, n int64) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// writeFile writes data at path with mode perm, creating parents.
func writeFile(t testing.TB, path string, data []byte, perm fs.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil {
		t.Fatal(err)
	}
}

// sealBytes encrypts pt as the file at path, in memory.
func sealBytes(l layout, c *codec, pt []byte) []byte {
	n := l.segments(int64(len(pt)))
	var out []byte
	for i := int64(0); i < n; i++ {
		seg := pt[i*l.p : min((i+1)*l.p, int64(len(pt)))]
		out = c.seal(out, seg, i, i == n-1)
	}
	return out
}

// mustLayout returns the layout of a valid chunk size.
func mustLayout(t testing.TB, chunkSize int64) layout {
	t.Helper()
	l, err := newLayout(chunkSize)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// mustCodec returns the codec of path under k.
func mustCodec(t testing.TB, k Key, path string) *codec {
	t.Helper()
	aead, err := newAEAD(k)
	if err != nil {
		t.Fatal(err)
	}
	return newCodec(aead, path)
}

// encrypt runs EncryptTree and fails the test on error.
func encrypt(t testing.TB, src, dst string, k Key, chunkSize int64, opts ...Option) {
	t.Helper()
	if err := EncryptTree(context.Background(), src, dst, k, chunkSize, opts...); err != nil {
		t.Fatalf("EncryptTree: %v", err)
	}
}

// assertGone fails unless nothing exists at path.
func assertGone(t testing.TB, path string) {
	t.Helper()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Fatalf("%s was left behind (Lstat: %v)", path, err)
	}
}

// treeEntry is what compareTrees compares of one entry.
type treeEntry struct {
	dir   bool
	perm  fs.FileMode
	mtime time.Time
	data  []byte
}

// readTree lists the tree at root: relative slash path to entry.
func readTree(t testing.TB, root string) map[string]treeEntry {
	t.Helper()
	out := map[string]treeEntry{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		e := treeEntry{dir: d.IsDir(), perm: info.Mode().Perm(), mtime: info.ModTime()}
		if !d.IsDir() {
			if e.data, err = os.ReadFile(p); err != nil {
				return err
			}
		}
		out[filepath.ToSlash(rel)] = e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// compareTrees fails unless the trees at a and b have the same entries,
// types, permission bits and modification times, and, if data, contents.
func compareTrees(t testing.TB, a, b string, data bool) {
	t.Helper()
	ta, tb := readTree(t, a), readTree(t, b)
	if len(ta) != len(tb) {
		t.Fatalf("%s has %d entries, %s has %d", a, len(ta), b, len(tb))
	}
	for p, ea := range ta {
		eb, ok := tb[p]
		switch {
		case !ok:
			t.Fatalf("%q missing from %s", p, b)
		case ea.dir != eb.dir:
			t.Fatalf("%q: directory %v vs %v", p, ea.dir, eb.dir)
		case ea.perm != eb.perm:
			t.Fatalf("%q: mode %v vs %v", p, ea.perm, eb.perm)
		case !ea.mtime.Equal(eb.mtime):
			t.Fatalf("%q: modification time %v vs %v", p, ea.mtime, eb.mtime)
		case data && !bytes.Equal(ea.data, eb.data):
			t.Fatalf("%q: contents differ (%d vs %d bytes)", p, len(ea.data), len(eb.data))
		}
	}
}
