package node

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"
	ma "github.com/multiformats/go-multiaddr"
)

// SwarmKeyFile is the name of a private network's pre-shared key in the
// home directory. A node whose home holds one connects only to peers with
// the same key (libp2p pnet); copy the file to every member's home.
const SwarmKeyFile = "swarm.key"

// NewSwarmKey writes a new random pre-shared key to home/swarm.key (mode
// 0600) in the format IPFS private networks use. It refuses to replace an
// existing key.
func NewSwarmKey(home string) error {
	p := filepath.Join(home, SwarmKeyFile)
	if _, err := os.Stat(p); err == nil {
		return fmt.Errorf("node: %s exists; remove it first to make a new private network", p)
	}
	var key [32]byte
	if _, err := rand.Read(key[:]); err != nil {
		return err
	}
	data := "/key/swarm/psk/1.0.0/\n/base16/\n" + hex.EncodeToString(key[:]) + "\n"
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		return fmt.Errorf("node: write swarm key: %w", err)
	}
	return nil
}

// loadSwarmKey reads home/swarm.key; nil when there is none.
func loadSwarmKey(home string) (pnet.PSK, error) {
	p := filepath.Join(home, SwarmKeyFile)
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("node: read swarm key: %w", err)
	}
	psk, err := pnet.DecodeV1PSK(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("node: swarm key %s is malformed: %w", p, err)
	}
	return psk, nil
}

// tcpOnly drops the QUIC listen addresses: QUIC cannot carry a pre-shared
// key.
func tcpOnly(addrs []string) (kept []string, dropped bool) {
	for _, a := range addrs {
		if strings.Contains(a, "/quic") || strings.Contains(a, "/webtransport") || strings.Contains(a, "/webrtc") {
			dropped = true
			continue
		}
		kept = append(kept, a)
	}
	return kept, dropped
}

// explainHandshake adds to a dial error that failed the security
// handshake, or ran out of time, what that may mean: the two sides are
// not in the same private network (a pre-shared key scrambles everything
// before the handshake, so the side without the key learns nothing but a
// timeout).
func explainHandshake(err error, keyed, timeouts bool) error {
	if err == nil {
		return err
	}
	// With timeouts, also a dial that ran out of time first, with the
	// same cause or another (a Connect; not a fetch whose caller's
	// deadline passed).
	msg := err.Error()
	if !strings.Contains(msg, "failed to negotiate security protocol") &&
		!(timeouts && strings.Contains(msg, "context deadline exceeded")) {
		return err
	}
	if !keyed {
		return fmt.Errorf("%w\n(if the peer is in a private network, this node needs the network's swarm key: "+
			"copy %s from a member's home into this node's home)", err, SwarmKeyFile)
	}
	return fmt.Errorf("%w\n(this node is in a private network: the peer must be too, with the same swarm key, %s in its home)", err, SwarmKeyFile)
}

// handshakeWatch wraps the resource manager of a private node to log, at
// debug, the inbound connections that end before their security
// handshake names a peer: what a peer without this network's swarm key
// (or with another) looks like from this side, where libp2p says nothing.
type handshakeWatch struct {
	network.ResourceManager
	log *slog.Logger
}

func (w handshakeWatch) OpenConnection(dir network.Direction, usefd bool, endpoint ma.Multiaddr) (network.ConnManagementScope, error) {
	s, err := w.ResourceManager.OpenConnection(dir, usefd, endpoint)
	if err != nil || dir != network.DirInbound {
		return s, err
	}
	return &watchedConn{ConnManagementScope: s, log: w.log, from: endpoint}, nil
}

type watchedConn struct {
	network.ConnManagementScope
	log   *slog.Logger
	from  ma.Multiaddr
	named atomic.Bool
}

func (c *watchedConn) SetPeer(p peer.ID) error {
	c.named.Store(true)
	return c.ConnManagementScope.SetPeer(p)
}

func (c *watchedConn) Done() {
	if !c.named.Load() {
		c.log.Debug("an inbound connection ended before its handshake: a peer without this private network's swarm key, or with another (or not a shoal peer)",
			"from", c.from)
	}
	c.ConnManagementScope.Done()
}
