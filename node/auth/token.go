// Package auth holds the credentials of a closed shoal network: roles,
// tokens signed by the network's admins, and signed revocations.
//
// A network is closed when its configuration names admin peer IDs (an
// Ed25519 peer ID embeds its public key, so it is the key). An admin
// issues a token that binds one peer ID to one role; the peer presents it
// when it connects, in its member metadata and in its catalog
// announcements. Every peer checks every token itself: the issuer is one
// of its configured admins, the signature verifies, the token names the
// presenting peer, it has not expired and it has not been revoked.
package auth

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/shoalnet/shoal/node/internal/strictcbor"
)

// Role is what a peer may do in a closed network. Each role includes the
// ones below it: admin ⊇ publisher ⊇ reader.
type Role string

const (
	// RoleReader fetches the shares open to it.
	RoleReader Role = "reader"
	// RolePublisher also announces shares in the catalog.
	RolePublisher Role = "publisher"
	// RoleAdmin also issues tokens and revocations.
	RoleAdmin Role = "admin"
)

func (r Role) rank() int {
	switch r {
	case RoleReader:
		return 1
	case RolePublisher:
		return 2
	case RoleAdmin:
		return 3
	}
	return 0
}

// Includes reports whether a peer with role r may do what role o may.
func (r Role) Includes(o Role) bool { return r.rank() > 0 && r.rank() >= o.rank() }

// ParseRole parses a role name.
func ParseRole(s string) (Role, error) {
	r := Role(strings.ToLower(strings.TrimSpace(s)))
	if r.rank() == 0 {
		return "", fmt.Errorf("auth: unknown role %q (want admin, publisher or reader)", s)
	}
	return r, nil
}

// Errors of token checks. Each error returned by Check or Decode wraps
// one of them.
var (
	ErrMalformed     = errors.New("auth: malformed token")
	ErrNoToken       = errors.New("auth: no token")
	ErrBadSignature  = errors.New("auth: bad signature")
	ErrUnknownIssuer = errors.New("auth: not signed by an admin of this network")
	ErrWrongPeer     = errors.New("auth: token names another peer")
	ErrWrongNetwork  = errors.New("auth: token is for another network")
	ErrExpired       = errors.New("auth: token expired")
	ErrRevoked       = errors.New("auth: token revoked")
)

// MaxTokenSize caps an encoded token.
const MaxTokenSize = 1 << 10

// TokenPrefix starts the text form of a token.
const TokenPrefix = "shoaltok1_"

// Token binds a peer to a role in a network, signed by an admin.
type Token struct {
	Network string
	Role    Role
	Peer    peer.ID
	Issuer  peer.ID
	Issued  time.Time
	Expires time.Time // zero: never

	raw []byte // the signed encoding
}

// signedMsg is the encoding of a signed token or revocation: the body's
// encoding and the signature over a domain tag and exactly those bytes.
type signedMsg struct {
	Body []byte `cbor:"b"`
	Sig  []byte `cbor:"s"`
}

type wireToken struct {
	Network string `cbor:"net"`
	Role    string `cbor:"role"`
	Peer    []byte `cbor:"peer"`
	Issuer  []byte `cbor:"iss"`
	Issued  int64  `cbor:"iat"`           // Unix seconds
	Expires int64  `cbor:"exp,omitempty"` // Unix seconds; 0: never
}

const (
	tokenDomain      = "shoal token v1\x00"
	revocationDomain = "shoal revocation v1\x00"
)

var (
	encMode = strictcbor.Enc
	decMode = strictcbor.Dec(4, 64)
)

func sign(key crypto.PrivKey, domain string, body any) ([]byte, error) {
	b, err := encMode.Marshal(body)
	if err != nil {
		return nil, err
	}
	sig, err := key.Sign(append([]byte(domain), b...))
	if err != nil {
		return nil, err
	}
	return encMode.Marshal(signedMsg{Body: b, Sig: sig})
}

