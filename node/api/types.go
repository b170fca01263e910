package api

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/shoalnet/shoal/node"
	"github.com/shoalnet/shoal/node/auth"
	"github.com/shoalnet/shoal/transfer"
	"github.com/shoalnet/shoal/transfer/manifest"
	"github.com/shoalnet/shoal/transfer/seal"
)

// SocketName is the API socket's name in the home directory.
const SocketName = "api.sock"

// Status describes the running node.
type Status struct {
	ID        string               `json:"id"`
	Network   string               `json:"network"`
	Version   string               `json:"version"`
	Addrs     []string             `json:"addrs"`
	Started   time.Time            `json:"started"`
	Uptime    time.Duration        `json:"uptime_ns"`
	Peers     int                  `json:"peers"`
	Shares    int                  `json:"shares"`          // served
	Stale     []transfer.ShareInfo `json:"stale,omitempty"` // shares whose files changed: not served
	Catalog   int                  `json:"catalog"`
	Fetches   []transfer.Progress  `json:"fetches"`
	DHTPeers  int                  `json:"dht_peers"`
	Members   map[string]int       `json:"members"`      // count by state: alive, suspect, dead, left
	Reachable string               `json:"reachability"` // public, private or unknown
	NAT       node.NATStatus       `json:"nat"`
	Access    node.AccessStatus    `json:"access"`
	Store     node.StoreStatus     `json:"store"`
	// UnderReplicated lists the roots with fewer live copies than asked.
	UnderReplicated []node.ReplicaStatus `json:"under_replicated,omitempty"`
	// APIListen is the daemon's TCP listener for the API, the gateway and
	// the dashboard (api_listen), if it has one.
	APIListen string `json:"api_listen,omitempty"`
}

// PinRequest asks the network to keep Replicas copies of Root.
type PinRequest struct {
	Root     string `json:"root"`
	Replicas int    `json:"replicas"`
}

// TokenRequest carries a token in its text form (shoaltok1_...).
type TokenRequest struct {
	Token string `json:"token"`
}

// TokenInfo describes a token.
type TokenInfo struct {
	ID      string    `json:"id"`
	Network string    `json:"network"`
	Role    string    `json:"role"`
	Peer    string    `json:"peer"`
	Issuer  string    `json:"issuer"`
	Issued  time.Time `json:"issued"`
	Expires time.Time `json:"expires,omitzero"`
}

// NewTokenInfo describes t.
func NewTokenInfo(t auth.Token) TokenInfo {
	return TokenInfo{
		ID: t.ID().String(), Network: t.Network, Role: string(t.Role), Peer: t.Peer.String(),
		Issuer: t.Issuer.String(), Issued: t.Issued, Expires: t.Expires,
	}
}

// ShareRequest asks the daemon to share a path on its file system.
type ShareRequest struct {
	Path      string `json:"path"` // absolute
	ChunkSize int64  `json:"chunk_size,omitempty"`
	SHA256    bool   `json:"sha256,omitempty"`
	// Allow limits the share to these roles and peer IDs.
	Allow []string `json:"allow,omitempty"`
	// SkipSpecial leaves out what is neither a regular file nor a
	// directory; each is reported by a "skipped" event.
	SkipSpecial bool `json:"skip_special,omitempty"`
	// Times records modification times, which fetches restore (another
	// root than without).
	Times bool `json:"times,omitempty"`
	// Replicas asks the network's storers to keep this many copies.
	Replicas int `json:"replicas,omitempty"`
	// Encrypt shares a ciphertext copy under a new key; the done event
	// carries the link (root#key), the only place the key is given.
	Encrypt bool `json:"encrypt,omitempty"`
}

// FetchRequest asks the daemon to fetch a root to a path on its file
// system.
type FetchRequest struct {
	Root      string   `json:"root"`
	Dst       string   `json:"dst"`                // absolute
	IntoDir   bool     `json:"into_dir,omitempty"` // Dst is a directory: fetch to Dst/<share name>
	Overwrite bool     `json:"overwrite,omitempty"`
	Peers     []string `json:"peers,omitempty"` // multiaddrs with /p2p/<id>
	NoDHT     bool     `json:"no_dht,omitempty"`
	// Key decrypts an encrypted share (the part of its link after '#').
	Key string `json:"key,omitempty"`
}

