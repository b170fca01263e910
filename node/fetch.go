package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"
	mh "github.com/multiformats/go-multihash"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/shoalnet/shoal/transfer"
	"github.com/shoalnet/shoal/transfer/manifest"
)

const sha256Code = mh.SHA2_256

// ErrNotRoot: a CID that cannot be a share's root.
var ErrNotRoot = errors.New("node: not a share root")

// CheckRoot checks that c can name a share: a CIDv1 of a dag-cbor block.
// A chunk's CID (codec raw) is refused with a clear message.
func CheckRoot(c cid.Cid) error {
	if !c.Defined() {
		return fmt.Errorf("%w: empty CID", ErrNotRoot)
	}
	if c.Version() != 1 || c.Type() != cid.DagCBOR {
		return fmt.Errorf("%w: %s is a CIDv%d with codec 0x%x; share roots are CIDv1 dag-cbor (bafy...)", ErrNotRoot, c, c.Version(), c.Type())
	}
	return nil
}

// FetchOptions are the options of Fetch.
type FetchOptions struct {
	// Overwrite replaces an existing destination.
	Overwrite bool
	// IntoDir makes dst a directory: the content lands at dst/<share name>.
	IntoDir bool
	// Peers are providers to try first (their addresses are dialled).
	Peers []peer.AddrInfo
	// NoDHT skips the DHT search (only catalog holders and Peers).
	NoDHT bool
	// Progress, if set, is called about every 200ms and at the end, from
	// one goroutine.
	Progress func(transfer.Progress)
}

// Fetch downloads root into dst from every provider it finds, verifying
// every byte, and then serves it. Providers come from opts.Peers, the
// catalog (peers that announced root) and the DHT, in that order; the DHT
// is searched in parallel, never waited for when a holder is known. It
// blocks until the content is in place or ctx ends; an interrupted fetch
// resumes when called again with the same root and dst, also after a
// restart.
func (n *Node) Fetch(ctx context.Context, root cid.Cid, dst string, opts FetchOptions) (*transfer.Result, error) {
	wait, err := n.startFetch(ctx, root, dst, opts, refuseSealed)
	if err != nil {
		return nil, err
	}
	return wait()
}

// startFetch starts Fetch's work and returns what waits for it to end;
// the fetch is registered (Open finds it) when startFetch returns. check,
// if set, sees the manifest first and may refuse it.
func (n *Node) startFetch(ctx context.Context, root cid.Cid, dst string, opts FetchOptions,
	check func(*manifest.Manifest) error) (wait func() (*transfer.Result, error), err error) {
	if err := CheckRoot(root); err != nil {
		return nil, err
	}
	// Serve what arrives under the publishers' limits.
	for _, list := range n.cat.Allows(root) {
		if err := n.acls.Add(root, list); err != nil {
			return nil, fmt.Errorf("node: fetch: %w", err)
		}
	}
	started := time.Now()
	ctx, span := n.tracer.Start(ctx, "shoal.fetch", trace.WithAttributes(attribute.String("shoal.root", root.String())))
	defer func() {
		if err != nil {
			endSpan(span, err)
		}
	}()
	storeCopy := func() (string, bool) { return "", false }
	if sh, ok := n.heldShare(root); ok && n.inStore(sh.Path) {
		storeCopy = func() (string, bool) { return sh.Path, true }
	}
	ctx, cancel := context.WithCancel(ctx)
	providers := make(chan peer.ID, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(providers)
		n.findProviders(ctx, root, opts, providers)
	}()
	stop := func() {
		cancel()
		<-done
	}
	var progress func(transfer.Progress)
	if opts.Progress != nil {
		progress = func(p transfer.Progress) { opts.Progress(n.withPaths(p)) }
	}
	p, err := n.xfer.Start(ctx, root, dst, transfer.FetchOptions{
		Overwrite: opts.Overwrite,
		IntoDir:   opts.IntoDir,
		Providers: providers,
		Progress:  progress,
		OnLimits: func(p peer.ID, allow []string) error {
			// Serve what arrives under the limits its holders state.
			return n.acls.AddSoon(root, allow)
		},
		OnBadPeer: func(p peer.ID, err error) {
			n.log.Warn("peer sent bad data", "peer", p, "root", root, "err", err)
		},
		CheckManifest: check,
	})
	if err != nil {
		stop()
		return nil, err
	}
	return func() (res *transfer.Result, err error) {
		defer func() { endSpan(span, err) }()
		res, err = p.Wait()
		stop()
		if err == nil {
			n.metrics.fetchTime.Observe(time.Since(started).Seconds())
			res.Progress = n.withPaths(res.Progress)
		}
		if err != nil {
			if errors.Is(err, transfer.ErrNoProviders) {
				if refs := n.access.refusedSince(started); len(refs) > 0 {
					// Say why: this peer was refused (its token).
					return nil, fmt.Errorf("%w (%w)", errors.Join(refs...), err)
				}
			}
			return nil, explainHandshake(err, n.private, false)
		}
		if prev, ok := storeCopy(); ok && prev != res.Path {
			// The root is served from the new copy now; the one kept
			// in the store for reading would only take room.
			if err := os.RemoveAll(prev); err != nil {
				n.log.Warn("remove a store copy fetched again elsewhere", "path", prev, "err", err)
			}
		}
		n.announce(n.ctx, root, res.Manifest.Name, res.Manifest.Size, int64(countFiles(res)))
		n.provide(root)
		n.refreshMeta()
		return res, nil
	}, nil
}