// open decodes a signed message and its body, and verifies the signature
// with the key embedded in issuer (read from the body by issuerOf).
func open(data []byte, domain string, body any, issuerOf func() []byte) (peer.ID, error) {
	var sm signedMsg
	if err := decMode.Unmarshal(data, &sm); err != nil {
		return "", fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if err := decMode.Unmarshal(sm.Body, body); err != nil {
		return "", fmt.Errorf("%w: body: %v", ErrMalformed, err)
	}
	iss, err := peer.IDFromBytes(issuerOf())
	if err != nil {
		return "", fmt.Errorf("%w: issuer: %v", ErrMalformed, err)
	}
	pub, err := iss.ExtractPublicKey()
	if err != nil {
		return "", fmt.Errorf("%w: issuer %s does not embed its public key", ErrMalformed, iss)
	}
	ok, err := pub.Verify(append([]byte(domain), sm.Body...), sm.Sig)
	if err != nil || !ok {
		return "", fmt.Errorf("%w: not signed by %s", ErrBadSignature, iss)
	}
	return iss, nil
}

// Issue signs a token for peer p with role r in network, valid for ttl
// (0: no expiry). key is the issuing admin's identity key.
func Issue(key crypto.PrivKey, network string, r Role, p peer.ID, ttl time.Duration, now time.Time) (Token, error) {
	if r.rank() == 0 {
		return Token{}, fmt.Errorf("auth: unknown role %q", r)
	}
	if err := p.Validate(); err != nil {
		return Token{}, fmt.Errorf("auth: peer: %w", err)
	}
	if ttl < 0 {
		return Token{}, errors.New("auth: negative lifetime")
	}
	iss, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return Token{}, err
	}
	w := wireToken{Network: network, Role: string(r), Peer: []byte(p), Issuer: []byte(iss), Issued: now.Unix()}
	if ttl > 0 {
		w.Expires = now.Add(ttl).Unix()
	}
	raw, err := sign(key, tokenDomain, w)
	if err != nil {
		return Token{}, err
	}
	if len(raw) > MaxTokenSize {
		return Token{}, fmt.Errorf("auth: token of %d bytes exceeds %d (network name too long?)", len(raw), MaxTokenSize)
	}
	return DecodeToken(raw)
}

// DecodeToken parses a token's binary form and checks that it is well
// formed and signed by the issuer it names. Whether that issuer is an
// admin, and the rest, is Verifier.Check's job.
func DecodeToken(data []byte) (Token, error) {
	if len(data) == 0 {
		return Token{}, ErrNoToken
	}
	if len(data) > MaxTokenSize {
		return Token{}, fmt.Errorf("%w: %d bytes exceeds %d", ErrMalformed, len(data), MaxTokenSize)
	}
	var w wireToken
	iss, err := open(data, tokenDomain, &w, func() []byte { return w.Issuer })
	if err != nil {
		return Token{}, err
	}
	r := Role(w.Role)
	if r.rank() == 0 {
		return Token{}, fmt.Errorf("%w: unknown role %q", ErrMalformed, w.Role)
	}
	p, err := peer.IDFromBytes(w.Peer)
	if err != nil {
		return Token{}, fmt.Errorf("%w: peer: %v", ErrMalformed, err)
	}
	if len(w.Network) > 255 || w.Issued < 0 || w.Expires < 0 || (w.Expires != 0 && w.Expires < w.Issued) {
		return Token{}, fmt.Errorf("%w: fields out of range", ErrMalformed)
	}
	t := Token{
		Network: w.Network, Role: r, Peer: p, Issuer: iss,
		Issued: time.Unix(w.Issued, 0).UTC(), raw: bytes.Clone(data),
	}
	if w.Expires != 0 {
		t.Expires = time.Unix(w.Expires, 0).UTC()
	}
	return t, nil
}

