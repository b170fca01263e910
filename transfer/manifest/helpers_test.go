package manifest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/ipfs/go-cid"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// blockStore serves blocks to Load.
type blockStore map[cid.Cid][]byte

func (s blockStore) get(_ context.Context, c cid.Cid) ([]byte, error) {
	if d, ok := s[c]; ok {
		return d, nil
	}
	return nil, fmt.Errorf("block %s not found", c)
}

// writeFile creates name (and its parents) under dir with size bytes of
// deterministic content and the given permissions.
func writeFile(t testing.TB, dir, name string, size int, mode os.FileMode, seed byte) string {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, pattern(size, seed), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func mkdir(t testing.TB, dir, name string, mode os.FileMode) {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(name))
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

// pattern returns size bytes that differ between chunks and files.
func pattern(size int, seed byte) []byte {
	b := make([]byte, size)
	x := uint32(seed)*2654435761 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}
