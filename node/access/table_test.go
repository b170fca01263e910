package access

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/shoalnet/shoal/node/auth"
)

func TestTable(t *testing.T) {
	nw := newNetwork(t)
	v := nw.verifier()
	_, reader := newKey(t)
	_, brief := newKey(t)
	_, revoked := newKey(t)
	_, refused := newKey(t)
	tab := NewTable()

	a, isNew := tab.Track(reader)
	if !isNew || tab.Admitted(reader) {
		t.Fatal("a new peer is admitted before its exchange")
	}
	if again, isNew := tab.Track(reader); isNew || again != a {
		t.Fatal("a tracked peer was tracked anew")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := a.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait on a pending exchange: %v", err)
	}
	if !a.Finish(auth.RoleReader, nw.issue(auth.RoleReader, reader, 0), nil) || a.Finish("", auth.Token{}, errors.New("late")) {
		t.Fatal("only the first Finish counts")
	}
	if r, err := a.Wait(context.Background()); r != auth.RoleReader || err != nil || !tab.Admitted(reader) {
		t.Fatalf("admitted reader: %v %v", r, err)
	}

	b, _ := tab.Track(brief)
	b.Finish(auth.RoleReader, nw.issue(auth.RoleReader, brief, time.Hour), nil)
	revTok := nw.issue(auth.RolePublisher, revoked, 0)
	c, _ := tab.Track(revoked)
	c.Finish(auth.RolePublisher, revTok, nil)
	d, _ := tab.Track(refused)
	d.Finish("", auth.Token{}, auth.ErrNoToken)
	ad, _ := tab.Track(nw.admin)
	ad.Finish(auth.RoleAdmin, auth.Token{}, nil)
	if tab.Admitted(refused) {
		t.Fatal("a refused peer is admitted")
	}

	if got := tab.Lapsed(v, now); len(got) != 0 {
		t.Fatalf("lapsed with nothing revoked or expired: %v", got)
	}
	r, err := auth.Revoke(nw.adminKey, revTok, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := v.AddRevocation(r.Bytes()); err != nil {
		t.Fatal(err)
	}
	got := tab.Lapsed(v, now.Add(time.Hour))
	slices.Sort(got)
	want := []peer.ID{brief, revoked}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("lapsed an hour later: %v, want the expired and the revoked peer %v", got, want)
	}

	tab.Forget(reader)
	if tab.Admitted(reader) {
		t.Fatal("a forgotten peer is still admitted")
	}
	if _, isNew := tab.Track(reader); !isNew {
		t.Fatal("a forgotten peer's next connection does not run the exchange")
	}
}

func TestGater(t *testing.T) {
	_, p := newKey(t)
	_, q := newKey(t)
	clock := now
	g := NewGater()
	g.now = func() time.Time { return clock }
	if !g.InterceptPeerDial(p) || !g.InterceptSecured(0, p, nil) {
		t.Fatal("a peer never refused is refused")
	}
	g.Refuse(p, time.Minute)
	g.Refuse(p, time.Second) // a shorter refusal does not shorten it
	if g.InterceptPeerDial(p) || g.InterceptSecured(0, p, nil) || !g.InterceptPeerDial(q) || g.Count() != 1 {
		t.Fatal("refusal not applied to that peer alone")
	}
	clock = clock.Add(30 * time.Second)
	if !g.Refused(p) {
		t.Fatal("refusal shortened by a shorter one")
	}
	clock = clock.Add(31 * time.Second)
	if g.Refused(p) || g.Count() != 0 {
		t.Fatal("refusal outlived its time")
	}
}
