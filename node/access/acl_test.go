package access

import (
	"slices"
	"testing"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
	bolt "go.etcd.io/bbolt"

	"github.com/shoalnet/shoal/node/auth"
)

func rootOf(t *testing.T, s string) cid.Cid {
	t.Helper()
	h, err := mh.Sum([]byte(s), mh.SHA2_256, -1)
	if err != nil {
		t.Fatal(err)
	}
	return cid.NewCidV1(cid.DagCBOR, h)
}

func TestAllowed(t *testing.T) {
	_, p := newKey(t)
	_, q := newKey(t)
	for _, c := range []struct {
		list []string
		p    string
		role auth.Role
		want bool
	}{
		{[]string{"reader"}, "p", auth.RoleReader, true},
		{[]string{"reader"}, "p", auth.RoleAdmin, true}, // a role admits those above it
		{[]string{"publisher"}, "p", auth.RoleReader, false},
		{[]string{"q"}, "p", auth.RoleAdmin, false},
		{[]string{"q", "p"}, "p", "", true},
		{[]string{}, "p", auth.RoleAdmin, false},
	} {
		list := slices.Clone(c.list)
		for i, a := range list {
			switch a {
			case "p":
				list[i] = p.String()
			case "q":
				list[i] = q.String()
			}
		}
		if got := Allowed(list, p, c.role); got != c.want {
			t.Errorf("Allowed(%v, p, %q) = %v", c.list, c.role, got)
		}
	}
}

// Lists are kept per root: Set replaces, Add and AddSoon add without
// duplicates and up to the cap; AddSoon's list is enforced at once and is
// written by the time Close returns; everything survives a reopen.
func TestACL(t *testing.T) {
	dir := t.TempDir()
	db, err := bolt.Open(dir+"/state.db", 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	acl, err := NewACL(db, 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, b := rootOf(t, "a"), rootOf(t, "b")
	if got := acl.Lists(a); len(got) != 0 {
		t.Fatalf("a root never limited: %v", got)
	}
	if err := acl.Set(a, [][]string{{"reader"}}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := acl.Add(a, []string{"publisher"}); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if err := acl.AddSoon(a, []string{"admin"}); err != nil {
			t.Fatal(err)
		}
	}
	want := [][]string{{"reader"}, {"publisher"}, {"admin"}}
	if got := acl.Lists(a); !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("lists %v, want %v", got, want)
	}
	if err := acl.AddSoon(a, []string{"x"}); err == nil {
		t.Fatal("a fourth list past the cap of three")
	}
	if err := acl.Add(a, []string{"y"}); err == nil {
		t.Fatal("a fourth list past the cap of three")
	}
	if got := acl.Lists(b); len(got) != 0 {
		t.Fatalf("lists leaked to another root: %v", got)
	}
	acl.Close()
	if err := acl.AddSoon(b, []string{"reader"}); err != ErrClosed {
		t.Fatalf("AddSoon after Close: %v", err)
	}
	if got := acl.Stored(a); !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("written by Close: %v", got)
	}
	db.Close()

	db, err = bolt.Open(dir+"/state.db", 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	acl, err = NewACL(db, 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer acl.Close()
	if got := acl.Lists(a); !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("after reopening: %v", got)
	}
	if err := acl.Set(a, nil); err != nil || len(acl.Lists(a)) != 0 {
		t.Fatalf("Set(nil) leaves %v (%v)", acl.Lists(a), err)
	}

	// Lists that cannot be read admit nobody.
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(aclBucket).Put(b.Bytes(), []byte("{not json")) }); err != nil {
		t.Fatal(err)
	}
	_, p := newKey(t)
	got := acl.Lists(b)
	if len(got) != 1 || Allowed(got[0], p, auth.RoleAdmin) {
		t.Fatalf("unreadable lists: %v", got)
	}
}
