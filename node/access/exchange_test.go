package access

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	bolt "go.etcd.io/bbolt"
	"go.uber.org/goleak"

	"github.com/shoalnet/shoal/node/auth"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var now = time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)

func newKey(t testing.TB) (crypto.PrivKey, peer.ID) {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return k, id
}

func openDB(t testing.TB, dir string) *bolt.DB {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, "state.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// closedNet is one closed network: its admin, and a verifier per member.
type closedNet struct {
	t        *testing.T
	adminKey crypto.PrivKey
	admin    peer.ID
}

func newNetwork(t *testing.T) *closedNet {
	k, id := newKey(t)
	return &closedNet{t: t, adminKey: k, admin: id}
}

func (nw *closedNet) verifier() *auth.Verifier {
	v, err := auth.NewVerifier(openDB(nw.t, nw.t.TempDir()), "corp", []peer.ID{nw.admin})
	if err != nil {
		nw.t.Fatal(err)
	}
	return v
}

func (nw *closedNet) issue(r auth.Role, p peer.ID, ttl time.Duration) auth.Token {
	return nw.issueAt(r, p, ttl, now)
}

func (nw *closedNet) issueAt(r auth.Role, p peer.ID, ttl time.Duration, at time.Time) auth.Token {
	tok, err := auth.Issue(nw.adminKey, "corp", r, p, ttl, at)
	if err != nil {
		nw.t.Fatal(err)
	}
	return tok
}

type result struct {
	out Outcome
	err error
}

// exchange runs Ask from asker and Answer from answerer and returns both
// results. The answerer's writes are buffered, as a libp2p stream's are,
// and the answerer's caller resets the stream as soon as Answer returns
// with an error (dropping what the asker has not read), as node does: a
// refusal reaches the asker only if Answer waits for it to be read.
func exchange(t *testing.T, asker Side, askerID peer.ID, answerer Side, answererID peer.ID) (ask, ans result) {
	t.Helper()
	a, b := net.Pipe()
	c := &streamEnd{Conn: b, gate: make(chan struct{})}
	answered := make(chan result, 1)
	go func() {
		out, err := answerer.Answer(c, askerID, now)
		if err != nil {
			c.reset()
		}
		c.open()
		b.Close()
		answered <- result{out, err}
	}()
	out, err := asker.Ask(askerEnd{a, c}, answererID, now)
	a.Close()
	return result{out, err}, <-answered
}

// streamEnd is the answerer's end: its writes are buffered (Write never
// waits for the reader) and read by the asker through askerEnd once the
// answerer has either returned or started reading again after writing.
type streamEnd struct {
	net.Conn
	mu       sync.Mutex
	buf      bytes.Buffer
	wrote    bool
	isReset  bool
	gate     chan struct{}
	gateOnce sync.Once
}

func (s *streamEnd) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.wrote = true
	return s.buf.Write(p)
}

func (s *streamEnd) Read(p []byte) (int, error) {
	s.mu.Lock()
	wrote := s.wrote
	s.mu.Unlock()
	if wrote {
		s.open() // waiting for the asker after answering
	}
	return s.Conn.Read(p)
}

func (s *streamEnd) open() { s.gateOnce.Do(func() { close(s.gate) }) }

func (s *streamEnd) reset() {
	s.mu.Lock()
	s.isReset = true
	s.buf.Reset()
	s.mu.Unlock()
}

// askerEnd writes to the pipe and reads what the answerer buffered.
type askerEnd struct {
	net.Conn
	from *streamEnd
}

func (a askerEnd) Read(p []byte) (int, error) {
	<-a.from.gate
	a.from.mu.Lock()
	defer a.from.mu.Unlock()
	if a.from.isReset {
		return 0, errors.New("stream reset")
	}
	if a.from.buf.Len() == 0 {
		return 0, io.EOF
	}
	return a.from.buf.Read(p)
}

func side(v *auth.Verifier, tok auth.Token) Side {
	return Side{Verifier: v, Present: func() Msg { return Message(tok.Bytes(), v) }}
}

