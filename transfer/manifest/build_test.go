package manifest

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestBuildCancelled(t *testing.T) {
	dir, _ := makeTree(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := BuildFromPath(ctx, dir, BuildOptions{ChunkSize: cs}); !errors.Is(err, context.Canceled) {
		t.Fatalf("BuildFromPath with a cancelled context: %v", err)
	}
}

// Cancelling while files are read stops the build at the next chunk.
func TestBuildCancelledWhileReading(t *testing.T) {
	dir, _ := makeTree(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	opened := 0
	hooks := buildHooks{beforeOpen: func(string) {
		if opened++; opened == 2 {
			cancel()
		}
	}}
	if _, err := build(ctx, dir, BuildOptions{ChunkSize: cs}, hooks); !errors.Is(err, context.Canceled) {
		t.Fatalf("build: %v", err)
	}
	if opened != 2 {
		t.Fatalf("%d files opened after cancellation", opened-2)
	}

	// Cancelled after the last byte is read, while chunks may still wait
	// for a worker: no manifest with missing digests comes out.
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	hooks = buildHooks{afterRead: func(p string) {
		if filepath.Base(p) == "z" {
			cancel()
		}
	}}
	if _, err := build(ctx, dir, BuildOptions{ChunkSize: cs}, hooks); !errors.Is(err, context.Canceled) {
		t.Fatalf("build cancelled after reading: %v", err)
	}
}

func TestBuildFileChanged(t *testing.T) {
	later := time.Now().Add(time.Hour)
	cases := []struct {
		name   string
		hooks  func(target string) buildHooks
		reason string
	}{
		{"grown while read", func(target string) buildHooks {
			return buildHooks{afterRead: func(p string) {
				if p == target {
					appendByte(t, p)
				}
			}}
		}, "size"},
		{"rewritten while read", func(target string) buildHooks {
			return buildHooks{afterRead: func(p string) {
				if p == target {
					if err := os.Chtimes(p, later, later); err != nil {
						t.Fatal(err)
					}
				}
			}}
		}, "modified at"},
		{"truncated after indexing", func(target string) buildHooks {
			return buildHooks{beforeOpen: func(p string) {
				if p == target {
					if err := os.Truncate(p, 10); err != nil {
						t.Fatal(err)
					}
				}
			}}
		}, "size 10"},
		{"truncated while read", func(target string) buildHooks {
			return buildHooks{beforeChunk: func(p string, off int64) {
				if p == target && off > 0 {
					if err := os.Truncate(p, 10); err != nil {
						t.Fatal(err)
					}
				}
			}}
		}, "shorter than the 262145 bytes"},
		{"replaced after indexing", func(target string) buildHooks {
			return buildHooks{beforeOpen: func(p string) {
				if p == target {
					tmp := p + ".new"
					if err := os.WriteFile(tmp, pattern(cs+1, 1), 0o644); err != nil {
						t.Fatal(err)
					}
					if err := os.Rename(tmp, p); err != nil {
						t.Fatal(err)
					}
				}
			}}
		}, "replaced"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir, _ := makeTree(t)
			target := filepath.Join(dir, "a.txt")
			_, err := build(context.Background(), dir, BuildOptions{ChunkSize: cs}, c.hooks(target))
			if !errors.Is(err, ErrFileChanged) || !strings.Contains(err.Error(), target) || !strings.Contains(err.Error(), c.reason) {
				t.Fatalf("build: %v\nwant ErrFileChanged naming %s (%s)", err, target, c.reason)
			}
		})
	}
}

func TestBuildChangedStillOK(t *testing.T) {
	// Changing a file that was already read and checked does not fail the
	// build: the FileStat records what was hashed, for later checks.
	dir, _ := makeTree(t)
	first := filepath.Join(dir, "a", "b", "deep.bin")
	hooks := buildHooks{beforeOpen: func(p string) {
		if strings.HasSuffix(p, "a.txt") {
			appendByte(t, first)
		}
	}}
	res, err := build(context.Background(), dir, BuildOptions{ChunkSize: cs}, hooks)
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(first)
	if err != nil {
		t.Fatal(err)
	}
	if res.Files[0].Path != first || res.Files[0].Size == info.Size() {
		t.Fatalf("FileStat %+v, file now %d bytes", res.Files[0], info.Size())
	}
}

func appendByte(t *testing.T, p string) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
}

func TestBuildSpecialFiles(t *testing.T) {
	dir, want := makeTree(t)
	if err := os.Symlink("a.txt", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	_, err := BuildFromPath(context.Background(), dir, BuildOptions{ChunkSize: cs})
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), filepath.Join(dir, "link")) || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("symlink: %v", err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "a", "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", filepath.Join(dir, "sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	res, err := BuildFromPath(context.Background(), dir, BuildOptions{ChunkSize: cs, SkipSpecial: true})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(res.Manifest.Entries, want) {
		t.Fatalf("special files are not skipped: %+v", res.Manifest.Entries)
	}

	// The path itself may be a link: it is followed, and names the share.
	link := filepath.Join(t.TempDir(), "latest")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	viaLink, err := BuildFromPath(context.Background(), link, BuildOptions{ChunkSize: cs, SkipSpecial: true})
	if err != nil {
		t.Fatal(err)
	}
	if viaLink.Manifest.Name != "latest" || !reflect.DeepEqual(viaLink.Manifest.Entries, want) {
		t.Fatalf("through a link: %+v", viaLink.Manifest)
	}
	if _, err := BuildFromPath(context.Background(), filepath.Join(dir, "sock"), BuildOptions{}); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("sharing a socket: %v", err)
	}
}

func TestBuildBadNames(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "share")
	writeFile(t, dir, `back\slash`, 1, 0o644, 1)
	_, err := BuildFromPath(context.Background(), dir, BuildOptions{})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `back\slash`) {
		t.Fatalf("backslash in a name: %v", err)
	}
	if _, err := BuildFromPath(context.Background(), filepath.Join(dir, "missing"), BuildOptions{}); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing path: %v", err)
	}
	if _, err := BuildFromPath(context.Background(), dir, BuildOptions{ChunkSize: 1000}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad chunk size: %v", err)
	}
}

func TestBuildProgress(t *testing.T) {
	dir, want := makeTree(t)
	var calls []BuildProgress
	_, err := BuildFromPath(context.Background(), dir, BuildOptions{ChunkSize: cs, Progress: func(p BuildProgress) { calls = append(calls, p) }})
	if err != nil {
		t.Fatal(err)
	}
	var size int64
	for _, e := range want {
		size += e.Size
	}
	last := BuildProgress{Files: 6, TotalFiles: 6, Bytes: size, TotalBytes: size}
	if len(calls) == 0 || calls[len(calls)-1] != last {
		t.Fatalf("progress %+v, want it to end with %+v", calls, last)
	}
}

// A share too large for one root fails before any file is read. Sparse
// files stand in for 210 TiB of data.
func TestBuildTooLarge(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "huge")
	for i := range 14 {
		p := writeFile(t, dir, string(rune('a'+i)), 0, 0o644, 0)
		if err := os.Truncate(p, 15<<40); err != nil {
			t.Skipf("the file system has no 15 TiB sparse files: %v", err)
		}
	}
	hooks := buildHooks{beforeOpen: func(p string) { t.Errorf("%s opened", p) }}
	_, err := build(context.Background(), dir, BuildOptions{ChunkSize: MinChunkSize}, hooks)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("build: %v", err)
	}
	t.Log(err)
}
