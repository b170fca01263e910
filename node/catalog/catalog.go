package catalog

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	bolt "go.etcd.io/bbolt"
)

// SyncProtocol is the anti-entropy protocol. Its first byte says what is
// synced; the node that owns the host dispatches on it.
const SyncProtocol = "/shoal/sync/1.0.0"

// SyncRequest is the first byte of a catalog pull on SyncProtocol.
const SyncRequest byte = 1

// maxSyncEntries bounds what one sync accepts.
const maxSyncEntries = 100_000

var bucket = []byte("catalog")

// Topic returns the catalog topic of a network.
func Topic(network string) string { return "shoal/" + network + "/catalog" }

// Config tunes the catalog.
type Config struct {
	// Network is the network name. Default "default".
	Network string
	// ReannounceInterval is how often a node announces its own shares
	// again. Default 10m.
	ReannounceInterval time.Duration
	// Admit, if set, decides whether an announcement's publisher may
	// publish (a closed network checks its token). Announcements it
	// refuses are rejected on gossip and ignored in syncs, and counted.
	Admit func(Entry) error
	// Token is presented in this node's own announcements.
	Token func() []byte
	// SyncInterval is the anti-entropy period: this often the catalog
	// pulls the catalog of one peer chosen at random, so that an
	// announcement gossip dropped arrives within a few periods. Default
	// 30s.
	SyncInterval time.Duration
	// SyncPeers, if set, lists the peers to choose from (the members this
	// node knows alive); default: the connected peers.
	SyncPeers func() []peer.ID
	// Logger receives the catalog's logs. Default: discard.
	Logger *slog.Logger
}

// Catalog is a node's view of the shares in its network. Its methods are
// safe for concurrent use.
type Catalog struct {
	h     host.Host
	db    *bolt.DB
	key   crypto.PrivKey
	cfg   Config
	log   *slog.Logger
	ps    *pubsub.PubSub
	topic *pubsub.Topic
	sub   *pubsub.Subscription

	cancel context.CancelFunc
	ctx    context.Context
	wg     sync.WaitGroup

	rejected atomic.Int64

	mu     sync.Mutex
	synced map[peer.ID]time.Time
	closed bool
	notify *network.NotifyBundle

	idxMu   sync.Mutex
	idx     map[string]map[peer.ID]Entry // standing (not withdrawn) entries, by root
	changed chan struct{}                // a token when an entry was stored
}

// New joins the catalog topic on ps and pulls the catalog of every peer
// that connects. The owner of the host routes catalog pulls on
// SyncProtocol to ServeSync. Close stops it.
func New(h host.Host, ps *pubsub.PubSub, db *bolt.DB, key crypto.PrivKey, cfg Config) (*Catalog, error) {
	if cfg.Network == "" {
		cfg.Network = "default"
	}
	if cfg.ReannounceInterval <= 0 {
		cfg.ReannounceInterval = 10 * time.Minute
	}
	if cfg.SyncInterval <= 0 {
		cfg.SyncInterval = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucket)
		return err
	}); err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	c := &Catalog{h: h, db: db, key: key, cfg: cfg, log: cfg.Logger, ps: ps, synced: make(map[peer.ID]time.Time),
		idx: make(map[string]map[peer.ID]Entry), changed: make(chan struct{}, 1)}
	if err := c.loadIndex(); err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	name := Topic(cfg.Network)
	if err := ps.RegisterTopicValidator(name, c.validate); err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	t, err := ps.Join(name)
	if err != nil {
		ps.UnregisterTopicValidator(name)
		return nil, fmt.Errorf("catalog: join %s: %w", name, err)
	}
	sub, err := t.Subscribe()
	if err != nil {
		t.Close()
		ps.UnregisterTopicValidator(name)
		return nil, fmt.Errorf("catalog: subscribe %s: %w", name, err)
	}
	c.topic, c.sub = t, sub
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.notify = &network.NotifyBundle{ConnectedF: func(_ network.Network, conn network.Conn) {
		c.pullSoon(conn.RemotePeer())
	}}
	h.Network().Notify(c.notify)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.receive()
	}()
	c.every(c.cfg.ReannounceInterval, c.reannounce)
	c.every(c.cfg.SyncInterval, c.syncOnce)
	return c, nil
}

// every runs fn every d until the catalog closes.
func (c *Catalog) every(d time.Duration, fn func()) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-c.ctx.Done():
				return
			case <-t.C:
				fn()
			}
		}
	}()
}

