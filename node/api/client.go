package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/shoalnet/shoal/node"
	"github.com/shoalnet/shoal/node/catalog"
	"github.com/shoalnet/shoal/node/membership"
	"github.com/shoalnet/shoal/transfer"
	"github.com/shoalnet/shoal/transfer/manifest"
)

// ErrNoDaemon: no daemon answers on the home's socket.
var ErrNoDaemon = errors.New("no shoal daemon is running")

// Client talks to a daemon's API. It is safe for concurrent use.
type Client struct {
	home string
	hc   *http.Client
}

// NewClient returns a client for the daemon of home. It does not connect
// until a call is made.
func NewClient(home string) *Client {
	sock := filepath.Join(home, SocketName)
	return &Client{
		home: home,
		hc: &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", sock)
			},
		}},
	}
}

// Close releases idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

func (c *Client) do(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://shoal"+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return c.send(req)
}

// send makes a request and turns an error answer into an error.
func (c *Client) send(req *http.Request) (*http.Response, error) {
	resp, err := c.hc.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w on %s (start one with: shoal --home %s daemon)", ErrNoDaemon, c.home, c.home)
		}
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		var e Event
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			return nil, fmt.Errorf("daemon: %s: %s", resp.Status, bytes.TrimSpace(data))
		}
		return nil, eventError(e)
	}
	return resp, nil
}

// eventError turns an error event back into an error that matches the
// sentinel of its code.
func eventError(e Event) error {
	for _, c := range errorCodes {
		if c.code == e.Code {
			return &remoteError{msg: e.Error, base: c.err}
		}
	}
	return errors.New(e.Error)
}

type remoteError struct {
	msg  string
	base error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.base }

func (c *Client) get(ctx context.Context, path string, v any) error {
	resp, err := c.do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

// Status returns the daemon's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	return s, c.get(ctx, "/v1/status", &s)
}

// Peers returns the connected peers.
func (c *Client) Peers(ctx context.Context) ([]node.PeerInfo, error) {
	var p []node.PeerInfo
	return p, c.get(ctx, "/v1/peers", &p)
}

// Catalog returns the shares known in the network.
func (c *Client) Catalog(ctx context.Context) ([]catalog.Entry, error) {
	var e []catalog.Entry
	return e, c.get(ctx, "/v1/catalog", &e)
}

// Shares returns what the daemon serves.
func (c *Client) Shares(ctx context.Context) ([]transfer.ShareInfo, error) {
	var s []transfer.ShareInfo
	return s, c.get(ctx, "/v1/shares", &s)
}

