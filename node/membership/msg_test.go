package membership

import (
	"bufio"
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

func testID(t testing.TB) peer.ID {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func mustEncode(t testing.TB, v any) []byte {
	t.Helper()
	data, err := encMode.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestUpdateRoundTrip(t *testing.T) {
	id := testID(t)
	u := update{Kind: KindAlive, ID: []byte(id), Inc: 7, Meta: &Meta{Name: "a", Roles: []string{"reader"}, Addrs: []string{"/ip4/127.0.0.1/tcp/1"}, Shares: 3,
		Storer: true, StoreFull: true, StoreUsed: 5 << 30, StoreQuota: 8 << 30}}
	got, gid, err := decodeUpdate(mustEncode(t, u))
	if err != nil || gid != id || got.Inc != 7 || got.Meta == nil || !reflect.DeepEqual(*got.Meta, *u.Meta) {
		t.Fatalf("round trip: %+v %v %v", got, gid, err)
	}
}

func TestDecodeRejects(t *testing.T) {
	id := testID(t)
	long := strings.Repeat("x", maxMetaString+1)
	many := make([]string, maxMetaList+1)
	for name, data := range map[string][]byte{
		"kind zero":      mustEncode(t, update{Kind: 0, ID: []byte(id)}),
		"kind too big":   mustEncode(t, update{Kind: 9, ID: []byte(id)}),
		"bad id":         mustEncode(t, update{Kind: KindDead, ID: []byte("nope")}),
		"long name":      mustEncode(t, update{Kind: KindAlive, ID: []byte(id), Meta: &Meta{Name: long}}),
		"many addrs":     mustEncode(t, update{Kind: KindAlive, ID: []byte(id), Meta: &Meta{Addrs: many}}),
		"negative count": mustEncode(t, update{Kind: KindAlive, ID: []byte(id), Meta: &Meta{Shares: -1}}),
		"unknown field":  mustEncode(t, map[string]any{"k": 1, "id": []byte(id), "inc": 1, "zz": 1}),
		"not cbor":       {0xff, 0x00},
		"trailing":       append(mustEncode(t, update{Kind: KindDead, ID: []byte(id)}), 0),
		"oversized":      make([]byte, maxUpdateSize+1),
	} {
		if _, _, err := decodeUpdate(data); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if _, err := decodeProbe(mustEncode(t, probe{Type: probePingReq, Seq: 1, Target: []byte("x")})); !errors.Is(err, ErrInvalid) {
		t.Errorf("ping-req with a bad target: %v", err)
	}
	if _, err := decodeProbe(mustEncode(t, probe{Type: 77})); !errors.Is(err, ErrInvalid) {
		t.Errorf("unknown probe type: %v", err)
	}
	// A frame longer than the limit is refused before it is read.
	var buf bytes.Buffer
	writeFrame(&buf, digest{})
	big := append([]byte{0xff, 0xff, 0xff, 0x7f}, buf.Bytes()...)
	if _, err := readFrame(bufio.NewReader(bytes.NewReader(big)), maxProbeSize); !errors.Is(err, ErrInvalid) {
		t.Errorf("oversized frame: %v", err)
	}
}

func FuzzDecodeUpdate(f *testing.F) {
	id := testID(f)
	f.Add(mustEncode(f, update{Kind: KindAlive, ID: []byte(id), Inc: 1, Meta: &Meta{Name: "n", Addrs: []string{"/ip4/1.2.3.4/tcp/5"}}}))
	f.Add(mustEncode(f, update{Kind: KindSuspect, ID: []byte(id), Inc: 9}))
	f.Fuzz(func(t *testing.T, data []byte) {
		u, gid, err := decodeUpdate(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			return
		}
		if gid == "" || u.Kind < KindAlive || u.Kind > KindLeft {
			t.Fatalf("accepted a bad update: %+v", u)
		}
	})
}

func FuzzDecodeDigest(f *testing.F) {
	id := testID(f)
	f.Add(mustEncode(f, digest{Members: []update{{Kind: KindAlive, ID: []byte(id), Inc: 1, Meta: &Meta{Name: "x"}}, {Kind: KindDead, ID: []byte(id), Inc: 2}}}))
	f.Add(mustEncode(f, digest{}))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := decodeDigest(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			return
		}
		for _, u := range d.Members {
			if _, err := u.check(); err != nil {
				t.Fatalf("accepted a bad entry: %v", err)
			}
		}
	})
}

func FuzzDecodeProbe(f *testing.F) {
	id := testID(f)
	f.Add(mustEncode(f, probe{Type: probePing, Seq: 1}))
	f.Add(mustEncode(f, probe{Type: probePingReq, Seq: 2, Target: []byte(id)}))
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := decodeProbe(data); err != nil && !errors.Is(err, ErrInvalid) {
			t.Fatalf("error does not wrap ErrInvalid: %v", err)
		}
	})
}
