package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ipfs/go-cid"

	"github.com/shoalnet/shoal/transfer"
	"github.com/shoalnet/shoal/transfer/manifest"
)

// StoreDir is the directory in the home that keeps content this node
// fetched for reading (Open, the gateway, `shoal cat`) rather than to a
// path of the user's: <home>/store/<root>.
const StoreDir = "store"

// storeFetch is a fetch into the store, started by Open.
type storeFetch struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error // set before done is closed
}

// Open opens the file at path in the share root for reading while it
// arrives: "" for a single-file share, else the file's slash-separated
// path in the directory. Reads block until the chunks they need are here
// and verified; the fetch asks for the chunks at and just past the read
// position before any other, and for the rest rarest first.
//
// A root not held here and not being fetched is fetched into the store
// (<home>/store/<root>, see StoreDir), in full: the fetch goes on when
// the reader is closed, and the content is then served like any fetched
// share until Unshare removes it. ctx bounds the wait for the manifest
// and the reader's reads, not that fetch.
func (n *Node) Open(ctx context.Context, root cid.Cid, path string) (*transfer.Reader, error) {
	_, sf, err := n.readable(ctx, root, false)
	if err != nil {
		return nil, err
	}
	r, err := n.xfer.Open(ctx, root, path, transfer.OpenOptions{})
	return r, storeErr(ctx, sf, err)
}

// readable makes root readable here (see ensureReadable) and waits for
// its manifest, which must be encrypted if sealed is set and must not be
// otherwise; it returns the store fetch of root, if any. A share of the
// wrong kind stops the store fetch it started.
func (n *Node) readable(ctx context.Context, root cid.Cid, sealed bool) (*manifest.Manifest, *storeFetch, error) {
	if err := CheckRoot(root); err != nil {
		return nil, nil, err
	}
	sf, err := n.ensureReadable(root)
	if err != nil {
		return nil, nil, err
	}
	m, err := n.xfer.AwaitManifest(ctx, root)
	if err != nil {
		return nil, sf, storeErr(ctx, sf, err)
	}
	check := refuseSealed
	if sealed {
		check = func(m *manifest.Manifest) error { return checkSeal(root, m) }
	}
	if err := check(m); err != nil {
		n.dropUnwantedStoreFetch(root, sf)
		return nil, sf, err
	}
	return m, sf, nil
}

// dropUnwantedStoreFetch stops a fetch into the store that a read of an
// encrypted share started, unless the root is a replica placed here.
func (n *Node) dropUnwantedStoreFetch(root cid.Cid, sf *storeFetch) {
	if sf == nil || n.replicaRec(root).Replica {
		return
	}
	if n.stopStoreFetch(root) {
		n.xfer.Discard(root, filepath.Join(n.cfg.Home, StoreDir, root.String()))
	}
}

// Content returns root's manifest (its files and their sizes), starting a
// fetch into the store as Open does when root is neither held here nor
// being fetched.
func (n *Node) Content(ctx context.Context, root cid.Cid) (*manifest.Manifest, error) {
	m, _, err := n.readable(ctx, root, false)
	return m, err
}

// Holds reports whether root can be read here without a new fetch: it is
// shared, fetched, or being fetched.
func (n *Node) Holds(root cid.Cid) bool { return n.xfer.Readable(root) }

// storeErr explains a root found neither held nor being fetched just
// after a fetch of it into the store began: that fetch failed, and its
// error says why.
func storeErr(ctx context.Context, sf *storeFetch, err error) error {
	if sf == nil || !errors.Is(err, transfer.ErrNotFound) {
		return err
	}
	select {
	case <-sf.done:
		if sf.err != nil {
			return sf.err
		}
	case <-ctx.Done():
		return ctx.Err()
	}
	return err
}

// ensureReadable starts a fetch of root into the store unless root is
// served here or being fetched, and returns the store fetch of root, if
// any.
func (n *Node) ensureReadable(root cid.Cid) (*storeFetch, error) {
	n.storeMu.Lock()
	defer n.storeMu.Unlock()
	key := root.KeyString()
	if sf := n.stores[key]; sf != nil {
		select {
		case <-sf.done:
			delete(n.stores, key)
		default:
			return sf, nil
		}
	}
	if n.xfer.Readable(root) {
		return nil, nil
	}
	dir := filepath.Join(n.cfg.Home, StoreDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("node: store: %w", err)
	}
	ctx, cancel := context.WithCancel(n.ctx)
	// The store is the node's own: a leftover copy is replaced.
	wait, err := n.startFetch(ctx, root, filepath.Join(dir, root.String()), FetchOptions{Overwrite: true}, nil)
	if err != nil {
		cancel()
		return nil, err
	}
	sf := &storeFetch{cancel: cancel, done: make(chan struct{})}
	n.stores[key] = sf
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer close(sf.done)
		defer cancel()
		_, sf.err = wait()
		if sf.err != nil && ctx.Err() == nil && !n.closing.Load() {
			n.log.Warn("fetch into the store failed", "root", root, "err", sf.err)
		}
	}()
	return sf, nil
}

// stopStoreFetch cancels a fetch of root into the store and waits for it;
// it reports whether there was one.
func (n *Node) stopStoreFetch(root cid.Cid) bool {
	n.storeMu.Lock()
	sf := n.stores[root.KeyString()]
	delete(n.stores, root.KeyString())
	n.storeMu.Unlock()
	if sf == nil {
		return false
	}
	sf.cancel()
	<-sf.done
	return true
}

// inStore reports whether p lies in the node's store.
func (n *Node) inStore(p string) bool {
	rel, err := filepath.Rel(filepath.Join(n.cfg.Home, StoreDir), p)
	return err == nil && rel != "." && !strings.HasPrefix(rel, "..")
}
