package transfer

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/shoalnet/shoal/transfer/manifest"
)

// A fetch of a share that records times gives every file and directory
// its time and mode, after the last write inside it; the copy it leaves
// is served as it is (its recorded state matches the disk).
func TestFetchRestoresTimes(t *testing.T) {
	a, ha := newHostService(t)
	b, hb := newHostService(t)
	if err := hb.Connect(context.Background(), peer.AddrInfo{ID: ha.ID(), Addrs: ha.Addrs()}); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "set")
	data := randomBytes(3*manifest.MinChunkSize+17, 7)
	files := map[string][]byte{"sub/deep/f.bin": data, "sub/g.txt": []byte("g\n"), "top.txt": []byte("top\n"), "empty": nil}
	for p, d := range files {
		p = filepath.Join(src, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, d, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(src, "emptydir"), 0o750); err != nil {
		t.Fatal(err)
	}
	base := time.Date(2001, 2, 3, 4, 5, 6, 789, time.UTC)
	want := map[string]time.Time{}
	for i, p := range []string{"sub/deep/f.bin", "sub/deep", "sub/g.txt", "sub", "top.txt", "empty", "emptydir"} {
		tm := base.Add(time.Duration(i) * 25 * time.Hour)
		want[p] = tm
		if err := os.Chtimes(filepath.Join(src, filepath.FromSlash(p)), tm, tm); err != nil {
			t.Fatal(err)
		}
	}
	rec, err := a.Share(context.Background(), src, ShareOptions{Build: manifest.BuildOptions{ChunkSize: manifest.MinChunkSize, Times: true}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dst := filepath.Join(t.TempDir(), "copy")
	if _, err := b.Fetch(ctx, rec.Root, dst, FetchOptions{Peers: []peer.ID{ha.ID()}}); err != nil {
		t.Fatal(err)
	}
	for p, tm := range want {
		st, err := os.Stat(filepath.Join(dst, filepath.FromSlash(p)))
		if err != nil {
			t.Fatal(err)
		}
		if !st.ModTime().Equal(tm) {
			t.Errorf("%s: modified at %v, want %v", p, st.ModTime().UTC(), tm)
		}
		if wantMode := map[bool]os.FileMode{true: 0o755, false: 0o640}[st.IsDir()]; p != "emptydir" && st.Mode().Perm() != wantMode {
			t.Errorf("%s: mode %v, want %v", p, st.Mode().Perm(), wantMode)
		}
	}
	// The fetched copy is served: the recorded sizes and times are the
	// ones the files have now.
	r, err := b.Open(ctx, rec.Root, "sub/deep/f.bin", OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if !r.ModTime().Equal(want["sub/deep/f.bin"]) {
		t.Errorf("reader's time %v", r.ModTime())
	}
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back from the copy: %d bytes, %v", len(got), err)
	}
}
