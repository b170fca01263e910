package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A damaged state database (bytes flipped, cut short, zeroed) stops the
// node at start with an error that names the file and what to do; it
// never crashes it. The intact database still opens.
func TestDamagedStateRefused(t *testing.T) {
	home := t.TempDir()
	n, err := New(context.Background(), testConfig(t, home))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Share(context.Background(), randomFile(t, t.TempDir(), "f.bin", 3<<20), ShareOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(filepath.Join(home, StateFile))
	if err != nil {
		t.Fatal(err)
	}
	key, err := os.ReadFile(filepath.Join(home, "identity.key"))
	if err != nil {
		t.Fatal(err)
	}
	const page = 4096
	damage := map[string]func([]byte) []byte{
		"meta pages flipped": func(b []byte) []byte {
			for _, p := range []int{0, page} {
				for i := p + 16; i < p+80; i += 7 {
					b[i] ^= 0xff
				}
			}
			return b
		},
		"page headers flipped": func(b []byte) []byte {
			for p := 2 * page; p < len(b); p += page {
				for i := p; i < p+16; i++ {
					b[i] ^= 0x5a
				}
			}
			return b
		},
		"page contents flipped": func(b []byte) []byte {
			for p := 2 * page; p < len(b); p += page {
				for i := p + 16; i < p+page; i += 61 {
					b[i] ^= 0xa5
				}
			}
			return b
		},
		"cut short": func(b []byte) []byte {
			// Before the page that holds the last data written.
			end := len(b) - 1
			for end > 0 && b[end] == 0 {
				end--
			}
			return b[:end/page*page]
		},
		"cut to a page": func(b []byte) []byte { return b[:page] },
		"zeroed":        func(b []byte) []byte { return make([]byte, len(b)) },
		"empty":         func([]byte) []byte { return nil },
	}
	for name, f := range damage {
		t.Run(name, func(t *testing.T) {
			h := t.TempDir()
			db := filepath.Join(h, StateFile)
			if err := os.WriteFile(filepath.Join(h, "identity.key"), key, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(db, f(append([]byte(nil), good...)), 0o600); err != nil {
				t.Fatal(err)
			}
			n, err := New(context.Background(), testConfig(t, h))
			if err == nil {
				n.Close()
				if name == "empty" {
					return // an empty file is a new database
				}
				t.Fatal("a damaged state database was opened")
			}
			if !errors.Is(err, ErrStateDamaged) || !strings.Contains(err.Error(), db) || !strings.Contains(err.Error(), "move it aside") {
				t.Fatalf("error %q: want ErrStateDamaged naming %s and what to do", err, db)
			}
			t.Logf("%s: %v", name, strings.SplitN(err.Error(), "\n", 2)[0])
		})
	}
	n, err = New(context.Background(), testConfig(t, home))
	if err != nil {
		t.Fatalf("the intact database: %v", err)
	}
	n.Close()
}

// A start that fails part way (here: the listen port is taken) stops what
// it had started: the home is free for the next start, and no goroutine
// is left behind (TestMain checks).
func TestFailedStartReleasesHome(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	home := t.TempDir()
	cfg := testConfig(t, home)
	cfg.ListenAddrs = []string{fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", l.Addr().(*net.TCPAddr).Port)}
	if n, err := New(context.Background(), cfg); err == nil {
		n.Close()
		t.Fatal("started on a port in use")
	}
	n, err := New(context.Background(), testConfig(t, home))
	if err != nil {
		t.Fatalf("the home is still held after a failed start: %v", err)
	}
	n.Close()
}
