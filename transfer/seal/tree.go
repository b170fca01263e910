package seal

import (
	"context"
	"crypto/cipher"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// Option adjusts EncryptTree and DecryptTree.
type Option func(*options)

type options struct {
	skipSpecial bool
	skipped     func(path, kind string)
	workers     int
}

// SkipSpecial leaves symbolic links, devices, sockets and named pipes
// inside a directory out of the output instead of failing with
// ErrUnsupported, as `shoal share --skip-special` does. skipped, if not
// nil, is told the slash-separated path and kind ("symbolic link", ...) of
// each entry left out. The source given itself must still be a regular
// file or a directory.
func SkipSpecial(skipped func(path, kind string)) Option {
	return func(o *options) { o.skipSpecial, o.skipped = true, skipped }
}

// Workers sets how many goroutines encrypt or decrypt the segments of a
// file at once; the default, and any n < 1, is runtime.GOMAXPROCS(0).
// Memory use is about 2 segment buffers a worker.
func Workers(n int) Option {
	return func(o *options) { o.workers = n }
}

// EncryptTree encrypts the file or directory src into a new ciphertext
// tree at dst, for sharing with chunk size chunkSize (0 means the default,
// 1 MiB; it must be the chunk size the ciphertext is then shared with).
// For a file, dst becomes one file, sealed under the path
// filepath.Base(src), the share's name; for a directory, dst becomes a
// directory with the same entries, each file sealed under its path
// relative to src ("sub/a.bin"). Names, permission bits and modification
// times are copied; see the package documentation for the format.
//
// k must be a new key (NewKey) used for no other EncryptTree call:
// encrypting changed contents again under the same key reuses nonces and
// breaks confidentiality and authenticity.
//
// dst must not exist, and must not be inside src. A symbolic link given as
// src is followed; inside a directory, symbolic links and other special
// files fail with ErrUnsupported unless the SkipSpecial option is given. A
// file whose size or modification time changes while it is read fails the
// call: retry once it is stable.
//
// EncryptTree reads and writes a segment at a time, with about two segment
// buffers per worker (see Workers), and fsyncs every file and directory it
// writes. When ctx ends it returns ctx.Err() promptly. On any error it
// removes whatever it wrote at dst.
func EncryptTree(ctx context.Context, src, dst string, k Key, chunkSize int64, opts ...Option) error {
	t, err := newTree(k, chunkSize, false, opts)
	if err != nil {
		return err
	}
	return t.convert(ctx, src, dst, "")
}

// DecryptTree decrypts the ciphertext tree src, written by EncryptTree with
// key k and chunk size chunkSize (0 means the default), into a new
// plaintext tree at dst. name is the share's name (from its manifest); it
// is the path a single-file share's file was sealed under (when empty, the
// base name of src is used), and is ignored for a directory share. Every segment is authenticated before its
// plaintext is written.
//
// When the first segment opened does not authenticate, the error wraps
// ErrWrongKey; any later failure, or a ciphertext file whose length no
// plaintext produces, wraps ErrDamaged (see the package documentation).
// dst must not exist; names, permission bits and modification times are
// copied; special files are refused with ErrUnsupported unless SkipSpecial
// is given. Memory, fsync, cancellation and cleanup are as for
// EncryptTree: on any error nothing is left at dst.
func DecryptTree(ctx context.Context, src, dst string, k Key, chunkSize int64, name string, opts ...Option) error {
	t, err := newTree(k, chunkSize, true, opts)
	if err != nil {
		return err
	}
	if strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return fmt.Errorf("seal: share name %q is not one path component: give the name from the share's manifest", shorten(name))
	}
	return t.convert(ctx, src, dst, name)
}

// tree is one EncryptTree or DecryptTree call.
type tree struct {
	l          layout
	aead       cipher.AEAD
	opts       options
	decrypt    bool
	keyChecked bool // a segment has opened: later failures are damage
	runner     runner
	dirs       []dirMeta // created directories, parents first
}

// dirMeta is what a created directory gets once its contents are written.
type dirMeta struct {
	path  string
	perm  fs.FileMode
	mtime time.Time
}

func newTree(k Key, chunkSize int64, decrypt bool, opts []Option) (*tree, error) {
	l, err := newLayout(chunkSize)
	if err != nil {
		return nil, err
	}
	aead, err := newAEAD(k)
	if err != nil {
		return nil, err
	}
	t := &tree{l: l, aead: aead, decrypt: decrypt}
	for _, o := range opts {
		o(&t.opts)
	}
	if t.opts.workers < 1 {
		t.opts.workers = runtime.GOMAXPROCS(0)
	}
	t.runner = runner{workers: t.opts.workers, scratch: make([]scratch, t.opts.workers)}
	return t, nil
}

