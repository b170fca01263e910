package api

import (
	"time"

	"github.com/shoalnet/shoal/transfer"
	"github.com/shoalnet/shoal/transfer/manifest"
)

// SocketName is the API socket's name in the home directory.
const SocketName = "api.sock"

// Status describes the running node.
type Status struct {
	ID        string              `json:"id"`
	Network   string              `json:"network"`
	Version   string              `json:"version"`
	Addrs     []string            `json:"addrs"`
	Started   time.Time           `json:"started"`
	Uptime    time.Duration       `json:"uptime_ns"`
	Peers     int                 `json:"peers"`
	Shares    int                 `json:"shares"`
	Catalog   int                 `json:"catalog"`
	Fetches   []transfer.Progress `json:"fetches"`
	DHTPeers  int                 `json:"dht_peers"`
	Members   map[string]int      `json:"members"` // count by state: alive, suspect, dead, left
	Reachable string              `json:"reachability"`
}

// ShareRequest asks the daemon to share a path on its file system.
type ShareRequest struct {
	Path      string `json:"path"` // absolute
	ChunkSize int64  `json:"chunk_size,omitempty"`
	SHA256    bool   `json:"sha256,omitempty"`
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
}

// ConnectRequest asks the daemon to dial a peer.
type ConnectRequest struct {
	Addr string `json:"addr"` // multiaddr with /p2p/<id>
}

// Event is one line of a share or fetch stream.
type Event struct {
	// Type is "progress", "done" or "error".
	Type string `json:"type"`
	// Share progress (share streams).
	Index *manifest.BuildProgress `json:"index,omitempty"`
	// Fetch progress (fetch streams; the final one with "done").
	Fetch *transfer.Progress `json:"fetch,omitempty"`
	// Root and Path of the result, with "done".
	Root string `json:"root,omitempty"`
	Name string `json:"name,omitempty"`
	Path string `json:"path,omitempty"`
	// Error and its Code, with "error".
	Error string `json:"error,omitempty"`
	Code  string `json:"code,omitempty"`
}

// Error codes.
const (
	CodeBadRequest  = "bad_request"
	CodeNotFound    = "not_found"
	CodeExists      = "exists"
	CodeNoProviders = "no_providers"
	CodeNotRoot     = "not_root"
	CodeCanceled    = "canceled"
	CodeInternal    = "internal"
)
