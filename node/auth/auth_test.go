package auth

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	bolt "go.etcd.io/bbolt"
)

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

func openDB(t testing.TB) *bolt.DB {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "state.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

var now = time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)

func TestTokenRoundTripAndChecks(t *testing.T) {
	adminKey, admin := newKey(t)
	otherKey, _ := newKey(t)
	_, reader := newKey(t)
	_, stranger := newKey(t)
	v, err := NewVerifier(openDB(t), "corp", []peer.ID{admin})
	if err != nil {
		t.Fatal(err)
	}

	tok, err := Issue(adminKey, "corp", RoleReader, reader, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseToken(tok.String())
	if err != nil {
		t.Fatal(err)
	}
	if back.Role != RoleReader || back.Peer != reader || back.Issuer != admin || !back.Expires.Equal(now.Add(time.Hour)) || back.ID() != tok.ID() {
		t.Fatalf("round trip: %+v", back)
	}
	if r, err := v.Check(back, reader, now); err != nil || r != RoleReader {
		t.Fatalf("valid token: %v %v", r, err)
	}
	if r, err := v.Check(Token{}, admin, now); err != nil || r != RoleAdmin {
		t.Fatalf("admin without token: %v %v", r, err)
	}

	forged, err := Issue(otherKey, "corp", RoleAdmin, reader, 0, now)
	if err != nil {
		t.Fatal(err)
	}
	expired, _ := Issue(adminKey, "corp", RoleReader, reader, time.Minute, now.Add(-time.Hour))
	otherNet, _ := Issue(adminKey, "home", RoleReader, reader, 0, now)
	cases := []struct {
		name      string
		tok       Token
		presenter peer.ID
		want      error
	}{
		{"no token", Token{}, reader, ErrNoToken},
		{"another peer's token", tok, stranger, ErrWrongPeer},
		{"issued by a non-admin", forged, reader, ErrUnknownIssuer},
		{"expired", expired, reader, ErrExpired},
		{"other network", otherNet, reader, ErrWrongNetwork},
	}
	for _, c := range cases {
		if _, err := v.Check(c.tok, c.presenter, now); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}

	// A token whose issuer field names the admin but is signed by another key.
	var sm signedMsg
	if err := decMode.Unmarshal(forged.Bytes(), &sm); err != nil {
		t.Fatal(err)
	}
	var w wireToken
	if err := decMode.Unmarshal(sm.Body, &w); err != nil {
		t.Fatal(err)
	}
	w.Issuer = []byte(admin)
	body, _ := encMode.Marshal(w)
	sig, _ := otherKey.Sign(append([]byte(tokenDomain), body...))
	raw, _ := encMode.Marshal(signedMsg{Body: body, Sig: sig})
	if _, _, err := v.CheckBytes(raw, reader, now); !errors.Is(err, ErrBadSignature) {
		t.Errorf("forged signature: %v", err)
	}
	// One flipped bit anywhere is refused.
	for i := range tok.Bytes() {
		b := append([]byte(nil), tok.Bytes()...)
		b[i] ^= 0x10
		if _, _, err := v.CheckBytes(b, reader, now); err == nil {
			t.Fatalf("byte %d flipped: accepted", i)
		}
	}
}

func TestRevocation(t *testing.T) {
	adminKey, admin := newKey(t)
	otherKey, _ := newKey(t)
	_, pub := newKey(t)
	db := openDB(t)
	v, err := NewVerifier(db, "corp", []peer.ID{admin})
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := Issue(adminKey, "corp", RolePublisher, pub, 0, now)
	other, _ := Issue(adminKey, "corp", RolePublisher, pub, 0, now.Add(time.Second))

	fake, _ := Revoke(otherKey, tok, now)
	if _, _, err := v.AddRevocation(fake.Bytes()); !errors.Is(err, ErrUnknownIssuer) {
		t.Fatalf("revocation by a non-admin: %v", err)
	}
	rev, err := Revoke(adminKey, tok, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, isNew, err := v.AddRevocation(rev.Bytes()); err != nil || !isNew {
		t.Fatalf("add: %v %v", isNew, err)
	}
	if _, isNew, _ := v.AddRevocation(rev.Bytes()); isNew {
		t.Fatal("second add reported new")
	}
	if _, err := v.Check(tok, pub, now); !errors.Is(err, ErrRevoked) {
		t.Fatalf("revoked token: %v", err)
	}
	if _, err := v.Check(other, pub, now); err != nil {
		t.Fatalf("another token of the same peer: %v", err)
	}
	// Kept across a restart.
	v2, err := NewVerifier(db, "corp", []peer.ID{admin})
	if err != nil {
		t.Fatal(err)
	}
	if !v2.Revoked(tok.ID()) || len(v2.Revocations()) != 1 {
		t.Fatal("revocation not kept")
	}
}

func TestOpenNetwork(t *testing.T) {
	_, p := newKey(t)
	v, err := NewVerifier(openDB(t), "default", nil)
	if err != nil {
		t.Fatal(err)
	}
	if v.Closed() {
		t.Fatal("closed")
	}
	if r, err := v.Check(Token{}, p, now); err != nil || r != RolePublisher {
		t.Fatalf("%v %v", r, err)
	}
}

func TestRoles(t *testing.T) {
	if !RoleAdmin.Includes(RoleReader) || !RolePublisher.Includes(RoleReader) || RoleReader.Includes(RolePublisher) || Role("x").Includes(RoleReader) {
		t.Fatal("role order")
	}
	if _, err := ParseRole("owner"); err == nil {
		t.Fatal("unknown role parsed")
	}
	if r, err := ParseRole(" Publisher "); err != nil || r != RolePublisher {
		t.Fatal(r, err)
	}
}

func FuzzDecodeToken(f *testing.F) {
	k, _ := newKey(f)
	_, p := newKey(f)
	tok, _ := Issue(k, "corp", RoleReader, p, time.Hour, now)
	f.Add(tok.Bytes())
	f.Add([]byte{})
	f.Add([]byte{0xa2, 0x61, 0x62, 0x40, 0x61, 0x73, 0x40})
	f.Fuzz(func(t *testing.T, data []byte) {
		tk, err := DecodeToken(data)
		if err != nil {
			return
		}
		again, err := ParseToken(tk.String())
		if err != nil || again.ID() != tk.ID() || again.Peer != tk.Peer || again.Role != tk.Role {
			t.Fatalf("text form does not round-trip: %v", err)
		}
	})
}

func FuzzParseToken(f *testing.F) {
	k, _ := newKey(f)
	_, p := newKey(f)
	tok, _ := Issue(k, "corp", RoleAdmin, p, 0, now)
	f.Add(tok.String())
	f.Add(TokenPrefix)
	f.Add("shoaltok1_!!!")
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = ParseToken(s)
	})
}

func FuzzDecodeRevocation(f *testing.F) {
	k, _ := newKey(f)
	_, p := newKey(f)
	tok, _ := Issue(k, "corp", RoleReader, p, 0, now)
	rev, _ := Revoke(k, tok, now)
	f.Add(rev.Bytes())
	f.Add([]byte{0xa0})
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := DecodeRevocation(data)
		if err != nil {
			return
		}
		back, err := DecodeRevocation(r.Bytes())
		if err != nil || back.Token != r.Token || back.Issuer != r.Issuer {
			t.Fatalf("does not round-trip: %v", err)
		}
	})
}
