package seal

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/ipfs/go-cid"
)

// KeySize is the length of a share key in bytes.
const KeySize = 32

// keyTextLen is the length of a key written as unpadded base64url.
const keyTextLen = 43

// keyEncoding writes keys in links. Strict decoding rejects the encodings
// whose unused trailing bits are not zero, so every key has exactly one
// text form.
var keyEncoding = base64.RawURLEncoding.Strict()

// Key is a share's secret key: 32 random bytes, one per share. Its String
// form is the part of a share link after '#'; print it only where the user
// asked for the link.
type Key [KeySize]byte

// NewKey returns a fresh random key from crypto/rand. The error is always
// nil on supported platforms (crypto/rand does not fail there); it is kept
// so callers need not change if that ever does.
func NewKey() (Key, error) {
	var k Key
	if _, err := rand.Read(k[:]); err != nil {
		return Key{}, fmt.Errorf("seal: generating a key: %w", err)
	}
	return k, nil
}

// String returns the key as 43 characters of unpadded base64url, the form
// used in share links.
func (k Key) String() string { return keyEncoding.EncodeToString(k[:]) }

// MarshalText returns the key in its String form.
func (k Key) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText parses a key in its String form; errors are ParseKey's.
func (k *Key) UnmarshalText(b []byte) error {
	v, err := ParseKey(string(b))
	if err != nil {
		return err
	}
	*k = v
	return nil
}

// ParseKey parses a key written by Key.String: exactly 43 characters of
// unpadded base64url. Surrounding white space is ignored. The error never
// includes the text given, which may be a secret.
func ParseKey(s string) (Key, error) {
	k, err := parseKey(s)
	if err != nil {
		return Key{}, fmt.Errorf("seal: invalid key: %w", err)
	}
	return k, nil
}

// parseKey is ParseKey with errors that do not name what was parsed.
func parseKey(s string) (Key, error) {
	s = strings.TrimSpace(s)
	if len(s) != keyTextLen {
		return Key{}, fmt.Errorf("it has %d characters instead of %d: check that it was copied whole", len(s), keyTextLen)
	}
	var k Key
	n, err := keyEncoding.Decode(k[:], []byte(s))
	if err != nil || n != KeySize {
		return Key{}, errors.New("it is not base64url (letters, digits, '-' and '_'): check that it was copied exactly")
	}
	return k, nil
}

// Link returns the share link of an encrypted share: "<root>#<key>".
func Link(root cid.Cid, k Key) string { return root.String() + "#" + k.String() }

// ParseLink parses a share link, "<root CID>" or "<root CID>#<key>",
// ignoring surrounding white space. key is nil when the link has no '#'.
// It fails if the root is not a CID, or if there is a '#' and what follows
// is not a key; its errors never include the key's text.
func ParseLink(s string) (root cid.Cid, key *Key, err error) {
	s = strings.TrimSpace(s)
	rootText, keyText, hasKey := strings.Cut(s, "#")
	if rootText == "" {
		return cid.Undef, nil, errors.New("seal: the share link has no root CID before '#'")
	}
	root, err = cid.Decode(rootText)
	if err != nil {
		return cid.Undef, nil, fmt.Errorf("seal: the share link's root %q is not a CID: %w", shorten(rootText), err)
	}
	if !hasKey {
		return root, nil, nil
	}
	if keyText == "" {
		return cid.Undef, nil, errors.New("seal: the share link ends with '#' but has no key after it: copy the whole link")
	}
	k, err := parseKey(keyText)
	if err != nil {
		return cid.Undef, nil, fmt.Errorf("seal: the key after '#' in the share link is invalid: %w", err)
	}
	return root, &k, nil
}

// shorten cuts s for an error message.
func shorten(s string) string {
	const limit = 80
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "..."
}
