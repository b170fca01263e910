package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/shoalnet/shoal/transfer"
	"github.com/shoalnet/shoal/transfer/manifest"
	"github.com/shoalnet/shoal/transfer/seal"
)

// Encrypted shares: the publisher encrypts the files into its store
// (package transfer/seal: XChaCha20-Poly1305, a key per share, chunk by
// chunk) and shares that ciphertext like any share, so its CIDs address
// ciphertext and every peer that stores, serves or repairs it holds only
// ciphertext. The key travels only in the share's link, CID#key; a fetch
// with the link gets the ciphertext and decrypts it into place.

// ErrSealed: the share is encrypted; reading it needs its key.
var ErrSealed = errors.New("node: the share is encrypted: fetch it with its link (CID#key)")

// ErrNotSealed: a key was given for a share that is not encrypted.
var ErrNotSealed = errors.New("node: not an encrypted share")

// sealVersion is the seal format this node writes and reads.
const sealVersion = 1

// ShareEncrypted encrypts the file or directory at path with a new key
// into the store and shares the ciphertext (see Share; ShareOptions.Times
// and SkipSpecial apply). It returns the root and the key: the share's
// link is seal.Link(root, key). The key is not kept by this node; lose it
// and nobody can read the content. Names and sizes stay visible to peers.
func (n *Node) ShareEncrypted(ctx context.Context, path string, opts ShareOptions) (cid.Cid, seal.Key, error) {
	key, err := seal.NewKey()
	if err != nil {
		return cid.Undef, key, err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return cid.Undef, key, fmt.Errorf("node: share: %w", err)
	}
	if _, err := os.Stat(abs); err != nil {
		return cid.Undef, key, fmt.Errorf("node: share: %w", err)
	}
	chunk := opts.ChunkSize
	if chunk == 0 {
		chunk = manifest.DefaultChunkSize
	}
	store := filepath.Join(n.cfg.Home, StoreDir)
	if err := os.MkdirAll(store, 0o700); err != nil {
		return cid.Undef, key, fmt.Errorf("node: share: %w", err)
	}
	dir, err := os.MkdirTemp(store, "sealed-")
	if err != nil {
		return cid.Undef, key, fmt.Errorf("node: share: %w", err)
	}
	ct := filepath.Join(dir, filepath.Base(abs))
	var sopts []seal.Option
	if opts.SkipSpecial {
		sopts = append(sopts, seal.SkipSpecial(opts.Skipped))
	}
	if err := seal.EncryptTree(ctx, abs, ct, key, chunk, sopts...); err != nil {
		os.RemoveAll(dir)
		return cid.Undef, key, fmt.Errorf("node: share %s: %w", path, err)
	}
	opts.ChunkSize = chunk
	opts.SkipSpecial, opts.Skipped = false, nil // left out while encrypting
	root, err := n.share(ctx, ct, opts, sealVersion)
	if err != nil {
		os.RemoveAll(dir)
		return cid.Undef, key, err
	}
	if err := n.updateReplicaRec(root, func(r *replicaRec) { r.Own = true }); err != nil {
		return cid.Undef, key, err
	}
	return root, key, nil
}