// ParseToken parses the text form printed by String.
func ParseToken(s string) (Token, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Token{}, ErrNoToken
	}
	rest, ok := strings.CutPrefix(s, TokenPrefix)
	if !ok {
		return Token{}, fmt.Errorf("%w: does not start with %q", ErrMalformed, TokenPrefix)
	}
	if len(rest) > base64.RawURLEncoding.EncodedLen(MaxTokenSize) {
		return Token{}, fmt.Errorf("%w: too long", ErrMalformed)
	}
	raw, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil {
		return Token{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return DecodeToken(raw)
}

// Bytes returns the signed binary form (nil for the zero Token).
func (t Token) Bytes() []byte { return t.raw }

// String returns the text form: TokenPrefix and base64url of Bytes.
func (t Token) String() string {
	if t.raw == nil {
		return ""
	}
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(t.raw)
}

// ID identifies the token in revocations: SHA-256 of its binary form.
func (t Token) ID() TokenID { return TokenID(sha256.Sum256(t.raw)) }

// IsZero reports whether t is the zero Token.
func (t Token) IsZero() bool { return t.raw == nil }

// TokenID is the SHA-256 of a token's binary form.
type TokenID [32]byte

// String returns the ID in hex.
func (id TokenID) String() string { return hex.EncodeToString(id[:]) }

// Revocation withdraws a token, signed by an admin.
type Revocation struct {
	Network string
	Token   TokenID
	Peer    peer.ID // the peer the token named, for logs and the gater
	Issuer  peer.ID
	Time    time.Time

	raw []byte
}

type wireRevocation struct {
	Network string `cbor:"net"`
	Token   []byte `cbor:"tok"`
	Peer    []byte `cbor:"peer"`
	Issuer  []byte `cbor:"iss"`
	Time    int64  `cbor:"t"`
}

// MaxRevocationSize caps an encoded revocation.
const MaxRevocationSize = 512

// Revoke signs a revocation of t. key is the revoking admin's identity key.
func Revoke(key crypto.PrivKey, t Token, now time.Time) (Revocation, error) {
	if t.IsZero() {
		return Revocation{}, ErrNoToken
	}
	iss, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return Revocation{}, err
	}
	id := t.ID()
	raw, err := sign(key, revocationDomain, wireRevocation{
		Network: t.Network, Token: id[:], Peer: []byte(t.Peer), Issuer: []byte(iss), Time: now.Unix(),
	})
	if err != nil {
		return Revocation{}, err
	}
	return DecodeRevocation(raw)
}

// DecodeRevocation parses a revocation and checks that it is well formed
// and signed by the issuer it names.
func DecodeRevocation(data []byte) (Revocation, error) {
	if len(data) > MaxRevocationSize {
		return Revocation{}, fmt.Errorf("%w: revocation of %d bytes exceeds %d", ErrMalformed, len(data), MaxRevocationSize)
	}
	var w wireRevocation
	iss, err := open(data, revocationDomain, &w, func() []byte { return w.Issuer })
	if err != nil {
		return Revocation{}, err
	}
	if len(w.Token) != len(TokenID{}) {
		return Revocation{}, fmt.Errorf("%w: token ID of %d bytes", ErrMalformed, len(w.Token))
	}
	p, err := peer.IDFromBytes(w.Peer)
	if err != nil {
		return Revocation{}, fmt.Errorf("%w: peer: %v", ErrMalformed, err)
	}
	if len(w.Network) > 255 || w.Time < 0 {
		return Revocation{}, fmt.Errorf("%w: fields out of range", ErrMalformed)
	}
	return Revocation{
		Network: w.Network, Token: TokenID(w.Token), Peer: p, Issuer: iss,
		Time: time.Unix(w.Time, 0).UTC(), raw: bytes.Clone(data),
	}, nil
}

// Bytes returns the signed binary form.
func (r Revocation) Bytes() []byte { return r.raw }
