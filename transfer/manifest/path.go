package manifest

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"
)

// checkPath reports why p is not a valid entry path, or nil.
func checkPath(p string) error {
	switch {
	case p == "":
		return errors.New("empty path")
	case len(p) > maxPathLen:
		return fmt.Errorf("path is %d bytes, more than the limit of %d", len(p), maxPathLen)
	case p[0] == '/':
		return errors.New("absolute path")
	case p[len(p)-1] == '/':
		return errors.New("trailing slash")
	}
	for c := range strings.SplitSeq(p, "/") {
		if err := checkComponent(c); err != nil {
			return err
		}
	}
	return nil
}

// checkComponent reports why c is not a valid path component (or share
// name), or nil.
func checkComponent(c string) error {
	switch {
	case c == "":
		return errors.New("empty path component")
	case c == "." || c == "..":
		return fmt.Errorf("path component %q", c)
	case len(c) > maxComponentLen:
		return fmt.Errorf("path component is %d bytes, more than the limit of %d", len(c), maxComponentLen)
	case !utf8.ValidString(c):
		return errors.New("not valid UTF-8")
	case strings.IndexByte(c, 0) >= 0:
		return errors.New("contains a NUL byte")
	case strings.IndexByte(c, '\\') >= 0:
		return errors.New("contains a backslash")
	case strings.IndexByte(c, '/') >= 0:
		return errors.New("contains a slash")
	}
	return nil
}

// comparePaths orders entry paths component by component: byte-wise, with
// '/' before every other byte. A directory is followed at once by everything
// below it ("a", "a/b", "a/c", "a.txt"), which is the order of a depth-first
// walk visiting names in byte order.
func comparePaths(a, b string) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		x, y := a[i], b[i]
		if x == y {
			continue
		}
		switch {
		case x == '/':
			return -1
		case y == '/':
			return 1
		case x < y:
			return -1
		default:
			return 1
		}
	}
	switch {
	case len(a) < len(b):
		return -1
	case len(a) > len(b):
		return 1
	}
	return 0
}

// parentDir returns the parent of p, or "" at the share root.
func parentDir(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i]
	}
	return ""
}

// entryChecker validates a sequence of entries, in order, with memory
// proportional to the path depth only, and assigns their FirstChunk. The
// builder and the decoder share it, so they accept exactly the same
// manifests.
type entryChecker struct {
	chunkSize int64
	n         int64    // entries seen
	files     int64    // non-directory entries seen
	chunks    int64    // chunks of the entries seen
	size      int64    // bytes of the entries seen
	prev      string   // previous entry's path
	prevDir   bool     // previous entry is a directory
	dirs      []string // directories that are ancestors of (or equal to) prev
}

// add checks e against the rules and the entries before it and sets
// e.FirstChunk. The error does not name the entry; the caller does.
// The modification times a manifest can hold: int64 nanoseconds since the
// Unix epoch.
var (
	minTime = time.Unix(0, math.MinInt64)
	maxTime = time.Unix(0, math.MaxInt64)
)

func (c *entryChecker) add(e *Entry) error {
	if err := checkPath(e.Path); err != nil {
		return err
	}
	if c.n > 0 && comparePaths(c.prev, e.Path) >= 0 {
		if c.prev == e.Path {
			return errors.New("duplicate entry")
		}
		return fmt.Errorf("out of order: follows %s", shorten(c.prev))
	}
	parent := parentDir(e.Path)
	for len(c.dirs) > 0 && !strings.HasPrefix(e.Path, c.dirs[len(c.dirs)-1]+"/") {
		c.dirs = c.dirs[:len(c.dirs)-1]
	}
	top := ""
	if len(c.dirs) > 0 {
		top = c.dirs[len(c.dirs)-1]
	}
	if parent != top {
		if c.n > 0 && !c.prevDir && parent == c.prev {
			return fmt.Errorf("parent %s is a file", shorten(parent))
		}
		return fmt.Errorf("parent directory %s is not listed before it", shorten(parent))
	}
	switch {
	case e.Size < 0:
		return fmt.Errorf("negative size %d", e.Size)
	case e.Dir && e.Size != 0:
		return fmt.Errorf("directory with size %d", e.Size)
	case e.Mode&^0o777 != 0:
		return fmt.Errorf("mode %#o has bits other than permissions (0o777)", uint32(e.Mode))
	case e.Size > math.MaxInt64-c.size:
		return errors.New("total size overflows 63 bits")
	case !e.ModTime.IsZero() && (e.ModTime.Before(minTime) || e.ModTime.After(maxTime)):
		return fmt.Errorf("modification time %s is outside the years 1678 to 2262 that nanosecond Unix times cover", e.ModTime.Format(time.RFC3339))
	}
	e.FirstChunk = c.chunks
	c.chunks += e.Chunks(c.chunkSize)
	c.size += e.Size
	c.n++
	if !e.Dir {
		c.files++
	}
	c.prev, c.prevDir = e.Path, e.Dir
	if e.Dir {
		c.dirs = append(c.dirs, e.Path)
	}
	return nil
}

// shorten quotes s for an error message, cutting it short if it is long.
func shorten(s string) string {
	const keep = 80
	if len(s) <= keep {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprintf("%q...(%d bytes)", s[:keep], len(s))
}

// checkChunkSize reports why n is not an allowed chunk size, or nil.
func checkChunkSize(n int64) error {
	if n < MinChunkSize || n > MaxChunkSize || n&(n-1) != 0 {
		return fmt.Errorf("chunk size %d is not a power of two between %d and %d", n, MinChunkSize, MaxChunkSize)
	}
	return nil
}