// convert writes the converted src at dst; name is the single-file path,
// or "" for the base name of src.
func (t *tree) convert(ctx context.Context, src, dst string, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	root, info, err := resolveSource(src)
	if err != nil {
		return err
	}
	if name == "" {
		if name, err = baseName(src); err != nil {
			return err
		}
	}
	absDst, err := checkDest(root, dst)
	if err != nil {
		return err
	}
	switch {
	case info.Mode().IsRegular():
		out, err := createFile(absDst)
		if err != nil {
			return err
		}
		if err := t.fileTo(ctx, root, out, name); err != nil {
			removeTree(absDst)
			return err
		}
	case info.IsDir():
		if err := t.mkdir(absDst, info); err != nil {
			return err
		}
		if err := t.walk(ctx, root, absDst); err != nil {
			removeTree(absDst)
			return err
		}
	default:
		return fmt.Errorf("%w: %s is a %s: give a regular file or a directory", ErrUnsupported, src, kind(info.Mode()))
	}
	syncDir(filepath.Dir(absDst))
	return nil
}

// resolveSource returns the absolute path of src with symbolic links
// resolved, and its information.
func resolveSource(src string) (string, fs.FileInfo, error) {
	abs, err := filepath.Abs(src)
	if err != nil {
		return "", nil, fmt.Errorf("seal: %w", err)
	}
	root, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return "", nil, fmt.Errorf("seal: %w", err)
	}
	info, err := os.Stat(root)
	if err != nil {
		return "", nil, fmt.Errorf("seal: %w", err)
	}
	return root, info, nil
}

// baseName returns the share name of src: its base name, as the manifest
// builder takes it.
func baseName(src string) (string, error) {
	abs, err := filepath.Abs(src)
	if err != nil {
		return "", fmt.Errorf("seal: %w", err)
	}
	name := filepath.Base(abs)
	if name == string(filepath.Separator) || name == "." {
		return "", fmt.Errorf("seal: %s has no base name to share it under", src)
	}
	return name, nil
}

// checkDest returns dst as an absolute path after checking that nothing
// exists there and that it is not inside root.
func checkDest(root, dst string) (string, error) {
	abs, err := filepath.Abs(dst)
	if err != nil {
		return "", fmt.Errorf("seal: %w", err)
	}
	if _, err := os.Lstat(abs); err == nil {
		return "", fmt.Errorf("seal: %s already exists: give a destination that does not exist", dst)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("seal: %w", err)
	}
	parent, err := filepath.EvalSymlinks(filepath.Dir(abs))
	if err != nil {
		return "", fmt.Errorf("seal: the destination's directory: %w", err)
	}
	rel, err := filepath.Rel(root, filepath.Join(parent, filepath.Base(abs)))
	if err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", fmt.Errorf("seal: the destination %s is inside the source %s: give a destination outside it", dst, root)
	}
	return abs, nil
}

// walk converts every entry below the directory root into dst, which
// exists, then gives the directories their metadata.
func (t *tree) walk(ctx context.Context, root, dst string) error {
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("seal: %w", err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return fmt.Errorf("seal: %w", err)
		}
		target := filepath.Join(dst, rel)
		switch typ := d.Type(); {
		case typ.IsDir():
			info, err := d.Info()
			if err != nil {
				return fmt.Errorf("seal: %w", err)
			}
			return t.mkdir(target, info)
		case typ.IsRegular():
			out, err := createFile(target)
			if err != nil {
				return err
			}
			return t.fileTo(ctx, p, out, filepath.ToSlash(rel))
		case t.opts.skipSpecial:
			if t.opts.skipped != nil {
				t.opts.skipped(filepath.ToSlash(rel), kind(typ))
			}
			return nil
		default:
			return fmt.Errorf("%w: %s is a %s (only regular files and directories are shared; "+
				"leave the others out with `shoal share --skip-special`)", ErrUnsupported, p, kind(typ))
		}
	})
	if err != nil {
		return err
	}
	return t.finishDirs()
}

// mkdir creates the directory path, writable by its owner until
// finishDirs gives it info's permission bits and modification time.
func (t *tree) mkdir(path string, info fs.FileInfo) error {
	if err := os.Mkdir(path, 0o700); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("seal: %s already exists: give a destination that does not exist", path)
		}
		return fmt.Errorf("seal: %w", err)
	}
	t.dirs = append(t.dirs, dirMeta{path: path, perm: info.Mode().Perm(), mtime: info.ModTime()})
	return nil
}

// finishDirs syncs the created directories and sets their permission bits
// and modification times, children before parents so that nothing changes
// a directory after its time is set.
func (t *tree) finishDirs() error {
	for i := len(t.dirs) - 1; i >= 0; i-- {
		d := t.dirs[i]
		syncDir(d.path)
		if err := os.Chmod(d.path, d.perm); err != nil {
			return fmt.Errorf("seal: %w", err)
		}
		if err := os.Chtimes(d.path, time.Time{}, d.mtime); err != nil {
			return fmt.Errorf("seal: %w", err)
		}
	}
	return nil
}

