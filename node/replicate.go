package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	bolt "go.etcd.io/bbolt"

	"github.com/shoalnet/shoal/node/auth"
	"github.com/shoalnet/shoal/node/catalog"
	"github.com/shoalnet/shoal/node/membership"
	"github.com/shoalnet/shoal/node/replica"
)

// Replication: publishers ask for N copies of a root (share --replicas,
// pin); every node computes the same placement from its own membership
// view (rendezvous hashing over the live members that store replicas) and
// the ones placed fetch the root into their store. No node coordinates:
// a holder that dies drops out of every view, and the next member in the
// order fetches the root; a holder that comes back makes the last one
// surplus, which releases its copy after a grace period, once every
// placed member holds the root.

// ErrBadArgument: an argument of a call is out of range.
var ErrBadArgument = errors.New("node: bad argument")

// replicaBucket holds, per root, this node's replica request and whether
// its store copy is a replica (json replicaRec).
var replicaBucket = []byte("replicas")

type replicaRec struct {
	// Pin is the number of copies this node asks for (0: none).
	Pin int `json:"pin,omitempty"`
	// Replica: the store copy was fetched as a replica (it is released
	// when no longer placed here, and is not counted as a user's read).
	Replica bool `json:"replica,omitempty"`
	// Own: the store copy is this node's own share (the ciphertext of an
	// encrypted share): never collected.
	Own bool `json:"own,omitempty"`
}

// ReplicationConfig tunes replication.
type ReplicationConfig struct {
	// Storer makes this node keep replicas for the network.
	Storer bool
	// Quota caps the bytes of the store (replicas and content fetched
	// for reading); 0: no cap but the disk. A replica that does not fit
	// is refused, and the member metadata says the store is full.
	Quota int64
	// Grace is how long a copy no longer placed here is kept before it is
	// released (it is released only once every placed member holds the
	// root). Default 10m.
	Grace time.Duration
	// Repairs is how many roots this node fetches as replicas at once,
	// the most urgent (fewest live copies) first. Default 2.
	Repairs int
	// Interval is how often placement is checked when nothing changes.
	// Default 5s.
	Interval time.Duration
}

func (c ReplicationConfig) withDefaults() ReplicationConfig {
	if c.Grace <= 0 {
		c.Grace = 10 * time.Minute
	}
	if c.Repairs <= 0 {
		c.Repairs = 2
	}
	if c.Interval <= 0 {
		c.Interval = 5 * time.Second
	}
	return c
}

// replicator keeps this node's part of the placement.
type replicator struct {
	n   *Node
	cfg ReplicationConfig

	mu        sync.Mutex
	repairing map[string]*repairJob // roots being fetched as replicas
	surplus   map[string]time.Time  // roots held here but placed elsewhere, since
	failed    map[string]backoff    // roots whose last replica fetch failed
	full      bool                  // a replica was refused for lack of room
	fullAt    int64                 // store bytes when it was
	wake      chan struct{}
}

// backoff spaces the retries of a replica fetch that failed: 1s, 2s, 4s,
// ... up to a minute.
type backoff struct {
	next  time.Time
	delay time.Duration
}

type repairJob struct {
	root    cid.Cid
	started time.Time
	copies  int // live copies when it started
}

func newReplicator(n *Node) *replicator {
	return &replicator{n: n, cfg: n.cfg.Replication.withDefaults(),
		repairing: make(map[string]*repairJob), surplus: make(map[string]time.Time), failed: make(map[string]backoff),
		wake: make(chan struct{}, 1)}
}

// poke asks for a placement check now.
func (r *replicator) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// run checks placement whenever the catalog or the membership changes,
// and every Interval, until the node closes.
func (r *replicator) run() {
	if r.cfg.Storer && r.n.access.closed() && r.n.needRole(auth.RolePublisher) != nil {
		r.n.log.Warn("this storer cannot announce the copies it holds: in a closed network that takes a publisher token; "+
			"other members will not count its copies", "fix", "shoal token issue --role publisher --peer "+r.n.h.ID().String())
	}
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	for {
		r.reconcile()
		select {
		case <-r.n.ctx.Done():
			return
		case <-r.n.cat.Changed():
		case <-r.wake:
		case <-t.C:
		}
	}
}

// storers returns the live members that keep replicas, with their
// metadata (this node's own as it is now).
func (r *replicator) storers() map[peer.ID]membership.Meta {
	out := make(map[peer.ID]membership.Meta)
	self := r.n.h.ID()
	for _, m := range r.n.members.Members() {
		if m.ID == self {
			continue
		}
		if (m.State == membership.Alive || m.State == membership.Suspect) && m.Meta.Storer {
			out[m.ID] = m.Meta
		}
	}
	if r.cfg.Storer {
		out[self] = r.n.meta()
	}
	return out
}