func TestExchangeAdmits(t *testing.T) {
	nw := newNetwork(t)
	_, reader := newKey(t)
	_, pub := newKey(t)
	ask, ans := exchange(t,
		side(nw.verifier(), nw.issue(auth.RoleReader, reader, time.Hour)), reader,
		side(nw.verifier(), nw.issue(auth.RolePublisher, pub, 0)), pub)
	if ask.err != nil || ask.out.Role != auth.RolePublisher || ask.out.Token.Peer != pub {
		t.Fatalf("asker learned %+v, %v", ask.out, ask.err)
	}
	if ans.err != nil || ans.out.Role != auth.RoleReader || ans.out.Token.Peer != reader {
		t.Fatalf("answerer learned %+v, %v", ans.out, ans.err)
	}

	// An admin of the network needs no token, on either side.
	ask, ans = exchange(t, side(nw.verifier(), auth.Token{}), nw.admin,
		side(nw.verifier(), nw.issue(auth.RoleReader, reader, 0)), reader)
	if ask.err != nil || ans.err != nil || ans.out.Role != auth.RoleAdmin || ask.out.Role != auth.RoleReader {
		t.Fatalf("admin: %+v %v / %+v %v", ask.out, ask.err, ans.out, ans.err)
	}
}

// A refused asker learns why (the answerer's reason, wrapped in
// ErrRefused); the answerer returns the auth error and waits until the
// asker has read the reason.
func TestExchangeRefuses(t *testing.T) {
	nw := newNetwork(t)
	_, asker := newKey(t)
	_, other := newKey(t)
	_, pub := newKey(t)
	otherNet := newNetwork(t)
	cases := []struct {
		name string
		tok  auth.Token
		want error
	}{
		{"no token", auth.Token{}, auth.ErrNoToken},
		{"another peer's token", nw.issue(auth.RoleReader, other, 0), auth.ErrWrongPeer},
		{"expired", nw.issueAt(auth.RoleReader, asker, time.Hour, now.Add(-2*time.Hour)), auth.ErrExpired},
		{"another admin's token", otherNet.issue(auth.RoleReader, asker, 0), auth.ErrUnknownIssuer},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ask, ans := exchange(t, side(nw.verifier(), c.tok), asker,
				side(nw.verifier(), nw.issue(auth.RolePublisher, pub, 0)), pub)
			if !errors.Is(ans.err, c.want) || ans.out.Role != "" {
				t.Fatalf("answerer: %+v %v, want %v", ans.out, ans.err, c.want)
			}
			if !errors.Is(ask.err, ErrRefused) || !strings.Contains(ask.err.Error(), ans.err.Error()) {
				t.Fatalf("asker: %v, want the reason %q", ask.err, ans.err)
			}
			if ask.out.Role != "" || !ask.out.Token.IsZero() {
				t.Fatalf("a refused asker learned the answerer's token: %+v", ask.out)
			}
		})
	}

	// An answer whose token does not check out fails the asker with the
	// auth error, not a refusal.
	ask, ans := exchange(t, side(nw.verifier(), nw.issue(auth.RoleReader, asker, 0)), asker,
		side(nw.verifier(), nw.issue(auth.RolePublisher, other, 0)), pub)
	if !errors.Is(ask.err, auth.ErrWrongPeer) || errors.Is(ask.err, ErrRefused) || ans.err != nil {
		t.Fatalf("answer with another peer's token: asker %v, answerer %v", ask.err, ans.err)
	}
}