// createFile creates a new file for writing at path, failing if anything
// exists there.
func createFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("seal: %s already exists: give a destination that does not exist", path)
		}
		return nil, fmt.Errorf("seal: %w", err)
	}
	return f, nil
}

// fileTo writes the conversion of the regular file src, whose path in the
// share is path, to out; gives out src's permission bits and modification
// time; then syncs and closes out.
func (t *tree) fileTo(ctx context.Context, src string, out *os.File, path string) (err error) {
	defer func() {
		if cerr := out.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("seal: %w", cerr)
		}
	}()
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("seal: %w", err)
	}
	defer in.Close()
	info, err := in.Stat()
	if err != nil {
		return fmt.Errorf("seal: %w", err)
	}
	if !info.Mode().IsRegular() {
		return fmt.Errorf("%w: %s is a %s", ErrUnsupported, src, kind(info.Mode()))
	}
	if t.decrypt {
		err = t.decryptFile(ctx, in, out, info.Size(), path)
	} else {
		err = t.encryptFile(ctx, in, out, info, path)
	}
	if err != nil {
		return err
	}
	if err := out.Chmod(info.Mode().Perm()); err != nil {
		return fmt.Errorf("seal: %w", err)
	}
	if err := os.Chtimes(out.Name(), time.Time{}, info.ModTime()); err != nil {
		return fmt.Errorf("seal: %w", err)
	}
	if err := out.Sync(); err != nil {
		return fmt.Errorf("seal: %w", err)
	}
	return nil
}

// encryptFile writes the ciphertext of in (described by info) to out.
func (t *tree) encryptFile(ctx context.Context, in, out *os.File, info fs.FileInfo, path string) error {
	size := info.Size()
	if _, ok := t.l.cipherSize(size); !ok {
		return fmt.Errorf("seal: %s is too large to encrypt (%d bytes)", in.Name(), size)
	}
	c := newCodec(t.aead, path)
	n := t.l.segments(size)
	err := t.runner.run(ctx, n, func(s *scratch, i int64) error {
		off := i * t.l.p
		s.pt = grow(s.pt, min(t.l.p, size-off))
		if err := readFull(in, s.pt, off); err != nil {
			return fmt.Errorf("seal: %s: %w (did it shrink while being encrypted? retry once it is stable)", in.Name(), err)
		}
		s.ct = c.seal(s.ct[:0], s.pt, i, i == n-1)
		if _, err := out.WriteAt(s.ct, i*t.l.c); err != nil {
			return fmt.Errorf("seal: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	after, err := in.Stat()
	if err != nil {
		return fmt.Errorf("seal: %w", err)
	}
	if after.Size() != size || !after.ModTime().Equal(info.ModTime()) {
		return fmt.Errorf("seal: %s changed while being encrypted: retry once it is stable", in.Name())
	}
	return nil
}

// decryptFile writes the plaintext of in, size bytes of ciphertext, to out.
func (t *tree) decryptFile(ctx context.Context, in, out *os.File, size int64, path string) error {
	plain, err := t.l.plainSize(size)
	if err != nil {
		return fmt.Errorf("seal: %s: %w", in.Name(), err)
	}
	c := newCodec(t.aead, path)
	n := t.l.segments(plain)
	first := !t.keyChecked
	return t.runner.run(ctx, n, func(s *scratch, i int64) error {
		off := i * t.l.c
		s.ct = grow(s.ct, min(t.l.c, size-off))
		if err := readFull(in, s.ct, off); err != nil {
			return fmt.Errorf("seal: %s: %w", in.Name(), err)
		}
		pt, err := c.open(s.pt[:0], s.ct, i, i == n-1, first && i == 0)
		if err != nil {
			return err
		}
		s.pt = pt
		if _, err := out.WriteAt(pt, i*t.l.p); err != nil {
			return fmt.Errorf("seal: %w", err)
		}
		if i == 0 {
			t.keyChecked = true // segment 0 runs on the calling goroutine
		}
		return nil
	})
}

// removeTree removes path and everything below it, making directories
// writable first if that is what stops it. It is best effort: it runs
// after another error, which is the one to report.
func removeTree(path string) {
	if os.RemoveAll(path) == nil {
		return
	}
	_ = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o700)
		}
		return nil
	})
	_ = os.RemoveAll(path)
}

// syncDir fsyncs a directory so the entries just created in it are
// durable. It is best effort: some file systems do not sync directories.
func syncDir(path string) {
	d, err := os.Open(path)
	if err != nil {
		return
	}
	_ = d.Sync()
	_ = d.Close()
}

// kind names a special file's type for error messages.
func kind(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return "symbolic link"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeDevice != 0:
		return "device"
	}
	return "special file"
}
