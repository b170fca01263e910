package membership

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/shoalnet/shoal/node/internal/strictcbor"
)

// Limits on what a peer may send.
const (
	maxUpdateSize  = 8 << 10
	maxDigestSize  = 8 << 20
	maxProbeSize   = 256
	maxMembers     = 20_000
	maxMetaList    = 32
	maxMetaString  = 256
	maxFramePrefix = binary.MaxVarintLen32
)

// ErrInvalid is wrapped by every decoding error.
var ErrInvalid = errors.New("membership: invalid message")

// Kind is a member state carried by an update.
type Kind uint8

// Kinds of update.
const (
	KindAlive   Kind = 1
	KindSuspect Kind = 2
	KindDead    Kind = 3
	KindLeft    Kind = 4
)

// update is a statement about one member: on the members topic, and as the
// entries of a digest.
type update struct {
	Kind Kind   `cbor:"k"`
	ID   []byte `cbor:"id"`
	Inc  uint64 `cbor:"inc"`
	Meta *Meta  `cbor:"meta,omitempty"`
}

// digest is a full view, exchanged by anti-entropy.
type digest struct {
	Members []update `cbor:"m"`
}

// Probe message types.
const (
	probePing    = 1 // Seq
	probeAck     = 2 // Seq
	probePingReq = 3 // Seq, Target
	probeNack    = 4 // Seq: the intermediary could not reach Target
)

type probe struct {
	Type   uint8  `cbor:"t"`
	Seq    uint64 `cbor:"s"`
	Target []byte `cbor:"tg,omitempty"`
}

var (
	encMode = strictcbor.Enc
	decMode = strictcbor.Dec(6, maxMembers)
)

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// check validates an update and returns its member's ID.
func (u *update) check() (peer.ID, error) {
	if u.Kind < KindAlive || u.Kind > KindLeft {
		return "", invalid("kind %d", u.Kind)
	}
	id, err := peer.IDFromBytes(u.ID)
	if err != nil {
		return "", invalid("member id: %v", err)
	}
	if u.Meta != nil {
		if err := u.Meta.check(); err != nil {
			return "", err
		}
	}
	return id, nil
}

// maxMetaToken caps the token in a member's metadata.
const maxMetaToken = 1 << 10

func (m *Meta) check() error {
	if len(m.Roles) > maxMetaList || len(m.Addrs) > maxMetaList {
		return invalid("metadata lists over %d entries", maxMetaList)
	}
	for _, s := range append(append([]string{m.Name, m.Network, m.Version}, m.Roles...), m.Addrs...) {
		if len(s) > maxMetaString || !utf8.ValidString(s) {
			return invalid("metadata string too long or not UTF-8")
		}
	}
	if m.Shares < 0 {
		return invalid("negative share count")
	}
	if len(m.Token) > maxMetaToken {
		return invalid("token of %d bytes", len(m.Token))
	}
	return nil
}

func decodeUpdate(data []byte) (update, peer.ID, error) {
	var u update
	if len(data) > maxUpdateSize {
		return u, "", invalid("update of %d bytes", len(data))
	}
	if err := decMode.Unmarshal(data, &u); err != nil {
		return u, "", invalid("%v", err)
	}
	id, err := u.check()
	return u, id, err
}

func decodeDigest(data []byte) (digest, error) {
	var d digest
	if len(data) > maxDigestSize {
		return d, invalid("digest of %d bytes", len(data))
	}
	if err := decMode.Unmarshal(data, &d); err != nil {
		return d, invalid("%v", err)
	}
	for i := range d.Members {
		if _, err := d.Members[i].check(); err != nil {
			return d, err
		}
	}
	return d, nil
}

func decodeProbe(data []byte) (probe, error) {
	var p probe
	if len(data) > maxProbeSize {
		return p, invalid("probe of %d bytes", len(data))
	}
	if err := decMode.Unmarshal(data, &p); err != nil {
		return p, invalid("%v", err)
	}
	if p.Type < probePing || p.Type > probeNack {
		return p, invalid("probe type %d", p.Type)
	}
	if p.Type == probePingReq {
		if _, err := peer.IDFromBytes(p.Target); err != nil {
			return p, invalid("probe target: %v", err)
		}
	}
	return p, nil
}

// writeFrame writes a length-prefixed CBOR encoding of v.
func writeFrame(w io.Writer, v any) error {
	data, err := encMode.Marshal(v)
	if err != nil {
		return err
	}
	var pre [maxFramePrefix]byte
	n := binary.PutUvarint(pre[:], uint64(len(data)))
	if _, err := w.Write(append(pre[:n:n], data...)); err != nil {
		return err
	}
	return nil
}

// readFrame reads one length-prefixed frame of at most max bytes.
func readFrame(r *bufio.Reader, max int) ([]byte, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, err
	}
	if n > uint64(max) {
		return nil, invalid("frame of %d bytes (limit %d)", n, max)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, err
	}
	return buf, nil
}
