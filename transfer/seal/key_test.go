package seal

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
)

// testRoot returns a dag-cbor CIDv1 for link tests.
func testRoot(t testing.TB) cid.Cid {
	t.Helper()
	h, err := mh.Sum([]byte("root"), mh.SHA2_256, -1)
	if err != nil {
		t.Fatal(err)
	}
	return cid.NewCidV1(cid.DagCBOR, h)
}

func TestKeyText(t *testing.T) {
	k, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	if k == (Key{}) {
		t.Fatal("NewKey returned the zero key")
	}
	k2, _ := NewKey()
	if k == k2 {
		t.Fatal("two NewKey calls returned the same key")
	}
	s := k.String()
	if len(s) != 43 || strings.ContainsAny(s, "+/=") {
		t.Fatalf("String() = %q: want 43 characters of unpadded base64url", s)
	}
	for _, in := range []string{s, " " + s + "\n", "\t" + s} {
		got, err := ParseKey(in)
		if err != nil || got != k {
			t.Fatalf("ParseKey(%q) = %v, %v; want the key back", in, got, err)
		}
	}
	if got := testKey(0xff).String(); got != strings.Repeat("_", 42)+"8" {
		t.Fatalf("String of all-ones key = %q", got)
	}

	b, err := json.Marshal(struct{ K Key }{k})
	if err != nil {
		t.Fatal(err)
	}
	var back struct{ K Key }
	if err := json.Unmarshal(b, &back); err != nil || back.K != k {
		t.Fatalf("JSON round trip: %v, %v", back.K, err)
	}
	if err := json.Unmarshal([]byte(`{"K":"short"}`), &back); err == nil {
		t.Fatal("JSON with a short key decoded")
	}
}

func TestParseKeyBad(t *testing.T) {
	good := testKey(7).String()
	bad := []string{
		"",
		good[:42],
		good + "A",
		good + "=",
		strings.Repeat("A", 42) + "B", // non-zero trailing bits: not canonical
		strings.Repeat("+", 43),       // standard alphabet
		strings.Repeat("/", 43),
		good[:20] + " " + good[21:],
		strings.Repeat("é", 21) + "A",
		strings.Repeat("A", 44)[:43] + "=",
	}
	for _, s := range bad {
		_, err := ParseKey(s)
		if err == nil {
			t.Errorf("ParseKey(%q) succeeded", s)
			continue
		}
		if len(strings.TrimSpace(s)) >= 8 && strings.Contains(err.Error(), strings.TrimSpace(s)) {
			t.Errorf("ParseKey error echoes the key: %v", err)
		}
	}
}

func TestLink(t *testing.T) {
	root := testRoot(t)
	k := testKey(42)
	link := Link(root, k)
	if want := root.String() + "#" + k.String(); link != want {
		t.Fatalf("Link = %q, want %q", link, want)
	}
	for _, in := range []string{link, "  " + link + "\n"} {
		r, key, err := ParseLink(in)
		if err != nil || !r.Equals(root) || key == nil || *key != k {
			t.Fatalf("ParseLink(%q) = %v, %v, %v", in, r, key, err)
		}
	}
	r, key, err := ParseLink(root.String())
	if err != nil || !r.Equals(root) || key != nil {
		t.Fatalf("ParseLink without key = %v, %v, %v", r, key, err)
	}
}

func TestParseLinkBad(t *testing.T) {
	root := testRoot(t).String()
	secret := testKey(9).String()
	cases := []struct{ in, want string }{
		{"", "no root CID"},
		{"#" + secret, "no root CID"},
		{"notacid#" + secret, "not a CID"},
		{root + "#", "no key"},
		{root + "#" + secret[:40], "43"},
		{root + "#" + secret + "x", "43"},
		{root + "#" + secret[:42] + "!", "base64url"},
		{root + "#" + secret + "#" + secret, "43"},
		{root + " #" + secret, "not a CID"},
	}
	for _, c := range cases {
		_, key, err := ParseLink(c.in)
		if err == nil {
			t.Errorf("ParseLink(%q) succeeded", c.in)
			continue
		}
		if key != nil {
			t.Errorf("ParseLink(%q) returned a key with its error", c.in)
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseLink(%q) error %q does not say %q", c.in, err, c.want)
		}
		if strings.Contains(err.Error(), secret[:20]) {
			t.Errorf("ParseLink(%q) error echoes the key: %v", c.in, err)
		}
	}
}
