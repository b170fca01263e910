package auth

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	bolt "go.etcd.io/bbolt"
)

// MaxRevocations caps the revocations a node keeps and exchanges.
const MaxRevocations = 4096

var revBucket = []byte("revocations")

// Verifier checks tokens against a network's admins and the revocations
// it has learned; it keeps revocations in the state database. Its methods
// are safe for concurrent use.
type Verifier struct {
	network string
	admins  []peer.ID
	db      *bolt.DB

	mu      sync.RWMutex
	revoked map[TokenID]Revocation
}

// NewVerifier returns the verifier of network with these admins (none:
// an open network) and loads the revocations kept in db.
func NewVerifier(db *bolt.DB, network string, admins []peer.ID) (*Verifier, error) {
	v := &Verifier{network: network, admins: slices.Clone(admins), db: db, revoked: make(map[TokenID]Revocation)}
	err := db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(revBucket)
		if err != nil {
			return err
		}
		return b.ForEach(func(_, data []byte) error {
			if r, err := v.VerifyRevocation(data); err == nil {
				v.revoked[r.Token] = r
			}
			return nil // kept under other admins; ignored
		})
	})
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	return v, nil
}

// Closed reports whether the network has admins, so that tokens are
// required.
func (v *Verifier) Closed() bool { return len(v.admins) > 0 }

// Admins returns the network's admins.
func (v *Verifier) Admins() []peer.ID { return slices.Clone(v.admins) }

// IsAdmin reports whether p is one of the network's admins.
func (v *Verifier) IsAdmin(p peer.ID) bool { return slices.Contains(v.admins, p) }

// Check returns the role that t proves for presenter at now. An admin
// needs no token. In an open network every peer is a publisher.
func (v *Verifier) Check(t Token, presenter peer.ID, now time.Time) (Role, error) {
	if !v.Closed() {
		return RolePublisher, nil
	}
	if v.IsAdmin(presenter) {
		return RoleAdmin, nil
	}
	if t.IsZero() {
		return "", ErrNoToken
	}
	if t.Network != v.network {
		return "", fmt.Errorf("%w: %q, not %q", ErrWrongNetwork, t.Network, v.network)
	}
	if !v.IsAdmin(t.Issuer) {
		return "", fmt.Errorf("%w: issued by %s", ErrUnknownIssuer, t.Issuer)
	}
	if t.Peer != presenter {
		return "", fmt.Errorf("%w: %s, presented by %s", ErrWrongPeer, t.Peer, presenter)
	}
	if !t.Expires.IsZero() && !now.Before(t.Expires) {
		return "", fmt.Errorf("%w at %s", ErrExpired, t.Expires.Format(time.RFC3339))
	}
	v.mu.RLock()
	r, revoked := v.revoked[t.ID()]
	v.mu.RUnlock()
	if revoked {
		return "", fmt.Errorf("%w by %s at %s", ErrRevoked, r.Issuer, r.Time.Format(time.RFC3339))
	}
	return t.Role, nil
}

// CheckBytes decodes a token's binary form and checks it (see Check).
func (v *Verifier) CheckBytes(data []byte, presenter peer.ID, now time.Time) (Token, Role, error) {
	if !v.Closed() {
		return Token{}, RolePublisher, nil
	}
	var t Token
	if len(data) > 0 {
		var err error
		if t, err = DecodeToken(data); err != nil {
			return Token{}, "", err
		}
	}
	r, err := v.Check(t, presenter, now)
	return t, r, err
}

// VerifyRevocation decodes a revocation and checks that an admin of this
// network signed it, without keeping it.
func (v *Verifier) VerifyRevocation(data []byte) (Revocation, error) {
	r, err := DecodeRevocation(data)
	if err != nil {
		return Revocation{}, err
	}
	if r.Network != v.network {
		return Revocation{}, fmt.Errorf("%w: revocation for %q, not %q", ErrWrongNetwork, r.Network, v.network)
	}
	if !v.IsAdmin(r.Issuer) {
		return Revocation{}, fmt.Errorf("%w: revocation by %s", ErrUnknownIssuer, r.Issuer)
	}
	return r, nil
}

// AddRevocation checks a revocation (signed by an admin of this network)
// and keeps it. It returns the revocation and whether it was new.
func (v *Verifier) AddRevocation(data []byte) (Revocation, bool, error) {
	r, err := v.VerifyRevocation(data)
	if err != nil {
		return Revocation{}, false, err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, ok := v.revoked[r.Token]; ok {
		return r, false, nil
	}
	if len(v.revoked) >= MaxRevocations {
		return r, false, fmt.Errorf("auth: more than %d revocations kept", MaxRevocations)
	}
	if err := v.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(revBucket).Put(r.Token[:], r.raw)
	}); err != nil {
		return r, false, fmt.Errorf("auth: keep revocation: %w", err)
	}
	v.revoked[r.Token] = r
	return r, true, nil
}

// Revoked reports whether the token id was revoked.
func (v *Verifier) Revoked(id TokenID) bool {
	v.mu.RLock()
	defer v.mu.RUnlock()
	_, ok := v.revoked[id]
	return ok
}

// Revocations returns the kept revocations, oldest first.
func (v *Verifier) Revocations() []Revocation {
	v.mu.RLock()
	out := make([]Revocation, 0, len(v.revoked))
	for _, r := range v.revoked {
		out = append(out, r)
	}
	v.mu.RUnlock()
	slices.SortFunc(out, func(a, b Revocation) int { return a.Time.Compare(b.Time) })
	return out
}