// syncOnce pulls one random peer's catalog (every SyncInterval): gossip
// may drop an announcement (a full queue, a peer cut off for a while),
// and this repairs it without waiting for the next reannounce.
func (c *Catalog) syncOnce() {
	var peers []peer.ID
	if c.cfg.SyncPeers != nil {
		peers = c.cfg.SyncPeers()
	} else {
		peers = c.h.Network().Peers()
	}
	peers = slices.DeleteFunc(peers, func(p peer.ID) bool { return p == c.h.ID() })
	if len(peers) == 0 {
		return
	}
	p := peers[rand.IntN(len(peers))]
	ctx, cancel := context.WithTimeout(c.ctx, min(c.cfg.SyncInterval, 30*time.Second))
	defer cancel()
	if err := c.Sync(ctx, p); err != nil {
		c.log.Debug("catalog: anti-entropy sync", "peer", p, "err", err)
	}
}

// Close leaves the topic and waits for the catalog's goroutines. It may be
// called twice.
func (c *Catalog) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	c.h.Network().StopNotify(c.notify)
	c.cancel()
	c.sub.Cancel()
	c.wg.Wait()
	err := c.topic.Close()
	c.ps.UnregisterTopicValidator(Topic(c.cfg.Network))
	return err
}

func (c *Catalog) validate(ctx context.Context, from peer.ID, msg *pubsub.Message) bool {
	e, err := Decode(msg.Data)
	if err != nil {
		c.log.Debug("catalog: rejected announcement", "from", from, "err", err)
		return false
	}
	if e.Publisher != msg.GetFrom() {
		c.log.Debug("catalog: rejected announcement relayed as another's", "author", msg.GetFrom(), "publisher", e.Publisher)
		return false
	}
	if from == c.h.ID() {
		return true // this node's own: the others judge it
	}
	if err := c.admit(e); err != nil {
		c.log.Info("catalog: rejected announcement", "publisher", e.Publisher, "root", e.Root, "err", err)
		return false
	}
	return true
}

// admit applies Config.Admit and counts refusals.
func (c *Catalog) admit(e Entry) error {
	if c.cfg.Admit == nil {
		return nil
	}
	err := c.cfg.Admit(e)
	if err != nil {
		c.rejected.Add(1)
	}
	return err
}

// stillAdmitted reports whether a kept announcement is still admitted (its
// publisher's token may have expired or been revoked since).
func (c *Catalog) stillAdmitted(e Entry) bool {
	return c.cfg.Admit == nil || e.Publisher == c.h.ID() || c.cfg.Admit(e) == nil
}

// Allows returns the Allow lists of the current announcements of root
// that limit it; none means root is open to every peer.
func (c *Catalog) Allows(root cid.Cid) [][]string {
	var out [][]string
	for _, e := range c.current(root) {
		if len(e.Allow) > 0 {
			out = append(out, e.Allow)
		}
	}
	return out
}

// Rejected returns how many announcements Config.Admit refused.
func (c *Catalog) Rejected() int64 { return c.rejected.Load() }

func (c *Catalog) receive() {
	for {
		msg, err := c.sub.Next(c.ctx)
		if err != nil {
			return
		}
		if msg.Local {
			continue
		}
		if _, err := c.store(msg.Data); err != nil {
			c.log.Debug("catalog: store", "err", err)
		}
	}
}

// store decodes, checks and keeps a signed announcement if it is newer
// than what is kept for its root and publisher.
func (c *Catalog) store(data []byte) (bool, error) {
	e, err := Decode(data)
	if err != nil {
		return false, err
	}
	if e.Publisher != c.h.ID() {
		if err := c.admit(e); err != nil {
			return false, err
		}
	}
	key := append(e.Root.Bytes(), []byte(e.Publisher)...)
	var stored bool
	err = c.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		if old := b.Get(key); old != nil {
			if prev, err := Decode(old); err == nil && !e.Time.After(prev.Time) {
				return nil
			}
		}
		stored = true
		return b.Put(key, data)
	})
	if stored && err == nil {
		c.index(e)
		select {
		case c.changed <- struct{}{}:
		default:
		}
	}
	return stored, err
}

// loadIndex builds the in-memory index of the standing entries (each
// decoded, and its signature checked, once).
func (c *Catalog) loadIndex() error {
	return c.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(_, v []byte) error {
			if e, err := Decode(v); err == nil {
				c.index(e)
			}
			return nil
		})
	})
}

