package node

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/libp2p/go-libp2p/core/crypto"
)

// IdentityFile is the name of the identity key in the home directory.
const IdentityFile = "identity.key"

// LoadOrCreateIdentity returns the node's Ed25519 key from home, creating
// it (mode 0600) if there is none. created reports whether it was made
// now.
func LoadOrCreateIdentity(home string) (key crypto.PrivKey, created bool, err error) {
	p := filepath.Join(home, IdentityFile)
	data, err := os.ReadFile(p)
	if err == nil {
		key, err := crypto.UnmarshalPrivateKey(data)
		if err != nil {
			return nil, false, fmt.Errorf("node: identity %s is corrupt: %w", p, err)
		}
		return key, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, fmt.Errorf("node: read identity: %w", err)
	}
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, false, fmt.Errorf("node: create home %s: %w", home, err)
	}
	key, _, err = crypto.GenerateEd25519Key(nil)
	if err != nil {
		return nil, false, err
	}
	data, err = crypto.MarshalPrivateKey(key)
	if err != nil {
		return nil, false, err
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return nil, false, fmt.Errorf("node: write identity (is %s writable?): %w", home, err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return nil, false, fmt.Errorf("node: write identity: %w", err)
	}
	return key, true, nil
}
