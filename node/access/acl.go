package access

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	bolt "go.etcd.io/bbolt"

	"github.com/shoalnet/shoal/node/auth"
)

// aclBucket holds, per root, the allow lists this node enforces when it
// serves the root: its own (share --allow) or those of the publishers it
// fetched it from.
var aclBucket = []byte("acl")

// ErrClosed: the ACL was closed.
var ErrClosed = errors.New("access: closed")

// Allowed reports whether a peer p with role is admitted by list: list
// names p, or a role that role includes.
func Allowed(list []string, p peer.ID, role auth.Role) bool {
	for _, a := range list {
		if a == p.String() {
			return true
		}
		if r, err := auth.ParseRole(a); err == nil && role.Includes(r) {
			return true
		}
	}
	return false
}

// ACL keeps the allow lists each root is limited to on this node, in a
// bucket of a bbolt database. A peer may fetch a root only if it passes
// every one of its lists. It is safe for concurrent use.
type ACL struct {
	db       *bolt.DB
	log      *slog.Logger
	maxLists int

	mu      sync.Mutex
	pending map[string][][]string // lists not written yet, by root
	closed  bool
	wg      sync.WaitGroup // AddSoon's writers
}

// NewACL returns the allow lists kept in db (creating their bucket); a
// root holds at most maxLists lists. Unreadable lists are logged to log.
func NewACL(db *bolt.DB, maxLists int, log *slog.Logger) (*ACL, error) {
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(aclBucket)
		return err
	}); err != nil {
		return nil, fmt.Errorf("access: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &ACL{db: db, log: log, maxLists: maxLists, pending: make(map[string][][]string)}, nil
}

// Close waits for the lists AddSoon took to be written; later AddSoon
// calls fail. It does not close the database.
func (a *ACL) Close() {
	a.mu.Lock()
	a.closed = true
	a.mu.Unlock()
	a.wg.Wait()
}

// Set replaces root's lists (none: the root is not limited).
func (a *ACL) Set(root cid.Cid, lists [][]string) error {
	a.mu.Lock()
	delete(a.pending, root.KeyString())
	a.mu.Unlock()
	return a.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(aclBucket)
		if len(lists) == 0 {
			return b.Delete(root.Bytes())
		}
		data, err := json.Marshal(lists)
		if err != nil {
			return err
		}
		return b.Put(root.Bytes(), data)
	})
}

// Add adds list to root's lists and writes it before it returns; a list
// already written costs a read.
func (a *ACL) Add(root cid.Cid, list []string) error {
	if slices.ContainsFunc(a.Stored(root), func(l []string) bool { return slices.Equal(l, list) }) {
		return nil
	}
	return a.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(aclBucket)
		var lists [][]string
		if data := b.Get(root.Bytes()); data != nil {
			if err := json.Unmarshal(data, &lists); err != nil {
				return fmt.Errorf("access: allow lists of %s: %w", root, err)
			}
		}
		if slices.ContainsFunc(lists, func(l []string) bool { return slices.Equal(l, list) }) {
			return nil
		}
		n := len(lists)
		// Lists AddSoon has taken count against the cap too.
		a.mu.Lock()
		for _, p := range a.pending[root.KeyString()] {
			if !slices.Equal(p, list) && !slices.ContainsFunc(lists, func(l []string) bool { return slices.Equal(l, p) }) {
				n++
			}
		}
		a.mu.Unlock()
		if n >= a.maxLists {
			return fmt.Errorf("access: more than %d allow lists for %s", a.maxLists, root)
		}
		data, err := json.Marshal(append(lists, list))
		if err != nil {
			return err
		}
		return b.Put(root.Bytes(), data)
	})
}

// AddSoon is Add for goroutines that must not wait for a database write
// (a fetch's readers): list is enforced at once (Lists includes it) and
// written on another goroutine; Close waits for it.
func (a *ACL) AddSoon(root cid.Cid, list []string) error {
	lists := a.Lists(root)
	if slices.ContainsFunc(lists, func(l []string) bool { return slices.Equal(l, list) }) {
		return nil
	}
	if len(lists) >= a.maxLists {
		return fmt.Errorf("access: more than %d allow lists for %s", a.maxLists, root)
	}
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return ErrClosed
	}
	k := root.KeyString()
	a.pending[k] = append(a.pending[k], slices.Clone(list))
	a.wg.Add(1)
	a.mu.Unlock()
	go func() {
		defer a.wg.Done()
		a.flush()
	}()
	return nil
}

// flush writes the lists AddSoon took; each stays pending (so enforced)
// until it is written.
func (a *ACL) flush() {
	a.mu.Lock()
	pending := make(map[string][][]string, len(a.pending))
	for k, lists := range a.pending {
		pending[k] = slices.Clone(lists)
	}
	a.mu.Unlock()
	for k, lists := range pending {
		root, err := cid.Cast([]byte(k))
		if err != nil {
			continue
		}
		for _, l := range lists {
			if err := a.Add(root, l); err != nil {
				a.log.Warn("record a share's allow list", "root", root, "err", err)
				continue
			}
			a.mu.Lock()
			left := slices.DeleteFunc(a.pending[k], func(p []string) bool { return slices.Equal(p, l) })
			if len(left) == 0 {
				delete(a.pending, k)
			} else {
				a.pending[k] = left
			}
			a.mu.Unlock()
		}
	}
}

// Lists returns the allow lists kept for root, those not yet written
// included. Lists it cannot read give one empty list, which admits
// nobody: a limited share fails closed, never open.
func (a *ACL) Lists(root cid.Cid) [][]string {
	a.mu.Lock()
	pending := slices.Clone(a.pending[root.KeyString()])
	a.mu.Unlock()
	lists := a.Stored(root)
	for _, l := range pending {
		if !slices.ContainsFunc(lists, func(k []string) bool { return slices.Equal(k, l) }) {
			lists = append(lists, l)
		}
	}
	return lists
}

// Stored returns the allow lists written for root (one empty list when
// they cannot be read).
func (a *ACL) Stored(root cid.Cid) [][]string {
	var lists [][]string
	err := a.db.View(func(tx *bolt.Tx) error {
		if data := tx.Bucket(aclBucket).Get(root.Bytes()); data != nil {
			return json.Unmarshal(data, &lists)
		}
		return nil
	})
	if err != nil {
		a.log.Error("allow lists unreadable; the share is denied to everyone", "root", root, "err", err)
		return [][]string{{}}
	}
	return lists
}
