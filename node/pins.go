package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/shoalnet/shoal/node/catalog"
	"github.com/shoalnet/shoal/node/membership"
)

// Replica requests (pins) and what the network holds of a root.

// ErrNotPinned: the root has no replica request from this node.
var ErrNotPinned = errors.New("node: not pinned here")

// ErrUnknownRoot: no peer announced the root.
var ErrUnknownRoot = errors.New("node: no peer announced this root")

// withdrawHolding tells the network this node no longer holds root: its
// pin, if any, is announced again as a request only.
func (n *Node) withdrawHolding(ctx context.Context, root cid.Cid) {
	if pin := n.replicaRec(root).Pin; pin > 0 {
		w := n.cat.WantOf(root)
		n.announcePin(ctx, root, w.Name, w.Size, pin)
		return
	}
	if err := n.cat.Withdraw(ctx, root); err != nil && n.ctx.Err() == nil {
		n.log.Warn("withdraw", "root", root, "err", err)
	}
}

func (n *Node) announcePin(ctx context.Context, root cid.Cid, name string, size int64, replicas int) {
	e := catalog.Entry{Root: root, Name: name, Size: size, Replicas: replicas, NotHeld: true}
	if err := n.cat.Announce(ctx, e); err != nil {
		n.log.Warn("announce a replica request", "root", root, "err", err)
	}
}

// Pin asks the network to keep replicas copies of root, which some peer
// has announced: the storers placed for it fetch it. This node need not
// hold it. Pinning again changes the count.
func (n *Node) Pin(ctx context.Context, root cid.Cid, replicas int) error {
	if err := CheckRoot(root); err != nil {
		return err
	}
	if replicas < 1 || replicas > catalog.MaxReplicas {
		return fmt.Errorf("%w: pin: %d replicas; from 1 to %d", ErrBadArgument, replicas, catalog.MaxReplicas)
	}
	sh, held := n.heldShare(root)
	var e catalog.Entry
	if !held {
		var ok bool
		if e, ok = n.cat.Latest(root); !ok {
			return fmt.Errorf("%w: %s (pin content some peer shares; share it first)", ErrUnknownRoot, root)
		}
	}
	if err := n.updateReplicaRec(root, func(rec *replicaRec) { rec.Pin = replicas }); err != nil {
		return err
	}
	if held {
		n.announce(ctx, root, sh.Name, sh.Size, int64(sh.Files)) // carries the pin
	} else {
		n.announcePin(ctx, root, e.Name, e.Size, replicas)
	}
	n.repl.poke()
	return nil
}

// Unpin withdraws this node's replica request for root. The replicas are
// released after the grace period unless another peer asks for them.
func (n *Node) Unpin(ctx context.Context, root cid.Cid) error {
	if err := CheckRoot(root); err != nil {
		return err
	}
	if n.replicaRec(root).Pin == 0 {
		return fmt.Errorf("%w: %s", ErrNotPinned, root)
	}
	if err := n.updateReplicaRec(root, func(rec *replicaRec) { rec.Pin = 0 }); err != nil {
		return err
	}
	if sh, ok := n.heldShare(root); ok {
		n.announce(ctx, root, sh.Name, sh.Size, int64(sh.Files))
	} else if err := n.cat.Withdraw(ctx, root); err != nil {
		n.log.Warn("withdraw", "root", root, "err", err)
	}
	n.repl.poke()
	return nil
}

// ReplicaHolder is one member placed for a root.
type ReplicaHolder struct {
	ID    peer.ID          `json:"id"`
	Name  string           `json:"name,omitempty"`
	State membership.State `json:"state"`
	Holds bool             `json:"holds"` // announced a complete copy
}

// ReplicaStatus is what the network holds of a root, as this node sees it.
type ReplicaStatus struct {
	Root    cid.Cid         `json:"root"`
	Name    string          `json:"name,omitempty"`
	Size    int64           `json:"size"`
	Wanted  int             `json:"wanted"`
	Pinned  int             `json:"pinned_here,omitempty"` // this node's request
	Live    int             `json:"live_copies"`           // live storers holding it
	Holders []peer.ID       `json:"holders"`               // every live member that announced a copy
	Placed  []ReplicaHolder `json:"placed"`                // who should hold it, best first
	// Repairing: placed members that do not hold it yet (fetching it, or
	// about to).
	Repairing []peer.ID `json:"repairing,omitempty"`
	// RepairHere is set while this node fetches it as a replica.
	RepairHere *time.Time `json:"repair_here_since,omitempty"`
}

// Replicas returns what the network holds of root and who should.
func (n *Node) Replicas(root cid.Cid) (ReplicaStatus, error) {
	if err := CheckRoot(root); err != nil {
		return ReplicaStatus{}, err
	}
	r := n.repl
	w := n.cat.WantOf(root)
	p := r.plan(w, r.storers(), r.live())
	return n.replicaStatus(p), nil
}

// UnderReplicated lists the wanted roots with fewer live copies than
// asked.
func (n *Node) UnderReplicated() []ReplicaStatus {
	r := n.repl
	storers, live := r.storers(), r.live()
	var out []ReplicaStatus
	for _, w := range n.cat.Wants() {
		if p := r.plan(w, storers, live); p.liveCopy < w.Replicas {
			out = append(out, n.replicaStatus(p))
		}
	}
	return out
}

func (n *Node) replicaStatus(p plan) ReplicaStatus {
	st := ReplicaStatus{Root: p.want.Root, Name: p.want.Name, Size: p.want.Size, Wanted: p.want.Replicas,
		Pinned: n.replicaRec(p.want.Root).Pin, Live: p.liveCopy, Holders: p.holders}
	states := make(map[peer.ID]membership.Member)
	for _, m := range n.members.Members() {
		states[m.ID] = m
	}
	for _, id := range p.placed {
		m := states[id]
		h := ReplicaHolder{ID: id, Name: m.Meta.Name, State: m.State, Holds: slices.Contains(p.holders, id)}
		st.Placed = append(st.Placed, h)
		if !h.Holds {
			st.Repairing = append(st.Repairing, id)
		}
	}
	if j, ok := n.repl.repairs()[p.want.Root.KeyString()]; ok {
		st.RepairHere = &j.started
	}
	return st
}