// live returns the members alive or suspect now, this node included.
func (r *replicator) live() map[peer.ID]bool {
	out := map[peer.ID]bool{r.n.h.ID(): true}
	for _, m := range r.n.members.Members() {
		if m.State == membership.Alive || m.State == membership.Suspect {
			out[m.ID] = true
		}
	}
	return out
}

// plan is the placement of one wanted root as this node sees it.
type plan struct {
	want      catalog.Want
	placed    []peer.ID // who should hold it, best first
	holders   []peer.ID // live members that announced a complete copy
	liveCopy  int       // live storers holding it
	selfPlace bool
	selfHolds bool // served here in full (the catalog may still say otherwise)
}

func (r *replicator) plan(w catalog.Want, storers map[peer.ID]membership.Meta, live map[peer.ID]bool) plan {
	p := plan{want: w}
	holds := make(map[peer.ID]bool)
	for _, h := range r.n.cat.Holders(w.Root) {
		if live[h] {
			holds[h] = true
			p.holders = append(p.holders, h)
		}
	}
	p.selfHolds = r.n.xfer.Held(w.Root)
	if p.selfHolds && !holds[r.n.h.ID()] {
		holds[r.n.h.ID()] = true
		p.holders = append(p.holders, r.n.h.ID())
	}
	cands := make([]replica.Candidate, 0, len(storers))
	for id, m := range storers {
		cands = append(cands, replica.Candidate{ID: id, Full: m.StoreFull, Holds: holds[id]})
		if holds[id] {
			p.liveCopy++
		}
	}
	p.placed = replica.Place(w.Root, cands, w.Replicas)
	p.selfPlace = slices.Contains(p.placed, r.n.h.ID())
	return p
}

// reconcile starts the repairs placed here (most urgent first, at most
// Repairs at once) and releases surplus copies whose grace has passed.
func (r *replicator) reconcile() {
	if r.n.ctx.Err() != nil {
		return
	}
	storers, live := r.storers(), r.live()
	wants := r.n.cat.Wants()
	wanted := make(map[string]bool, len(wants))
	var todo []plan
	now := time.Now()
	for _, w := range wants {
		k := w.Root.KeyString()
		wanted[k] = true
		p := r.plan(w, storers, live)
		held := p.selfHolds
		switch {
		case p.selfPlace && !held:
			r.clearSurplus(k)
			if r.cfg.Storer {
				todo = append(todo, p)
			}
		case p.selfPlace:
			r.clearSurplus(k)
		case held && r.isReplica(w.Root):
			since := r.markSurplus(k, now)
			if now.Sub(since) >= r.cfg.Grace && allHold(p.placed, p.holders) && len(p.placed) >= w.Replicas {
				r.release(w.Root, "placed on other members, which hold it")
			}
		}
	}
	// Replicas nobody asks for any more go after the grace period.
	for _, root := range r.replicaRoots() {
		k := root.KeyString()
		if wanted[k] || !r.n.xfer.Held(root) {
			continue
		}
		if since := r.markSurplus(k, now); now.Sub(since) >= r.cfg.Grace {
			r.release(root, "no longer asked for")
		}
	}
	slices.SortStableFunc(todo, func(a, b plan) int { return a.liveCopy - b.liveCopy })
	for _, p := range todo {
		if !r.startRepair(p) {
			break
		}
	}
}

func allHold(placed, holders []peer.ID) bool {
	for _, p := range placed {
		if !slices.Contains(holders, p) {
			return false
		}
	}
	return true
}

func (r *replicator) markSurplus(k string, now time.Time) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	since, ok := r.surplus[k]
	if !ok {
		r.surplus[k] = now
		return now
	}
	return since
}

func (r *replicator) clearSurplus(k string) {
	r.mu.Lock()
	delete(r.surplus, k)
	r.mu.Unlock()
}