// Revocations travel both ways: each side takes the valid ones new to it
// (and reports them once), and a revoked token is refused.
func TestExchangeSpreadsRevocations(t *testing.T) {
	nw := newNetwork(t)
	_, asker := newKey(t)
	_, pub := newKey(t)
	_, gone := newKey(t)
	goneTok := nw.issue(auth.RoleReader, gone, 0)
	rev, err := auth.Revoke(nw.adminKey, goneTok, now)
	if err != nil {
		t.Fatal(err)
	}
	va, vb := nw.verifier(), nw.verifier()
	if _, _, err := vb.AddRevocation(rev.Bytes()); err != nil {
		t.Fatal(err)
	}
	// A forged revocation (not signed by an admin) is dropped.
	strangerKey, _ := newKey(t)
	forged, err := auth.Revoke(strangerKey, nw.issue(auth.RoleReader, asker, 0), now)
	if err != nil {
		t.Fatal(err)
	}
	askerSide := side(va, nw.issue(auth.RoleReader, asker, 0))
	answerer := Side{Verifier: vb, Present: func() Msg {
		m := Message(nw.issue(auth.RolePublisher, pub, 0).Bytes(), vb)
		m.Revs = append(m.Revs, forged.Bytes())
		return m
	}}
	ask, ans := exchange(t, askerSide, asker, answerer, pub)
	if ask.err != nil || ans.err != nil {
		t.Fatal(ask.err, ans.err)
	}
	if len(ask.out.Revoked) != 1 || ask.out.Revoked[0].Token != goneTok.ID() || !va.Revoked(goneTok.ID()) {
		t.Fatalf("asker took %+v", ask.out.Revoked)
	}
	if len(va.Revocations()) != 1 {
		t.Fatalf("the forged revocation was kept: %d revocations", len(va.Revocations()))
	}
	ask, _ = exchange(t, askerSide, asker, answerer, pub)
	if ask.err != nil || len(ask.out.Revoked) != 0 {
		t.Fatalf("a known revocation reported again: %+v %v", ask.out.Revoked, ask.err)
	}
	// The revoked peer is refused by either side.
	_, ans = exchange(t, side(nw.verifier(), goneTok), gone, side(va, nw.issue(auth.RolePublisher, pub, 0)), pub)
	if !errors.Is(ans.err, auth.ErrRevoked) {
		t.Fatalf("revoked token: %v", ans.err)
	}
}

// Bad bytes from the asker end the exchange with an error: no panic, no
// allocation of what a length claims, no wait past the deadline.
func TestAnswerBadInput(t *testing.T) {
	nw := newNetwork(t)
	_, pub := newKey(t)
	_, asker := newKey(t)
	answerer := side(nw.verifier(), nw.issue(auth.RolePublisher, pub, 0))
	huge := binary.AppendUvarint(nil, 1<<40)
	for name, in := range map[string][]byte{
		"not CBOR":        append(binary.AppendUvarint(nil, 3), 0xff, 0xff, 0xff),
		"length past max": huge,
		"cut short":       append(binary.AppendUvarint(nil, 10), 0xa0),
		"unknown field":   append(binary.AppendUvarint(nil, 5), 0xa1, 0x63, 'x', 'y', 'z'),
		"empty":           nil,
	} {
		t.Run(name, func(t *testing.T) {
			a, b := net.Pipe()
			done := make(chan error, 1)
			go func() {
				_, err := answerer.Answer(b, asker, now)
				b.Close()
				done <- err
			}()
			a.Write(in)
			a.Close()
			if err := <-done; err == nil {
				t.Fatal("accepted")
			}
		})
	}
	// An asker that says nothing is given up at the deadline.
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	b.SetDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := answerer.Answer(b, asker, now); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("silent asker: %v", err)
	}
}

func TestMessageLimits(t *testing.T) {
	nw := newNetwork(t)
	v := nw.verifier()
	for i := range MaxRevocations + 5 {
		_, p := newKey(t)
		r, err := auth.Revoke(nw.adminKey, nw.issue(auth.RoleReader, p, 0), now.Add(time.Duration(i)*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := v.AddRevocation(r.Bytes()); err != nil {
			t.Fatal(err)
		}
	}
	m := Message(nil, v)
	all := v.Revocations()
	if len(m.Revs) != MaxRevocations || !bytes.Equal(m.Revs[len(m.Revs)-1], all[len(all)-1].Bytes()) {
		t.Fatalf("message carries %d revocations; want the newest %d", len(m.Revs), MaxRevocations)
	}
	var buf bytes.Buffer
	if err := WriteMsg(&buf, m); err != nil {
		t.Fatal(err)
	}
	back, err := ReadMsg(bufio.NewReader(&buf))
	if err != nil || len(back.Revs) != MaxRevocations {
		t.Fatalf("round trip: %d, %v", len(back.Revs), err)
	}
	if _, err := DecodeMsg(append([]byte{0xa1, 0x63, 'e', 'r', 'r', 0x79, 0x08, 0x00}, bytes.Repeat([]byte{'x'}, 2048)...)); err == nil {
		t.Fatal("a 2 KiB reason was accepted")
	}
}
