package catalog

import (
	"errors"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

func testKey(t testing.TB) (crypto.PrivKey, peer.ID) {
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

func testRoot() cid.Cid {
	c, _ := cid.Decode("bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy")
	return c
}

func TestSignDecode(t *testing.T) {
	key, id := testKey(t)
	e := Entry{Root: testRoot(), Name: "image.qcow2", Size: 5 << 30, Files: 1, Publisher: id,
		Time: time.Unix(1700000000, 123).UTC()}
	data, err := Sign(e, key)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Root.Equals(e.Root) || got.Name != e.Name || got.Size != e.Size || got.Files != e.Files ||
		got.Publisher != e.Publisher || !got.Time.Equal(e.Time) || got.Removed {
		t.Fatalf("round trip: %+v, want %+v", got, e)
	}
}

func TestReplicasRoundTrip(t *testing.T) {
	key, id := testKey(t)
	for _, e := range []Entry{
		{Root: testRoot(), Name: "pinned", Publisher: id, Time: time.Unix(5, 0).UTC(), Replicas: 3, NotHeld: true},
		{Root: testRoot(), Name: "held", Publisher: id, Time: time.Unix(6, 0).UTC(), Replicas: MaxReplicas},
	} {
		data, err := Sign(e, key)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decode(data)
		if err != nil || got.Replicas != e.Replicas || got.NotHeld != e.NotHeld {
			t.Fatalf("round trip: %+v, %v; want %+v", got, err, e)
		}
	}
	for _, n := range []int{-1, MaxReplicas + 1} {
		if _, err := Sign(Entry{Root: testRoot(), Publisher: id, Replicas: n}, key); err == nil {
			t.Fatalf("signed an entry asking %d replicas", n)
		}
	}
	// A peer that signs more than the cap is refused by the decoder.
	w := (&Entry{Root: testRoot(), Publisher: id, Time: time.Unix(7, 0)}).toWire()
	w.Replicas = MaxReplicas + 1
	body, _ := encMode.Marshal(w)
	sig, _ := key.Sign(body)
	data, _ := encMode.Marshal(signed{Body: body, Sig: sig})
	if _, err := Decode(data); !errors.Is(err, ErrInvalid) {
		t.Fatalf("%d replicas decoded: %v", MaxReplicas+1, err)
	}
}

func TestSignRefusesOtherPublisher(t *testing.T) {
	key, _ := testKey(t)
	_, other := testKey(t)
	if _, err := Sign(Entry{Root: testRoot(), Publisher: other}, key); err == nil {
		t.Fatal("signed an announcement for another peer")
	}
}

func TestDecodeRejectsForgery(t *testing.T) {
	key, id := testKey(t)
	data, err := Sign(Entry{Root: testRoot(), Name: "a", Publisher: id, Time: time.Now()}, key)
	if err != nil {
		t.Fatal(err)
	}
	// Flip each byte in turn: every change must be caught (by the
	// decoder or by the signature).
	for i := range data {
		bad := append([]byte(nil), data...)
		bad[i] ^= 0x01
		if _, err := Decode(bad); err == nil {
			t.Fatalf("byte %d flipped: accepted", i)
		} else if !errors.Is(err, ErrInvalid) {
			t.Fatalf("byte %d flipped: %v does not wrap ErrInvalid", i, err)
		}
	}
	for n := 0; n < len(data); n++ {
		if _, err := Decode(data[:n]); err == nil {
			t.Fatalf("truncated to %d bytes: accepted", n)
		}
	}
	if _, err := Decode(append(data, 0)); err == nil {
		t.Fatal("trailing byte accepted")
	}
	if _, err := Decode(make([]byte, MaxEntrySize+1)); !errors.Is(err, ErrInvalid) {
		t.Fatal("oversized entry accepted")
	}
}

func FuzzDecode(f *testing.F) {
	key, id := testKey(f)
	for _, e := range []Entry{
		{Root: testRoot(), Name: "x", Size: 1, Files: 1, Publisher: id, Time: time.Unix(1, 0)},
		{Root: testRoot(), Publisher: id, Removed: true, Time: time.Unix(2, 0)},
		{Root: testRoot(), Name: "pin", Publisher: id, Time: time.Unix(3, 0), Replicas: 3, NotHeld: true},
	} {
		data, err := Sign(e, key)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte{0xa0})
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := Decode(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			return
		}
		if !e.Root.Defined() || e.Publisher == "" || e.Size < 0 || e.Files < 0 {
			t.Fatalf("accepted a bad entry: %+v", e)
		}
	})
}