// Unshare stops serving root.
func (c *Client) Unshare(ctx context.Context, root string) error {
	resp, err := c.do(ctx, http.MethodDelete, "/v1/shares/"+url.PathEscape(root), nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// Pin asks the network to keep replicas copies of root.
func (c *Client) Pin(ctx context.Context, root string, replicas int) (node.ReplicaStatus, error) {
	var st node.ReplicaStatus
	resp, err := c.do(ctx, http.MethodPost, "/v1/pins", PinRequest{Root: root, Replicas: replicas})
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// Unpin withdraws the daemon's replica request for root.
func (c *Client) Unpin(ctx context.Context, root string) error {
	resp, err := c.do(ctx, http.MethodDelete, "/v1/pins/"+url.PathEscape(root), nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// Replicas returns what the network holds of root and who should.
func (c *Client) Replicas(ctx context.Context, root string) (node.ReplicaStatus, error) {
	var st node.ReplicaStatus
	return st, c.get(ctx, "/v1/replicas/"+url.PathEscape(root), &st)
}

// Graph returns the network's topology as the daemon sees it.
func (c *Client) Graph(ctx context.Context) (node.Graph, error) {
	var g node.Graph
	return g, c.get(ctx, "/v1/graph", &g)
}

// CollectGarbage deletes store content kept only for reading.
func (c *Client) CollectGarbage(ctx context.Context) (node.Collected, error) {
	var out node.Collected
	resp, err := c.do(ctx, http.MethodPost, "/v1/gc", nil)
	if err != nil {
		return out, err
	}
	defer resp.Body.Close()
	return out, json.NewDecoder(resp.Body).Decode(&out)
}

// Connect makes the daemon dial a peer.
func (c *Client) Connect(ctx context.Context, addr string) error {
	resp, err := c.do(ctx, http.MethodPost, "/v1/connect", ConnectRequest{Addr: addr})
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// AddToken installs the node's token (text form).
func (c *Client) AddToken(ctx context.Context, token string) (TokenInfo, error) {
	return c.postToken(ctx, "/v1/token", token)
}

// Revoke revokes a token in the whole network; the daemon must be an
// admin's.
func (c *Client) Revoke(ctx context.Context, token string) (TokenInfo, error) {
	return c.postToken(ctx, "/v1/revoke", token)
}

func (c *Client) postToken(ctx context.Context, path, token string) (TokenInfo, error) {
	var info TokenInfo
	resp, err := c.do(ctx, http.MethodPost, path, TokenRequest{Token: token})
	if err != nil {
		return info, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
		return info, fmt.Errorf("api: %s: %w", path, err)
	}
	return info, nil
}

// stream reads NDJSON events until done or error.
func (c *Client) stream(ctx context.Context, path string, body any, each func(Event)) (Event, error) {
	resp, err := c.do(ctx, http.MethodPost, path, body)
	if err != nil {
		return Event{}, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var e Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return Event{}, fmt.Errorf("daemon sent a bad event: %w", err)
		}
		switch e.Type {
		case "done":
			return e, nil
		case "error":
			return e, eventError(e)
		default:
			if each != nil {
				each(e)
			}
		}
	}
	if err := sc.Err(); err != nil {
		if ctx.Err() != nil {
			return Event{}, ctx.Err()
		}
		return Event{}, fmt.Errorf("daemon connection lost: %w", err)
	}
	if ctx.Err() != nil {
		return Event{}, ctx.Err()
	}
	return Event{}, errors.New("daemon ended the stream without a result (did it stop?)")
}

// Share asks the daemon to share path (made absolute here) and reports
// indexing progress to progress and what SkipSpecial left out to skipped
// (either may be nil). It returns the "done" event with the root.
func (c *Client) Share(ctx context.Context, req ShareRequest, progress func(manifest.BuildProgress), skipped func(path, kind string)) (Event, error) {
	abs, err := filepath.Abs(req.Path)
	if err != nil {
		return Event{}, err
	}
	req.Path = abs
	return c.stream(ctx, "/v1/share", req, func(e Event) {
		switch {
		case e.Index != nil && progress != nil:
			progress(*e.Index)
		case e.Type == "skipped" && skipped != nil:
			skipped(e.Path, e.Kind)
		}
	})
}

// Fetch asks the daemon to fetch a root to req.Dst (made absolute here)
// and reports progress (may be nil). Cancelling ctx cancels the fetch; it
// resumes when asked again.
func (c *Client) Fetch(ctx context.Context, req FetchRequest, progress func(transfer.Progress)) (Event, error) {
	abs, err := filepath.Abs(req.Dst)
	if err != nil {
		return Event{}, err
	}
	req.Dst = abs
	return c.stream(ctx, "/v1/fetch", req, func(e Event) {
		if e.Fetch != nil && progress != nil {
			progress(*e.Fetch)
		}
	})
}

// Members returns the daemon's membership view.
func (c *Client) Members(ctx context.Context) ([]membership.Member, error) {
	var m []membership.Member
	return m, c.get(ctx, "/v1/members", &m)
}

// WatchMembers calls fn for each membership event until ctx ends or the
// daemon stops.
func (c *Client) WatchMembers(ctx context.Context, fn func(membership.Event)) error {
	resp, err := c.do(ctx, http.MethodGet, "/v1/members/watch", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var e membership.Event
		if err := dec.Decode(&e); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("daemon stopped the member stream: %w", err)
		}
		fn(e)
	}
}

// Cat returns the file at name in the share root ("" for a single-file
// share) as the daemon reads it, while it arrives if it is not held there
// yet. A directory is an error (wrapping transfer.ErrIsDir) that lists
// its entries. key, if not empty, decrypts an encrypted share.
func (c *Client) Cat(ctx context.Context, root, name, key string) (io.ReadCloser, error) {
	u := "http://shoal/content/" + url.PathEscape(root)
	if name = strings.Trim(name, "/"); name != "" {
		u += "/" + (&url.URL{Path: name}).EscapedPath()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	if key != "" {
		req.Header.Set(KeyHeader, key)
	}
	resp, err := c.send(req)
	if err != nil {
		return nil, err
	}
	if resp.Header.Get(KindHeader) != "directory" {
		return resp.Body, nil
	}
	defer resp.Body.Close()
	var l Listing
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&l); err != nil {
		return nil, fmt.Errorf("daemon sent a bad listing: %w", err)
	}
	var names []string
	for _, e := range l.Entries {
		if e.Dir {
			names = append(names, e.Name+"/")
		} else {
			names = append(names, e.Name)
		}
	}
	where := l.Name
	if l.Path != "" {
		where += "/" + l.Path
	}
	return nil, fmt.Errorf("%w: %s holds: %s", transfer.ErrIsDir, where, strings.Join(names, " "))
}
