package access

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/shoalnet/shoal/node/auth"
)

// ErrRefused: the other side refused this one (no token, an invalid one,
// or one it does not accept). The error says why, as the other side put
// it.
var ErrRefused = errors.New("refused by peer")

// Side is one end of the exchange.
type Side struct {
	// Verifier checks the other side's token and keeps the revocations.
	Verifier *auth.Verifier
	// Present returns what this side presents: its token and the newest
	// revocations it knows (at most MaxRevocations).
	Present func() Msg
}

// Outcome is what an exchange established about the other side.
type Outcome struct {
	// Role is the other side's role; empty unless it was admitted.
	Role auth.Role
	// Token is the other side's token, when it parsed (also when it was
	// refused: it names what to cut off).
	Token auth.Token
	// Revoked lists the revocations the other side sent that were new
	// here; the caller cuts off the peers they name.
	Revoked []auth.Revocation
}

// Ask runs the exchange as the dialling side over rw with the peer remote:
// it presents this side, reads the answer, and checks remote's token at
// now. An answer that refuses this side gives an error wrapping
// ErrRefused; a token that does not check out, the auth error.
func (s Side) Ask(rw io.ReadWriter, remote peer.ID, now time.Time) (Outcome, error) {
	var out Outcome
	if err := WriteMsg(rw, s.Present()); err != nil {
		return out, fmt.Errorf("token exchange: %w", err)
	}
	ans, err := ReadMsg(bufio.NewReader(rw))
	if err != nil {
		return out, fmt.Errorf("token exchange: %w", err)
	}
	out.Revoked = s.take(ans.Revs)
	if ans.Err != "" {
		return out, fmt.Errorf("%w: %s", ErrRefused, ans.Err)
	}
	t, role, err := s.Verifier.CheckBytes(ans.Token, remote, now)
	out.Token = t
	if err != nil {
		return out, err
	}
	out.Role = role
	return out, nil
}

// Answer runs the exchange as the dialled side over rw: it reads the
// question, checks remote's token at now, and answers with this side's
// message, or with the reason when it refuses. After a refusal it
// half-closes rw (if rw has CloseWrite) and waits until the asker closes
// its side or rw's deadline passes, so the reason reaches the asker before
// the caller cuts the connection; it returns the reason as the error.
func (s Side) Answer(rw io.ReadWriter, remote peer.ID, now time.Time) (Outcome, error) {
	var out Outcome
	r := bufio.NewReader(rw)
	q, err := ReadMsg(r)
	if err != nil {
		return out, fmt.Errorf("token exchange: %w", err)
	}
	out.Revoked = s.take(q.Revs)
	t, role, cerr := s.Verifier.CheckBytes(q.Token, remote, now)
	out.Token = t
	ans := Msg{Err: ""}
	if cerr != nil {
		ans.Err = cerr.Error()
		if len(ans.Err) > maxReason {
			ans.Err = ans.Err[:maxReason]
		}
	} else {
		ans = s.Present()
	}
	if err := WriteMsg(rw, ans); err != nil {
		if cerr != nil {
			return out, cerr
		}
		return out, fmt.Errorf("token exchange: %w", err)
	}
	if cerr != nil {
		if cw, ok := rw.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
		io.Copy(io.Discard, io.LimitReader(r, 1))
		return out, cerr
	}
	out.Role = role
	return out, nil
}

// take keeps the valid revocations among revs and returns those new here.
func (s Side) take(revs [][]byte) []auth.Revocation {
	var out []auth.Revocation
	for _, data := range revs {
		r, isNew, err := s.Verifier.AddRevocation(data)
		if err == nil && isNew {
			out = append(out, r)
		}
	}
	return out
}

// Message is what a side with this token presents: the token and the
// newest MaxRevocations revocations v knows.
func Message(token []byte, v *auth.Verifier) Msg {
	m := Msg{Token: token}
	revs := v.Revocations()
	if len(revs) > MaxRevocations {
		revs = revs[len(revs)-MaxRevocations:]
	}
	for _, r := range revs {
		m.Revs = append(m.Revs, r.Bytes())
	}
	return m
}
