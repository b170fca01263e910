package membership

import (
	"log/slog"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Meta is what a member says about itself.
type Meta struct {
	Name        string   `cbor:"name" json:"name"`
	Network     string   `cbor:"net" json:"network"`
	Roles       []string `cbor:"roles" json:"roles"`
	Addrs       []string `cbor:"addrs" json:"addrs"`
	Version     string   `cbor:"ver" json:"version"`
	FreeStorage uint64   `cbor:"free" json:"free_storage"`
	Shares      int      `cbor:"shares" json:"shares"`
	// Token is the member's token in a closed network (its proof of
	// membership and role).
	Token []byte `cbor:"tok,omitempty" json:"-"`
	// Storer: the member keeps replicas for the network.
	Storer bool `cbor:"storer,omitempty" json:"storer,omitempty"`
	// StoreFull: the member's store took no new replica the last time it
	// was asked to (its quota or disk is full); it keeps those it holds.
	StoreFull bool `cbor:"full,omitempty" json:"store_full,omitempty"`
	// StoreUsed and StoreQuota are the bytes its store holds and may hold
	// (0: no quota but the disk).
	StoreUsed  uint64 `cbor:"used,omitempty" json:"store_used,omitempty"`
	StoreQuota uint64 `cbor:"quota,omitempty" json:"store_quota,omitempty"`
}

// Config tunes the protocol. Zero fields take the defaults of
// DefaultConfig, which suit a LAN.
type Config struct {
	// Network names the members topic. Default "default".
	Network string
	// ProbeInterval is the protocol period. Default 1s.
	ProbeInterval time.Duration
	// ProbeTimeout is how long a direct ping waits for its ack. Default
	// 500ms.
	ProbeTimeout time.Duration
	// IndirectChecks is the number of members asked to ping a member that
	// did not answer. Default 3.
	IndirectChecks int
	// SuspicionMult scales the suspicion timeout: the shortest is
	// SuspicionMult·max(1, log10(N))·ProbeInterval. Default 4.
	SuspicionMult int
	// SuspicionMaxMult is how many times the shortest timeout a suspicion
	// lasts with no confirmation. Default 6.
	SuspicionMaxMult int
	// AwarenessMax caps the local health multiplier. Default 8.
	AwarenessMax int
	// SyncInterval is the anti-entropy period. Default 30s.
	SyncInterval time.Duration
	// ReapAfter is how long a dead or departed member stays in the view
	// before it is forgotten (it comes back if it announces itself again).
	// Default 1h.
	ReapAfter time.Duration
	// Meta is this member's metadata.
	Meta Meta
	// Logger receives the package's logs. Default: discard.
	// Admit, if set, decides whether a member may be in the view from its
	// metadata (a closed network checks its token). An alive update whose
	// metadata it refuses, or a new member without metadata, is ignored.
	Admit  func(id peer.ID, meta Meta) error
	Logger *slog.Logger
}

// DefaultConfig returns settings suited to a LAN.
func DefaultConfig() Config {
	return Config{
		Network:          "default",
		ProbeInterval:    time.Second,
		ProbeTimeout:     500 * time.Millisecond,
		IndirectChecks:   3,
		SuspicionMult:    4,
		SuspicionMaxMult: 6,
		AwarenessMax:     8,
		SyncInterval:     30 * time.Second,
		ReapAfter:        time.Hour,
	}
}

func (c *Config) fill() {
	d := DefaultConfig()
	if c.Network == "" {
		c.Network = d.Network
	}
	if c.ProbeInterval <= 0 {
		c.ProbeInterval = d.ProbeInterval
	}
	if c.ProbeTimeout <= 0 {
		c.ProbeTimeout = d.ProbeTimeout
	}
	if c.ProbeTimeout > c.ProbeInterval {
		c.ProbeTimeout = c.ProbeInterval
	}
	if c.IndirectChecks <= 0 {
		c.IndirectChecks = d.IndirectChecks
	}
	if c.SuspicionMult <= 0 {
		c.SuspicionMult = d.SuspicionMult
	}
	if c.SuspicionMaxMult < 1 {
		c.SuspicionMaxMult = d.SuspicionMaxMult
	}
	if c.AwarenessMax < 1 {
		c.AwarenessMax = d.AwarenessMax
	}
	if c.SyncInterval <= 0 {
		c.SyncInterval = d.SyncInterval
	}
	if c.ReapAfter <= 0 {
		c.ReapAfter = d.ReapAfter
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}