func countFiles(res *transfer.Result) int {
	k := 0
	for _, e := range res.Manifest.Entries {
		if !e.Dir {
			k++
		}
	}
	return k
}

// endSpan ends span, recording err if any.
func endSpan(span trace.Span, err error) {
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// findProviders feeds providers: explicit peers, catalog holders, then the
// DHT. Its span has an event for each provider found, saying where.
func (n *Node) findProviders(ctx context.Context, root cid.Cid, opts FetchOptions, out chan<- peer.ID) {
	ctx, span := n.tracer.Start(ctx, "shoal.find_providers")
	defer span.End()
	from := "given"
	send := func(p peer.ID) bool {
		if span.IsRecording() {
			span.AddEvent("provider", trace.WithAttributes(attribute.String("shoal.peer", p.String()), attribute.String("shoal.from", from)))
		}
		select {
		case out <- p:
			return true
		case <-ctx.Done():
			return false
		}
	}
	seen := map[peer.ID]bool{n.h.ID(): true}
	for _, ai := range opts.Peers {
		if seen[ai.ID] {
			continue
		}
		seen[ai.ID] = true
		n.h.Peerstore().AddAddrs(ai.ID, ai.Addrs, peerstore.TempAddrTTL)
		if !send(ai.ID) {
			return
		}
	}
	from = "catalog"
	for _, p := range n.cat.Holders(root) {
		if seen[p] {
			continue
		}
		seen[p] = true
		if !send(p) {
			return
		}
	}
	if opts.NoDHT {
		return
	}
	from = "dht"
	fctx, cancel := context.WithTimeout(ctx, n.cfg.FindTimeout)
	defer cancel()
	for ai := range n.dht.FindProviders(fctx, root, 0) {
		if seen[ai.ID] {
			continue
		}
		seen[ai.ID] = true
		if len(ai.Addrs) > 0 {
			n.h.Peerstore().AddAddrs(ai.ID, ai.Addrs, peerstore.TempAddrTTL)
		}
		if !send(ai.ID) {
			return
		}
	}
}

// pathTo says how p is reached now: "direct tcp", "direct quic",
// "relayed", or "" when not connected. A direct connection wins.
func (n *Node) pathTo(p peer.ID) string {
	path := ""
	for _, c := range n.h.Network().ConnsToPeer(p) {
		a := c.RemoteMultiaddr()
		if _, err := a.ValueForProtocol(ma.P_CIRCUIT); err == nil {
			if path == "" {
				path = "relayed"
			}
			continue
		}
		if _, err := a.ValueForProtocol(ma.P_QUIC_V1); err == nil {
			return "direct quic"
		}
		return "direct tcp"
	}
	return path
}

// withPaths fills in how each provider of p is reached.
func (n *Node) withPaths(p transfer.Progress) transfer.Progress {
	peers := make([]transfer.PeerProgress, len(p.Peers))
	copy(peers, p.Peers)
	for i := range peers {
		peers[i].Path = n.pathTo(peers[i].Peer)
	}
	p.Peers = peers
	return p
}
