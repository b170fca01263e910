package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/shoalnet/shoal/node/access"
	"github.com/shoalnet/shoal/node/auth"
	"github.com/shoalnet/shoal/node/catalog"
	"github.com/shoalnet/shoal/node/membership"
)

// CheckAllow validates an allow list: each entry is a role (admin,
// publisher, reader) or a peer ID. Roles need a closed network.
func CheckAllow(list []string, closed bool) ([]string, error) {
	if len(list) > catalog.MaxAllow {
		return nil, fmt.Errorf("node: at most %d allow entries, got %d", catalog.MaxAllow, len(list))
	}
	var out []string
	for _, a := range list {
		a = strings.TrimSpace(a)
		if r, err := auth.ParseRole(a); err == nil {
			if !closed {
				return nil, fmt.Errorf("node: allow %q: roles exist only in a closed network (config admins); allow peer IDs instead", a)
			}
			a = string(r)
		} else if id, err := peer.Decode(a); err == nil {
			a = id.String()
		} else {
			return nil, fmt.Errorf("node: allow %q: not a role (admin, publisher, reader) nor a peer ID", a)
		}
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out, nil
}

// limits returns every allow list root is limited to here.
func (n *Node) limits(root cid.Cid) [][]string {
	lists := n.acls.Lists(root)
	for _, l := range n.cat.Allows(root) {
		if !slices.ContainsFunc(lists, func(k []string) bool { return slices.Equal(k, l) }) {
			lists = append(lists, l)
		}
	}
	return lists
}

// authorize decides whether p may fetch root from this node: in a closed
// network p must have presented a valid token, and p must pass every allow
// list that limits root (this node's own, and those announced by the
// root's publishers).
func (n *Node) authorize(ctx context.Context, p peer.ID, root cid.Cid) error {
	ctx, cancel := context.WithTimeout(ctx, authTimeout)
	defer cancel()
	role, err := n.access.waitPeer(ctx, p, time.Now())
	if err != nil {
		return fmt.Errorf("peer not admitted to this network: %v", err)
	}
	for _, list := range n.limits(root) {
		if !access.Allowed(list, p, role) {
			return fmt.Errorf("%s is limited to %s", root, strings.Join(list, ", "))
		}
	}
	return nil
}

// admitPublisher is the catalog's check: the publisher's token proves a
// role that may publish.
func (a *keeper) admitPublisher(e catalog.Entry) error {
	if !a.closed() {
		return nil
	}
	_, role, err := a.v.CheckBytes(e.Token, e.Publisher, time.Now())
	if err != nil {
		return err
	}
	if !role.Includes(auth.RolePublisher) {
		return fmt.Errorf("%w: %s is a %s", ErrNotPublisher, e.Publisher, role)
	}
	return nil
}

// admitMember is the membership's check: the member's token is valid.
func (a *keeper) admitMember(id peer.ID, m membership.Meta) error {
	_, _, err := a.v.CheckBytes(m.Token, id, time.Now())
	return err
}

// Role returns this node's role: in an open network every peer is a
// publisher; in a closed one its token decides (an error says why it has
// none).
func (n *Node) Role() (auth.Role, error) { return n.access.selfRole() }

// Closed reports whether the node's network is closed (has admins).
func (n *Node) Closed() bool { return n.access.closed() }

// Token returns this node's token (zero if none).
func (n *Node) Token() auth.Token {
	n.access.mu.Lock()
	defer n.access.mu.Unlock()
	return n.access.token
}

// SetToken installs t as this node's token: it must name this peer and be
// valid in this network. It is kept in <home>/token and presented on the
// next connections, in the member metadata and in announcements.
func (n *Node) SetToken(t auth.Token) error {
	if t.Peer != n.h.ID() {
		return fmt.Errorf("%w: it names %s, this peer is %s", auth.ErrWrongPeer, t.Peer, n.h.ID())
	}
	if _, err := n.access.v.Check(t, n.h.ID(), time.Now()); err != nil {
		return err
	}
	if err := WriteToken(n.cfg.Home, t); err != nil {
		return err
	}
	n.access.mu.Lock()
	n.access.token = t
	n.access.mu.Unlock()
	n.refreshMeta()
	return nil
}

// WriteToken writes t to <home>/token (mode 0600).
func WriteToken(home string, t auth.Token) error {
	p := filepath.Join(home, TokenFile)
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, []byte(t.String()+"\n"), 0o600); err != nil {
		return fmt.Errorf("node: write token: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("node: write token: %w", err)
	}
	return nil
}

// IssueToken signs a token for p with role r, valid for ttl (0: no
// expiry). Only an admin may issue.
func (n *Node) IssueToken(r auth.Role, p peer.ID, ttl time.Duration) (auth.Token, error) {
	if !n.access.v.IsAdmin(n.h.ID()) {
		return auth.Token{}, fmt.Errorf("node: this peer (%s) is not an admin of network %q", n.h.ID(), n.cfg.Network)
	}
	return auth.Issue(n.key, n.cfg.Network, r, p, ttl, time.Now())
}

// Revoke signs a revocation of t, applies it here, and publishes it to
// the network; every peer that receives it cuts off the token's peer.
// Only an admin may revoke.
func (n *Node) Revoke(ctx context.Context, t auth.Token) (auth.Revocation, error) {
	if !n.access.v.IsAdmin(n.h.ID()) {
		return auth.Revocation{}, fmt.Errorf("node: this peer (%s) is not an admin of network %q", n.h.ID(), n.cfg.Network)
	}
	if t.Network != n.cfg.Network {
		return auth.Revocation{}, fmt.Errorf("%w: %q, not %q", auth.ErrWrongNetwork, t.Network, n.cfg.Network)
	}
	r, err := auth.Revoke(n.key, t, time.Now())
	if err != nil {
		return r, err
	}
	n.access.applyRevocations([][]byte{r.Bytes()})
	if n.access.topic != nil {
		if err := n.access.topic.Publish(ctx, r.Bytes()); err != nil {
			return r, fmt.Errorf("node: publish revocation: %w", err)
		}
	}
	return r, nil
}

// AccessStatus describes this node's place in its network's access rules.
type AccessStatus struct {
	Closed        bool      `json:"closed"`
	Admins        []string  `json:"admins,omitempty"`
	Role          string    `json:"role,omitempty"`
	RoleError     string    `json:"role_error,omitempty"`
	TokenExpires  time.Time `json:"token_expires,omitzero"`
	Revocations   int       `json:"revocations"`
	RefusedPeers  int       `json:"refused_peers"`
	DeniedFetches int64     `json:"denied_requests"`
	RejectedAnns  int64     `json:"rejected_announcements"`
}

// Access returns this node's access status and counters.
func (n *Node) Access() AccessStatus {
	st := AccessStatus{
		Closed:        n.access.closed(),
		Revocations:   len(n.access.v.Revocations()),
		RefusedPeers:  n.access.gater.Count(),
		DeniedFetches: n.xfer.Denied(),
		RejectedAnns:  n.cat.Rejected(),
	}
	for _, a := range n.access.v.Admins() {
		st.Admins = append(st.Admins, a.String())
	}
	role, err := n.Role()
	st.Role = string(role)
	if err != nil {
		st.RoleError = err.Error()
	}
	st.TokenExpires = n.Token().Expires
	return st
}

// needRole returns an error unless this node holds role want (or above).
func (n *Node) needRole(want auth.Role) error {
	role, err := n.Role()
	if err != nil {
		return fmt.Errorf("%w: this peer has no valid token (%v)", ErrNotPublisher, err)
	}
	if !role.Includes(want) {
		return fmt.Errorf("%w: this peer is a %s in network %q; ask an admin for a %s token", ErrNotPublisher, role, n.cfg.Network, want)
	}
	return nil
}
