package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ipfs/go-cid"

	"github.com/shoalnet/shoal/transfer"
)

// The store (<home>/store): content fetched for reading, replicas placed
// here, and the ciphertext of this node's encrypted shares.

// storeUsed is the bytes of the store: content held there and fetches
// into it in progress (counted whole).
func (n *Node) storeUsed() int64 {
	var used int64
	seen := make(map[string]bool)
	for _, s := range n.xfer.Shares() {
		if n.inStore(s.Path) {
			used += s.Size
			seen[s.Root.KeyString()] = true
		}
	}
	n.storeMu.Lock()
	fetching := make(map[string]bool, len(n.stores))
	for k := range n.stores {
		fetching[k] = true
	}
	n.storeMu.Unlock()
	for _, f := range n.xfer.Fetches() {
		if k := f.Root.KeyString(); fetching[k] && !seen[k] {
			used += f.Total
			seen[k] = true
		}
	}
	return used
}

// heldShare returns root's share record if root is served here in full.
func (n *Node) heldShare(root cid.Cid) (transfer.ShareInfo, bool) {
	if !n.xfer.Held(root) {
		return transfer.ShareInfo{}, false
	}
	for _, s := range n.xfer.Shares() {
		if s.Root.Equals(root) {
			return s, true
		}
	}
	return transfer.ShareInfo{}, false
}

// dropStoreCopy stops serving root's store copy, deletes it and withdraws
// this node as a holder (a replica request of this node's stays).
func (n *Node) dropStoreCopy(ctx context.Context, root cid.Cid) error {
	stopped := n.stopStoreFetch(root)
	var path string
	for _, sh := range n.xfer.Shares() {
		if sh.Root.Equals(root) && n.inStore(sh.Path) {
			path = sh.Path
		}
	}
	if path == "" && !stopped {
		return nil
	}
	if path != "" {
		if err := n.xfer.Unshare(root); err != nil {
			return err
		}
		if err := os.RemoveAll(path); err != nil {
			return fmt.Errorf("node: %w", err)
		}
	} else if err := n.xfer.Discard(root, filepath.Join(n.cfg.Home, StoreDir, root.String())); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	if err := n.updateReplicaRec(root, func(rec *replicaRec) { rec.Replica = false }); err != nil {
		return err
	}
	n.dht.Unprovide(root)
	n.withdrawHolding(ctx, root)
	n.refreshMeta()
	return nil
}

// StoreStatus describes this node's store.
type StoreStatus struct {
	Storer bool  `json:"storer"`
	Used   int64 `json:"used"`
	Quota  int64 `json:"quota,omitempty"`
	Full   bool  `json:"full,omitempty"`
	// Replicas is the number of roots held here as replicas.
	Replicas int `json:"replicas"`
	// Repairs are the replicas being fetched here now.
	Repairs []cid.Cid `json:"repairs,omitempty"`
}

// Store returns the state of this node's store.
func (n *Node) Store() StoreStatus {
	st := StoreStatus{Storer: n.cfg.Replication.Storer, Used: n.storeUsed(), Quota: n.cfg.Replication.Quota, Full: n.repl.storeFull()}
	for _, root := range n.repl.replicaRoots() {
		if n.xfer.Held(root) {
			st.Replicas++
		}
	}
	for _, j := range n.repl.repairs() {
		st.Repairs = append(st.Repairs, j.root)
	}
	return st
}

// Collected is what CollectGarbage deleted.
type Collected struct {
	Roots []cid.Cid `json:"roots"`
	Bytes int64     `json:"bytes"`
}

// CollectGarbage deletes from the store the content that is neither a
// replica placed here nor pinned by this node: copies fetched for reading
// (Open, the gateway, `shoal cat`). Files shared in place and fetches to
// a user's path are never touched. Readers of a collected root fail.
func (n *Node) CollectGarbage(ctx context.Context) (Collected, error) {
	var out Collected
	for _, sh := range n.xfer.Shares() {
		if !n.inStore(sh.Path) {
			continue
		}
		rec := n.replicaRec(sh.Root)
		if rec.Replica || rec.Pin > 0 || rec.Own {
			continue
		}
		if err := n.dropStoreCopy(ctx, sh.Root); err != nil {
			return out, err
		}
		out.Roots = append(out.Roots, sh.Root)
		out.Bytes += sh.Size
	}
	// Copies no share record points at (a root fetched again to a user's
	// path is served from there) and no fetch writes to.
	dir := filepath.Join(n.cfg.Home, StoreDir)
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return out, fmt.Errorf("node: gc: %w", err)
	}
	used := make(map[string]bool)
	for _, sh := range n.xfer.Shares() {
		used[sh.Path] = true
	}
	n.storeMu.Lock()
	for k := range n.stores {
		if c, err := cid.Cast([]byte(k)); err == nil {
			used[filepath.Join(dir, c.String())] = true
		}
	}
	n.storeMu.Unlock()
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		root, err := cid.Decode(e.Name())
		if used[p] || err != nil {
			continue // not a copy of a root (partial fetch files are named otherwise)
		}
		sz := dirSize(p)
		if err := os.RemoveAll(p); err != nil {
			return out, fmt.Errorf("node: gc: %w", err)
		}
		out.Roots = append(out.Roots, root)
		out.Bytes += sz
	}
	if len(out.Roots) > 0 {
		n.log.Info("store collected", "roots", len(out.Roots), "bytes", out.Bytes)
		n.repl.poke()
	}
	return out, nil
}

// dirSize is the bytes of the regular files at or under p.
func dirSize(p string) int64 {
	var n int64
	filepath.WalkDir(p, func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}