// index records e, the newest entry of its root and publisher.
func (c *Catalog) index(e Entry) {
	c.idxMu.Lock()
	defer c.idxMu.Unlock()
	k := e.Root.KeyString()
	if e.Removed {
		if m := c.idx[k]; m != nil {
			delete(m, e.Publisher)
			if len(m) == 0 {
				delete(c.idx, k)
			}
		}
		return
	}
	if c.idx[k] == nil {
		c.idx[k] = make(map[peer.ID]Entry)
	}
	c.idx[k][e.Publisher] = e
}

// Want is a root that publishers ask the network to keep copies of.
type Want struct {
	Root     cid.Cid
	Name     string
	Size     int64
	Replicas int // the largest count asked by a current entry
}

// Wants returns every root some current entry asks replicas of.
func (c *Catalog) Wants() []Want {
	c.idxMu.Lock()
	var entries [][]Entry
	for _, m := range c.idx {
		var es []Entry
		for _, e := range m {
			if e.Replicas > 0 {
				es = append(es, e)
			}
		}
		if len(es) > 0 {
			entries = append(entries, es)
		}
	}
	c.idxMu.Unlock()
	var out []Want
	for _, es := range entries {
		if w, ok := c.want(es); ok {
			out = append(out, w)
		}
	}
	slices.SortFunc(out, func(a, b Want) int { return strings.Compare(a.Root.KeyString(), b.Root.KeyString()) })
	return out
}

// WantOf returns what is asked of root (Replicas 0: nothing).
func (c *Catalog) WantOf(root cid.Cid) Want {
	es := c.current(root)
	w, _ := c.want(es)
	w.Root = root
	return w
}

// want merges the entries of one root, leaving out publishers no longer
// admitted.
func (c *Catalog) want(es []Entry) (Want, bool) {
	var w Want
	for _, e := range es {
		if !c.stillAdmitted(e) || e.Replicas <= w.Replicas {
			continue
		}
		w = Want{Root: e.Root, Name: e.Name, Size: e.Size, Replicas: e.Replicas}
	}
	return w, w.Replicas > 0
}

// Changed receives a token after an announcement was stored (at most one
// waits: a slow reader sees one token for many changes).
func (c *Catalog) Changed() <-chan struct{} { return c.changed }

// Announce signs e as this node's, keeps it and publishes it.
func (c *Catalog) Announce(ctx context.Context, e Entry) error {
	e.Publisher = c.h.ID()
	if c.cfg.Token != nil {
		e.Token = c.cfg.Token()
	}
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	data, err := Sign(e, c.key)
	if err != nil {
		return err
	}
	if _, err := c.store(data); err != nil {
		return err
	}
	if err := c.topic.Publish(ctx, data); err != nil {
		return fmt.Errorf("catalog: publish: %w", err)
	}
	return nil
}

// Withdraw announces that this node no longer holds root.
func (c *Catalog) Withdraw(ctx context.Context, root cid.Cid) error {
	return c.Announce(ctx, Entry{Root: root, Removed: true, Time: time.Now().UTC()})
}

// all returns every kept announcement, withdrawals included.
func (c *Catalog) all() ([]Entry, [][]byte, error) {
	var entries []Entry
	var raw [][]byte
	err := c.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(_, v []byte) error {
			e, err := Decode(v)
			if err != nil {
				return nil // kept by an older version; ignore
			}
			if !c.stillAdmitted(e) {
				return nil
			}
			entries = append(entries, e)
			raw = append(raw, append([]byte(nil), v...))
			return nil
		})
	})
	return entries, raw, err
}

// Count returns the number of standing announcements (one per share and
// publisher), without reading the database.
func (c *Catalog) Count() int {
	c.idxMu.Lock()
	defer c.idxMu.Unlock()
	k := 0
	for _, m := range c.idx {
		k += len(m)
	}
	return k
}

// List returns the shares known in the network, newest first, one entry
// per (root, publisher).
func (c *Catalog) List() ([]Entry, error) {
	all, _, err := c.all()
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, e := range all {
		if !e.Removed {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b Entry) int { return b.Time.Compare(a.Time) })
	return out, nil
}

