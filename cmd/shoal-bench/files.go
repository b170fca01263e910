package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
)

// parseSize reads a byte count: a plain number, or one with a binary
// (KiB, MiB, GiB, TiB) or decimal (kB, MB, GB, TB) unit.
func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{
		{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40},
		{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12},
		{"b", 1},
	}
	t := strings.ToLower(strings.TrimSpace(s))
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseFloat(t, 64)
	if err != nil || n <= 0 || n*float64(mult) > 1<<50 {
		return 0, fmt.Errorf("size %q: want a positive size such as 1GiB, 512MiB or 1048576", s)
	}
	return int64(n * float64(mult)), nil
}

// sizeFlag is a flag.Value holding a byte count.
type sizeFlag struct {
	n    int64
	text string
}

func (f *sizeFlag) String() string { return f.text }

func (f *sizeFlag) Set(s string) error {
	n, err := parseSize(s)
	if err != nil {
		return err
	}
	f.n, f.text = n, s
	return nil
}

func newSizeFlag(def string) *sizeFlag {
	f := &sizeFlag{}
	if err := f.Set(def); err != nil {
		panic(err) // a constant
	}
	return f
}

// formatSize prints n with the largest binary unit that divides it, else
// in bytes.
func formatSize(n int64) string {
	for _, u := range []struct {
		name string
		size int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.size && n%u.size == 0 {
			return fmt.Sprintf("%d%s", n/u.size, u.name)
		}
	}
	return strconv.FormatInt(n, 10)
}

// workDir creates a new directory for a benchmark's files under parent
// (os.TempDir() when empty) and returns it with a function that removes
// it.
func workDir(parent string) (string, func(), error) {
	dir, err := os.MkdirTemp(parent, "shoal-bench-")
	if err != nil {
		return "", nil, fmt.Errorf("create work directory: %w", err)
	}
	cleanup := func() { os.RemoveAll(dir) }
	abs, err := filepath.Abs(dir)
	if err != nil {
		cleanup()
		return "", nil, err
	}
	return abs, cleanup, nil
}

// writeRandomFile writes size random bytes to path, fsyncs them, and
// returns their SHA-256. The file stays in the page cache.
func writeRandomFile(ctx context.Context, path string, size int64) (sum [sha256.Size]byte, err error) {
	var seed [32]byte
	rand.Read(seed[:])
	src := mrand.NewChaCha8(seed)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return sum, err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for left := size; left > 0; {
		if err := ctx.Err(); err != nil {
			return sum, err
		}
		b := buf[:min(int64(len(buf)), left)]
		src.Read(b)
		h.Write(b)
		if _, err := f.Write(b); err != nil {
			return sum, fmt.Errorf("write %s: %w", path, err)
		}
		left -= int64(len(b))
	}
	if err := f.Sync(); err != nil {
		return sum, err
	}
	copy(sum[:], h.Sum(nil))
	return sum, nil
}

// fileSHA256 returns the SHA-256 of the file at path and its size.
func fileSHA256(path string) (sum [sha256.Size]byte, size int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return sum, 0, err
	}
	defer f.Close()
	h := sha256.New()
	size, err = io.Copy(h, bufio.NewReaderSize(f, 1<<20))
	if err != nil {
		return sum, 0, err
	}
	copy(sum[:], h.Sum(nil))
	return sum, size, nil
}

// checkSame fails unless the file at path has the given size and SHA-256.
func checkSame(path string, size int64, want [sha256.Size]byte) error {
	got, n, err := fileSHA256(path)
	if err != nil {
		return fmt.Errorf("verify %s: %w", path, err)
	}
	if n != size || got != want {
		return fmt.Errorf("verify %s: %d bytes with SHA-256 %x, want %d bytes with %x", path, n, got[:8], size, want[:8])
	}
	return nil
}

// profiler writes one CPU profile per measured section when prefix is set.
type profiler struct{ prefix string }

// start begins a profile named prefix.name.pprof; the returned function
// ends it.
func (p profiler) start(name string) (stop func() error, err error) {
	if p.prefix == "" {
		return func() error { return nil }, nil
	}
	f, err := os.Create(p.prefix + "." + name + ".pprof")
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() error {
		pprof.StopCPUProfile()
		return f.Close()
	}, nil
}

// ctxErr prefers the context's error: after an interrupt, "context
// canceled" says more than the I/O error it caused.
func ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil && err != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("%w (%v)", cerr, err)
	}
	return err
}
