package access

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/shoalnet/shoal/node/auth"
	"github.com/shoalnet/shoal/node/internal/strictcbor"
)

// Protocol is the exchange of tokens (and revocations) between the two
// ends of a new connection in a closed network.
const Protocol = "/shoal/auth/1.0.0"

const (
	// MaxMsg caps one message of the exchange.
	MaxMsg = 1 << 20
	// MaxRevocations caps the revocations sent in one message.
	MaxRevocations = 1024
	// maxReason caps the reason of a refusal.
	maxReason = 1024
)

// Msg is one message of the exchange: the sender's token, the revocations
// it knows, and (in an answer) why the asker was refused.
type Msg struct {
	Token []byte   `cbor:"tok,omitempty"`
	Revs  [][]byte `cbor:"revs,omitempty"`
	Err   string   `cbor:"err,omitempty"`
}

var decMode = strictcbor.Dec(4, MaxRevocations)

// DecodeMsg parses the body of one message.
func DecodeMsg(data []byte) (Msg, error) {
	var m Msg
	if len(data) > MaxMsg {
		return m, fmt.Errorf("access: message of %d bytes exceeds %d", len(data), MaxMsg)
	}
	if err := decMode.Unmarshal(data, &m); err != nil {
		return Msg{}, fmt.Errorf("access: message: %w", err)
	}
	if len(m.Token) > auth.MaxTokenSize || len(m.Err) > maxReason {
		return Msg{}, errors.New("access: message: field too long")
	}
	for _, r := range m.Revs {
		if len(r) > auth.MaxRevocationSize {
			return Msg{}, errors.New("access: message: revocation too long")
		}
	}
	return m, nil
}

// ReadMsg reads one length-prefixed message. It allocates at most MaxMsg
// bytes, and only as many as the length says.
func ReadMsg(r *bufio.Reader) (Msg, error) {
	l, err := binary.ReadUvarint(r)
	if err != nil {
		return Msg{}, err
	}
	if l > MaxMsg {
		return Msg{}, fmt.Errorf("access: message of %d bytes exceeds %d", l, MaxMsg)
	}
	buf := make([]byte, l)
	if _, err := io.ReadFull(r, buf); err != nil {
		return Msg{}, err
	}
	return DecodeMsg(buf)
}

// WriteMsg writes m with its length prefix in one Write.
func WriteMsg(w io.Writer, m Msg) error {
	data, err := strictcbor.Enc.Marshal(m)
	if err != nil {
		return err
	}
	if len(data) > MaxMsg {
		return fmt.Errorf("access: message of %d bytes exceeds %d", len(data), MaxMsg)
	}
	var lb [binary.MaxVarintLen64]byte
	_, err = w.Write(append(lb[:binary.PutUvarint(lb[:], uint64(len(data)))], data...))
	return err
}