// startRepair fetches p's root into the store unless Repairs fetches run
// already (it then reports false) or it runs already. A root that does not
// fit in the quota is refused, and the store is said to be full.
func (r *replicator) startRepair(p plan) bool {
	k := p.want.Root.KeyString()
	r.mu.Lock()
	if r.repairing[k] != nil || time.Now().Before(r.failed[k].next) {
		r.mu.Unlock()
		return true
	}
	if len(r.repairing) >= r.cfg.Repairs {
		r.mu.Unlock()
		return false
	}
	used := r.n.storeUsed()
	if q := r.cfg.Quota; q > 0 && used+p.want.Size > q {
		// Copies kept for reading make room for replicas first.
		r.mu.Unlock()
		if c, err := r.n.CollectGarbage(r.n.ctx); err == nil && len(c.Roots) > 0 {
			r.n.log.Info("store collected to make room for a replica", "root", p.want.Root, "freed", c.Bytes)
		}
		r.mu.Lock()
		used = r.n.storeUsed()
	}
	if q := r.cfg.Quota; q > 0 && used+p.want.Size > q {
		already := r.full
		r.full, r.fullAt = true, used
		r.mu.Unlock()
		if !already {
			r.n.log.Warn("store full: replica refused", "root", p.want.Root, "size", p.want.Size, "used", used, "quota", q)
			r.n.refreshMeta()
		}
		return true
	}
	job := &repairJob{root: p.want.Root, started: time.Now(), copies: p.liveCopy}
	r.repairing[k] = job
	r.mu.Unlock()
	if err := r.setReplica(p.want.Root, true); err != nil {
		r.n.log.Warn("record a replica", "root", p.want.Root, "err", err)
	}
	r.n.log.Info("fetching a replica", "root", p.want.Root, "live_copies", p.liveCopy, "wanted", p.want.Replicas)
	sf, err := r.n.ensureReadable(p.want.Root)
	if err != nil {
		r.finish(k, job, err)
		return true
	}
	if sf == nil { // being fetched already, to a path of the user's
		r.mu.Lock()
		delete(r.repairing, k)
		r.mu.Unlock()
		return true
	}
	r.n.wg.Add(1)
	go func() {
		defer r.n.wg.Done()
		<-sf.done
		r.finish(k, job, sf.err)
	}()
	return true
}

func (r *replicator) finish(k string, job *repairJob, err error) {
	r.mu.Lock()
	delete(r.repairing, k)
	var retry time.Duration
	if err != nil {
		b := r.failed[k]
		b.delay = min(max(2*b.delay, time.Second), time.Minute)
		b.next = time.Now().Add(b.delay)
		r.failed[k], retry = b, b.delay
	} else {
		delete(r.failed, k)
	}
	r.mu.Unlock()
	switch {
	case err != nil && !r.n.closing.Load():
		r.n.log.Warn("replica fetch failed", "root", job.root, "err", err, "retry_in", retry)
	case err == nil:
		r.n.log.Info("replica held", "root", job.root, "took", time.Since(job.started).Round(time.Millisecond))
	}
	r.poke()
}

// release drops this node's replica of root: it stops serving and
// providing it and deletes it from the store.
func (r *replicator) release(root cid.Cid, why string) {
	r.clearSurplus(root.KeyString())
	r.n.log.Info("replica released", "root", root, "why", why)
	if err := r.n.dropStoreCopy(r.n.ctx, root); err != nil && !r.n.closing.Load() {
		r.n.log.Warn("release a replica", "root", root, "err", err)
	}
	r.mu.Lock()
	if r.full && r.n.storeUsed() < r.fullAt {
		r.full = false
	}
	r.mu.Unlock()
}

// storeFull reports whether the store refused a replica and has not freed
// room since.
func (r *replicator) storeFull() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.full && r.n.storeUsed() < r.fullAt {
		r.full = false
	}
	return r.full
}

// repairs returns the roots being fetched as replicas here.
func (r *replicator) repairs() map[string]repairJob {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]repairJob, len(r.repairing))
	for k, j := range r.repairing {
		out[k] = *j
	}
	return out
}

// State kept per root.

func (n *Node) replicaRec(root cid.Cid) replicaRec {
	var rec replicaRec
	_ = n.db.View(func(tx *bolt.Tx) error {
		if data := tx.Bucket(replicaBucket).Get(root.Bytes()); data != nil {
			return json.Unmarshal(data, &rec)
		}
		return nil
	})
	return rec
}

func (n *Node) updateReplicaRec(root cid.Cid, edit func(*replicaRec)) error {
	return n.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(replicaBucket)
		var rec replicaRec
		if data := b.Get(root.Bytes()); data != nil {
			if err := json.Unmarshal(data, &rec); err != nil {
				return fmt.Errorf("node: replica record of %s: %w", root, err)
			}
		}
		edit(&rec)
		if rec == (replicaRec{}) {
			return b.Delete(root.Bytes())
		}
		data, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		return b.Put(root.Bytes(), data)
	})
}

func (r *replicator) isReplica(root cid.Cid) bool { return r.n.replicaRec(root).Replica }

func (r *replicator) setReplica(root cid.Cid, v bool) error {
	return r.n.updateReplicaRec(root, func(rec *replicaRec) { rec.Replica = v })
}

// replicaRoots lists the roots whose store copy is a replica.
func (r *replicator) replicaRoots() []cid.Cid {
	var out []cid.Cid
	_ = r.n.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(replicaBucket).ForEach(func(k, v []byte) error {
			var rec replicaRec
			if json.Unmarshal(v, &rec) != nil || !rec.Replica {
				return nil
			}
			if c, err := cid.Cast(k); err == nil {
				out = append(out, c)
			}
			return nil
		})
	})
	return out
}

func initReplicas(db *bolt.DB) error {
	return db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(replicaBucket)
		return err
	})
}
