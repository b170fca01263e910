package catalog

import (
	"bytes"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/shoalnet/shoal/node/internal/strictcbor"
)

// MaxEntrySize caps an encoded announcement.
const MaxEntrySize = 4 << 10

// ErrInvalid is wrapped by every error about a malformed or forged
// announcement.
var ErrInvalid = errors.New("catalog: invalid announcement")

// Entry is one publisher's announcement of one share.
type Entry struct {
	Root      cid.Cid   `json:"root"`
	Name      string    `json:"name"`
	Size      int64     `json:"size"`
	Files     int64     `json:"files"`
	Publisher peer.ID   `json:"publisher"`
	Time      time.Time `json:"time"`
	Removed   bool      `json:"removed,omitempty"`
	// Allow limits the share to these roles and peer IDs (empty: open to
	// every peer of the network).
	Allow []string `json:"allow,omitempty"`
	// Token is the publisher's token in a closed network: the proof that
	// it may publish.
	Token []byte `json:"-"`
	// Replicas is the number of copies the publisher asks the network's
	// storers to keep (0: none asked). The count wanted for a root is the
	// largest among its current entries.
	Replicas int `json:"replicas,omitempty"`
	// NotHeld: the publisher asks for replicas (a pin) but holds no copy
	// itself, so it is not a provider.
	NotHeld bool `json:"not_held,omitempty"`
}

// MaxAllow caps the entries of an announcement's Allow list.
const MaxAllow = 16

// MaxReplicas caps the copies an announcement may ask for.
const MaxReplicas = 64

// signed is the encoding on the wire: the entry's encoding and the
// publisher's signature over exactly those bytes.
type signed struct {
	Body []byte `cbor:"b"`
	Sig  []byte `cbor:"s"`
}

// wireEntry is the encoding of an entry.
type wireEntry struct {
	Root      []byte   `cbor:"root"`
	Name      string   `cbor:"name"`
	Size      uint64   `cbor:"size"`
	Files     uint64   `cbor:"files"`
	Publisher []byte   `cbor:"pub"`
	Time      int64    `cbor:"time"` // Unix nanoseconds
	Removed   bool     `cbor:"rm"`
	Allow     []string `cbor:"allow,omitempty"`
	Token     []byte   `cbor:"tok,omitempty"`
	Replicas  uint64   `cbor:"rep,omitempty"`
	NotHeld   bool     `cbor:"nh,omitempty"`
}

var (
	encMode = strictcbor.Enc
	decMode = strictcbor.Dec(4, 16)
)

func (e *Entry) toWire() wireEntry {
	return wireEntry{
		Root: e.Root.Bytes(), Name: e.Name, Size: uint64(e.Size), Files: uint64(e.Files),
		Publisher: []byte(e.Publisher), Time: e.Time.UnixNano(), Removed: e.Removed,
		Allow: e.Allow, Token: e.Token, Replicas: uint64(max(e.Replicas, 0)), NotHeld: e.NotHeld,
	}
}

// Sign encodes e signed with key, which must be the publisher's.
func Sign(e Entry, key crypto.PrivKey) ([]byte, error) {
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return nil, err
	}
	if e.Publisher != id {
		return nil, fmt.Errorf("catalog: key of %s cannot sign for %s", id, e.Publisher)
	}
	if e.Replicas < 0 || e.Replicas > MaxReplicas {
		return nil, fmt.Errorf("catalog: %d replicas asked; from 0 to %d", e.Replicas, MaxReplicas)
	}
	body, err := encMode.Marshal(e.toWire())
	if err != nil {
		return nil, err
	}
	sig, err := key.Sign(body)
	if err != nil {
		return nil, err
	}
	out, err := encMode.Marshal(signed{Body: body, Sig: sig})
	if err != nil {
		return nil, err
	}
	if len(out) > MaxEntrySize {
		return nil, fmt.Errorf("catalog: announcement of %d bytes exceeds %d (name too long?)", len(out), MaxEntrySize)
	}
	return out, nil
}

// Decode parses a signed announcement and checks its signature against
// the publisher's key (embedded in Ed25519 peer IDs).
func Decode(data []byte) (Entry, error) {
	if len(data) > MaxEntrySize {
		return Entry{}, fmt.Errorf("%w: %d bytes exceeds %d", ErrInvalid, len(data), MaxEntrySize)
	}
	var sg signed
	if err := decMode.Unmarshal(data, &sg); err != nil {
		return Entry{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	var w wireEntry
	if err := decMode.Unmarshal(sg.Body, &w); err != nil {
		return Entry{}, fmt.Errorf("%w: body: %v", ErrInvalid, err)
	}
	_, root, err := cid.CidFromBytes(w.Root)
	if err != nil {
		return Entry{}, fmt.Errorf("%w: root: %v", ErrInvalid, err)
	}
	if !bytes.Equal(root.Bytes(), w.Root) {
		return Entry{}, fmt.Errorf("%w: root has trailing bytes", ErrInvalid)
	}
	pub, err := peer.IDFromBytes(w.Publisher)
	if err != nil {
		return Entry{}, fmt.Errorf("%w: publisher: %v", ErrInvalid, err)
	}
	if !utf8.ValidString(w.Name) || len(w.Name) > 255 {
		return Entry{}, fmt.Errorf("%w: bad name", ErrInvalid)
	}
	if len(w.Allow) > MaxAllow {
		return Entry{}, fmt.Errorf("%w: allow list of %d entries exceeds %d", ErrInvalid, len(w.Allow), MaxAllow)
	}
	for _, a := range w.Allow {
		if a == "" || len(a) > 128 || !utf8.ValidString(a) {
			return Entry{}, fmt.Errorf("%w: bad allow entry", ErrInvalid)
		}
	}
	if len(w.Token) > 1<<10 {
		return Entry{}, fmt.Errorf("%w: token of %d bytes", ErrInvalid, len(w.Token))
	}
	if w.Replicas > MaxReplicas {
		return Entry{}, fmt.Errorf("%w: %d replicas asked, more than %d", ErrInvalid, w.Replicas, MaxReplicas)
	}
	if w.Size > 1<<62 || w.Files > 1<<40 {
		return Entry{}, fmt.Errorf("%w: size or file count out of range", ErrInvalid)
	}
	key, err := pub.ExtractPublicKey()
	if err != nil {
		return Entry{}, fmt.Errorf("%w: publisher key: %v", ErrInvalid, err)
	}
	ok, err := key.Verify(sg.Body, sg.Sig)
	if err != nil || !ok {
		return Entry{}, fmt.Errorf("%w: bad signature from %s", ErrInvalid, pub)
	}
	return Entry{
		Root: root, Name: w.Name, Size: int64(w.Size), Files: int64(w.Files),
		Publisher: pub, Time: time.Unix(0, w.Time).UTC(), Removed: w.Removed,
		Allow: w.Allow, Token: w.Token, Replicas: int(w.Replicas), NotHeld: w.NotHeld,
	}, nil
}