// Holders returns the peers that announced they hold root and have not
// withdrawn it.
func (c *Catalog) Holders(root cid.Cid) []peer.ID {
	var out []peer.ID
	for _, e := range c.current(root) {
		if !e.NotHeld {
			out = append(out, e.Publisher)
		}
	}
	return out
}

// Latest returns the newest standing announcement of root by any
// publisher.
func (c *Catalog) Latest(root cid.Cid) (Entry, bool) {
	var out Entry
	for _, e := range c.current(root) {
		if e.Time.After(out.Time) {
			out = e
		}
	}
	return out, out.Root.Defined()
}

// current returns the announcements of root that stand: not withdrawn,
// and from publishers still admitted.
func (c *Catalog) current(root cid.Cid) []Entry {
	c.idxMu.Lock()
	var out []Entry
	for _, e := range c.idx[root.KeyString()] {
		out = append(out, e)
	}
	c.idxMu.Unlock()
	return slices.DeleteFunc(out, func(e Entry) bool { return !c.stillAdmitted(e) })
}

// reannounce publishes this node's standing announcements again (every
// ReannounceInterval), with a fresh time.
func (c *Catalog) reannounce() {
	all, _, err := c.all()
	if err != nil {
		return
	}
	for _, e := range all {
		if e.Publisher != c.h.ID() || e.Removed {
			continue
		}
		e.Time = time.Now().UTC()
		if err := c.Announce(c.ctx, e); err != nil && c.ctx.Err() == nil {
			c.log.Debug("catalog: re-announce", "root", e.Root, "err", err)
		}
	}
}

// pullSoon syncs with p in the background unless it was synced recently.
func (c *Catalog) pullSoon(p peer.ID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || time.Since(c.synced[p]) < time.Minute {
		return
	}
	c.synced[p] = time.Now()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		ctx, cancel := context.WithTimeout(c.ctx, 30*time.Second)
		defer cancel()
		if err := c.Sync(ctx, p); err != nil {
			c.log.Debug("catalog: sync", "peer", p, "err", err)
		}
	}()
}

// Sync pulls p's catalog and keeps what is newer. It blocks until done.
func (c *Catalog) Sync(ctx context.Context, p peer.ID) error {
	s, err := c.h.NewStream(network.WithAllowLimitedConn(ctx, "catalog sync"), p, SyncProtocol)
	if err != nil {
		return err
	}
	defer s.Close()
	if d, ok := ctx.Deadline(); ok {
		s.SetDeadline(d)
	}
	if _, err := s.Write([]byte{SyncRequest}); err != nil {
		s.Reset()
		return err
	}
	if err := s.CloseWrite(); err != nil {
		s.Reset()
		return err
	}
	n, err := readEntries(bufio.NewReader(s), func(data []byte) {
		if _, err := c.store(data); err != nil {
			c.log.Debug("catalog: synced entry rejected", "peer", p, "err", err)
		}
	})
	if err != nil {
		s.Reset()
		return fmt.Errorf("catalog: sync from %s after %d entries: %w", p, n, err)
	}
	return nil
}

// readEntries reads length-prefixed entries until a zero length.
func readEntries(r *bufio.Reader, fn func([]byte)) (int, error) {
	buf := make([]byte, MaxEntrySize)
	for n := 0; ; n++ {
		l, err := binary.ReadUvarint(r)
		if err != nil {
			return n, err
		}
		if l == 0 {
			return n, nil
		}
		if l > MaxEntrySize {
			return n, fmt.Errorf("%w: entry of %d bytes", ErrInvalid, l)
		}
		if n >= maxSyncEntries {
			return n, fmt.Errorf("catalog: more than %d entries", maxSyncEntries)
		}
		if _, err := io.ReadFull(r, buf[:l]); err != nil {
			return n, err
		}
		fn(buf[:l])
	}
}

// ServeSync answers a catalog pull whose request byte was read already.
func (c *Catalog) ServeSync(s network.Stream) {
	defer s.Close()
	s.SetDeadline(time.Now().Add(30 * time.Second))
	_, raw, err := c.all()
	if err != nil {
		s.Reset()
		return
	}
	w := bufio.NewWriter(s)
	var lb [binary.MaxVarintLen64]byte
	for _, data := range raw {
		w.Write(lb[:binary.PutUvarint(lb[:], uint64(len(data)))])
		w.Write(data)
	}
	w.WriteByte(0)
	if err := w.Flush(); err != nil {
		s.Reset()
	}
}