// FetchDecrypted fetches the encrypted share root (its ciphertext goes to
// the store, where this node then serves it to others) and decrypts it
// with key into dst, as Fetch does for plaintext: dst is the file or
// directory to create (opts.IntoDir: the directory to create it in,
// under the share's name). A wrong key fails with seal.ErrWrongKey and
// leaves nothing at dst.
func (n *Node) FetchDecrypted(ctx context.Context, root cid.Cid, key seal.Key, dst string, opts FetchOptions) (*transfer.Result, error) {
	if err := CheckRoot(root); err != nil {
		return nil, err
	}
	if _, err := os.Lstat(dst); err == nil && !opts.IntoDir && !opts.Overwrite {
		return nil, fmt.Errorf("%w: %s", transfer.ErrExists, dst) // before fetching anything
	}
	var res *transfer.Result
	if sh, ok := n.heldShare(root); ok {
		// The ciphertext is here already (this node's own share, a
		// replica, an earlier fetch).
		m, err := n.xfer.AwaitManifest(ctx, root)
		if err != nil {
			return nil, err
		}
		res = &transfer.Result{Root: root, Path: sh.Path, Manifest: m}
	} else {
		if err := os.MkdirAll(filepath.Join(n.cfg.Home, StoreDir), 0o700); err != nil {
			return nil, fmt.Errorf("node: store: %w", err)
		}
		fo := opts
		fo.Overwrite, fo.IntoDir = true, false
		wait, err := n.startFetch(ctx, root, filepath.Join(n.cfg.Home, StoreDir, root.String()), fo, nil)
		if err != nil {
			return nil, err
		}
		if res, err = wait(); err != nil {
			return nil, err
		}
	}
	m := res.Manifest
	if err := checkSeal(root, m); err != nil {
		return nil, err
	}
	if opts.IntoDir {
		dst = filepath.Join(dst, m.Name)
	}
	if _, err := os.Lstat(dst); err == nil {
		if !opts.Overwrite {
			return nil, fmt.Errorf("%w: %s", transfer.ErrExists, dst)
		}
		if err := os.RemoveAll(dst); err != nil {
			return nil, fmt.Errorf("node: %w", err)
		}
	}
	if err := seal.DecryptTree(ctx, res.Path, dst, key, m.ChunkSize, m.Name); err != nil {
		return nil, fmt.Errorf("node: decrypt %s: %w", root, err)
	}
	res.Path = dst
	return res, nil
}

// checkSeal is the manifest check of fetches and reads with a key.
func checkSeal(root cid.Cid, m *manifest.Manifest) error {
	switch m.Seal {
	case sealVersion:
		return nil
	case 0:
		return fmt.Errorf("%w: %s is not encrypted: read it without a key", ErrNotSealed, root)
	}
	return fmt.Errorf("node: %s is encrypted with format %d, this node reads %d (upgrade it)", root, m.Seal, sealVersion)
}

// refuseSealed is the manifest check of fetches and reads without a key.
func refuseSealed(m *manifest.Manifest) error {
	if m.Seal != 0 {
		return ErrSealed
	}
	return nil
}

// SealedReader reads a file of an encrypted share, decrypting it: an
// io.ReadSeekCloser and io.ReaderAt over the plaintext. Reads wait only
// for the chunks they need, as with Open.
type SealedReader struct {
	*io.SectionReader
	r *transfer.Reader
}

// Name returns the file's path in the share.
func (s *SealedReader) Name() string { return s.r.Name() }

// ModTime returns the file's recorded modification time (zero if none).
func (s *SealedReader) ModTime() time.Time { return s.r.ModTime() }

// Close closes the ciphertext reader.
func (s *SealedReader) Close() error { return s.r.Close() }

// OpenDecrypted is Open for an encrypted share: it reads the file at path
// of root and decrypts it with key. A wrong key fails the first read
// with seal.ErrWrongKey.
func (n *Node) OpenDecrypted(ctx context.Context, root cid.Cid, key seal.Key, path string) (*SealedReader, error) {
	m, sf, err := n.readable(ctx, root, true)
	if err != nil {
		return nil, err
	}
	r, err := n.xfer.Open(ctx, root, path, transfer.OpenOptions{})
	if err != nil {
		return nil, storeErr(ctx, sf, err)
	}
	p, err := seal.NewReaderAt(r, r.Size(), key, r.Name(), m.ChunkSize)
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("node: %s: %w", root, err)
	}
	return &SealedReader{SectionReader: io.NewSectionReader(p, 0, p.Size()), r: r}, nil
}

// ContentDecrypted is Content for an encrypted share: the manifest with
// each file's plaintext size (its digests are left out: they are the
// ciphertext's).
func (n *Node) ContentDecrypted(ctx context.Context, root cid.Cid) (*manifest.Manifest, error) {
	m, _, err := n.readable(ctx, root, true)
	if err != nil {
		return nil, err
	}
	out := *m
	out.Digests, out.Size = nil, 0
	out.Entries = slices.Clone(m.Entries)
	for i, e := range out.Entries {
		if e.Dir {
			continue
		}
		if out.Entries[i].Size, err = seal.PlainSize(e.Size, m.ChunkSize); err != nil {
			return nil, fmt.Errorf("node: %s: %s: %w", root, e.Path, err)
		}
		out.Size += out.Entries[i].Size
	}
	return &out, nil
}