// ConnectRequest asks the daemon to dial a peer.
type ConnectRequest struct {
	Addr string `json:"addr"` // multiaddr with /p2p/<id>
}

// Event is one line of a share or fetch stream.
type Event struct {
	// Type is "progress", "skipped", "done" or "error".
	Type string `json:"type"`
	// Kind of what a share left out, with "skipped" (its Path is in the
	// share).
	Kind string `json:"kind,omitempty"`
	// Share progress (share streams).
	Index *manifest.BuildProgress `json:"index,omitempty"`
	// Fetch progress (fetch streams; the final one with "done").
	Fetch *transfer.Progress `json:"fetch,omitempty"`
	// Root and Path of the result, with "done".
	Root string `json:"root,omitempty"`
	Name string `json:"name,omitempty"`
	Path string `json:"path,omitempty"`
	// Link of an encrypted share (root#key), with "done".
	Link string `json:"link,omitempty"`
	// Error and its Code, with "error".
	Error string `json:"error,omitempty"`
	Code  string `json:"code,omitempty"`
}

// ErrBadRequest: the request was malformed (its body, a CID, a path).
var ErrBadRequest = errors.New("bad request")

// ErrBusy: the daemon serves as many such requests as it will at once;
// try again.
var ErrBusy = errors.New("busy")

// errorCodes is the one table of the API's error codes: the server
// answers an error with the code of the first sentinel in it that the
// error wraps, and the client turns a code back into the first sentinel
// with that code, so callers branch with errors.Is on either side.
var errorCodes = []struct {
	code string
	err  error
}{
	{CodeExists, transfer.ErrExists},
	{CodeNoProviders, transfer.ErrNoProviders},
	{CodeIsDir, transfer.ErrIsDir},
	{CodeBusy, ErrBusy},
	{CodeNotFound, transfer.ErrNotFound},
	{CodeNotFound, os.ErrNotExist},
	{CodeNotRoot, node.ErrNotRoot},
	{CodeCanceled, context.Canceled},
	{CodeDenied, transfer.ErrDenied},
	{CodeRefused, node.ErrRefused},
	{CodeForbidden, node.ErrNotPublisher},
	{CodeForbidden, ErrReadOnly},
	{CodeBadToken, auth.ErrMalformed},
	{CodeBadToken, auth.ErrBadSignature},
	{CodeBadToken, auth.ErrExpired},
	{CodeBadToken, auth.ErrWrongPeer},
	{CodeBadToken, auth.ErrWrongNetwork},
	{CodeBadToken, auth.ErrUnknownIssuer},
	{CodeBadToken, auth.ErrRevoked},
	{CodeBadToken, auth.ErrNoToken},
	{CodeBadRequest, ErrBadRequest},
	{CodeBadRequest, node.ErrBadArgument},
	{CodeUnknownRoot, node.ErrUnknownRoot},
	{CodeNotPinned, node.ErrNotPinned},
	{CodeSealed, node.ErrSealed},
	{CodeWrongKey, seal.ErrWrongKey},
	{CodeDamaged, seal.ErrDamaged},
}

// Error codes.
const (
	CodeBadRequest  = "bad_request"
	CodeUnknownRoot = "unknown_root"
	CodeNotPinned   = "not_pinned"
	CodeSealed      = "sealed"
	CodeWrongKey    = "wrong_key"
	CodeDamaged     = "damaged"
	CodeNotFound    = "not_found"
	CodeExists      = "exists"
	CodeNoProviders = "no_providers"
	CodeNotRoot     = "not_root"
	CodeCanceled    = "canceled"
	CodeInternal    = "internal"
	CodeDenied      = "denied"
	CodeRefused     = "refused"
	CodeForbidden   = "forbidden" // this peer's role does not allow it
	CodeBadToken    = "bad_token"
	CodeIsDir       = "is_dir" // a directory where a file was wanted
	CodeBusy        = "busy"   // too many requests at once; try again
)
