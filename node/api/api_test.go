package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/shoalnet/shoal/node"
	"github.com/shoalnet/shoal/transfer"
	"github.com/shoalnet/shoal/transfer/manifest"
)

// libp2p's bandwidth meters share one sweeper goroutine per process,
// started on first use and never stopped.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/libp2p/go-flow-metrics.(*sweeper).run"))
}

// daemon is a node with its API served in-process.
type daemon struct {
	n    *node.Node
	c    *Client
	home string
}

func newDaemon(t *testing.T) *daemon {
	t.Helper()
	home := t.TempDir()
	cfg := node.DefaultConfig()
	cfg.Home = home
	cfg.ListenAddrs = []string{"/ip4/127.0.0.1/tcp/0"}
	n, err := node.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := Listen(home)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: NewServer(n, "test", nil)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(l)
	}()
	c := NewClient(home)
	t.Cleanup(func() {
		c.Close()
		srv.Close()
		<-done
		n.Close()
	})
	return &daemon{n: n, c: c, home: home}
}

func (d *daemon) addr() string { return d.n.Addrs()[0].String() }

func writeRandom(t *testing.T, size int) (string, []byte) {
	t.Helper()
	data := make([]byte, size)
	rand.Read(data)
	p := filepath.Join(t.TempDir(), "payload.bin")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p, data
}

func TestShareFetchThroughAPI(t *testing.T) {
	a, b := newDaemon(t), newDaemon(t)
	ctx := context.Background()
	src, data := writeRandom(t, 5<<20+1)
	var indexed int
	done, err := a.c.Share(ctx, ShareRequest{Path: src}, func(p manifest.BuildProgress) { indexed++ }, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(done.Root, "bafy") || done.Name != "payload.bin" {
		t.Fatalf("share result: %+v", done)
	}
	shares, err := a.c.Shares(ctx)
	if err != nil || len(shares) != 1 || shares[0].Root.String() != done.Root {
		t.Fatalf("shares: %+v %v", shares, err)
	}
	dst := filepath.Join(t.TempDir(), "copy.bin")
	var events int
	res, err := b.c.Fetch(ctx, FetchRequest{Root: done.Root, Dst: dst, Peers: []string{a.addr()}, NoDHT: true},
		func(transfer.Progress) { events++ })
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(res.Path)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("fetched copy differs (%v)", err)
	}
	if res.Fetch == nil || res.Fetch.Bytes != int64(len(data)) {
		t.Fatalf("final progress: %+v", res.Fetch)
	}
	// b is connected to a now, and both know the share.
	peers, err := b.c.Peers(ctx)
	if err != nil || len(peers) == 0 {
		t.Fatalf("peers: %v %v", peers, err)
	}
	st, err := b.c.Status(ctx)
	if err != nil || st.ID != b.n.ID().String() || st.Shares != 1 || st.Peers == 0 {
		t.Fatalf("status: %+v %v", st, err)
	}
	cat, err := a.c.Catalog(ctx)
	if err != nil || len(cat) == 0 || cat[0].Root.String() != done.Root {
		t.Fatalf("catalog: %+v %v", cat, err)
	}
	// Fetching onto an existing file is refused with the sentinel.
	_, err = b.c.Fetch(ctx, FetchRequest{Root: done.Root, Dst: dst, Peers: []string{a.addr()}, NoDHT: true}, nil)
	if !errors.Is(err, transfer.ErrExists) {
		t.Fatalf("existing destination: %v, want ErrExists", err)
	}
	if err := a.c.Unshare(ctx, done.Root); err != nil {
		t.Fatal(err)
	}
	if err := a.c.Unshare(ctx, done.Root); !errors.Is(err, transfer.ErrNotFound) {
		t.Fatalf("second unshare: %v, want ErrNotFound", err)
	}
}

func TestAPIErrors(t *testing.T) {
	a := newDaemon(t)
	ctx := context.Background()
	if _, err := a.c.Fetch(ctx, FetchRequest{Root: "not-a-cid", Dst: "x"}, nil); err == nil || !strings.Contains(err.Error(), "malformed CID") {
		t.Fatalf("malformed CID: %v", err)
	}
	raw := "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
	if _, err := a.c.Fetch(ctx, FetchRequest{Root: raw, Dst: "x"}, nil); !errors.Is(err, node.ErrNotRoot) {
		t.Fatalf("chunk CID: %v, want ErrNotRoot", err)
	}
	root := "bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
	if _, err := a.c.Fetch(ctx, FetchRequest{Root: root, Dst: filepath.Join(t.TempDir(), "x"), NoDHT: true}, nil); !errors.Is(err, transfer.ErrNoProviders) {
		t.Fatalf("no providers: %v, want ErrNoProviders", err)
	}
	if _, err := a.c.Share(ctx, ShareRequest{Path: filepath.Join(t.TempDir(), "missing")}, nil, nil); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("missing path: %v", err)
	}
	st, err := os.Stat(filepath.Join(a.home, SocketName))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode: %v %v", st.Mode(), err)
	}
}

func TestNoDaemon(t *testing.T) {
	c := NewClient(t.TempDir())
	defer c.Close()
	if _, err := c.Status(context.Background()); !errors.Is(err, ErrNoDaemon) || !strings.Contains(err.Error(), "shoal --home") {
		t.Fatalf("no daemon: %v", err)
	}
}

func TestBearerListener(t *testing.T) {
	d := newDaemon(t)
	tok, err := LoadOrCreateBearer(d.home)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := LoadOrCreateBearer(d.home); again != tok {
		t.Fatal("token not kept")
	}
	if fi, err := os.Stat(filepath.Join(d.home, TokenFileName)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v", fi.Mode(), err)
	}
	h := RequireBearer(tok, "", NewServer(d.n, "test", nil))
	for _, c := range []struct {
		auth string
		want int
	}{
		{"", http.StatusUnauthorized},
		{"Bearer nope", http.StatusUnauthorized},
		{"Bearer " + tok + "x", http.StatusUnauthorized},
		{"bearer " + tok, http.StatusUnauthorized},
		{"Bearer " + tok, http.StatusOK},
	} {
		req := httptest.NewRequest(http.MethodGet, "/v1/status", nil)
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != c.want {
			t.Errorf("Authorization %q: %d, want %d", c.auth, rec.Code, c.want)
		}
		if c.want == http.StatusOK && !strings.Contains(rec.Body.String(), d.n.ID().String()) {
			t.Errorf("status body: %s", rec.Body.String())
		}
	}
}

// Malformed bodies, oversized bodies and bad CIDs are the client's
// mistakes: 400 with the code bad_request, which the
// client turns back into ErrBadRequest.
func TestBadRequestCodes(t *testing.T) {
	d := newDaemon(t)
	srv := httptest.NewServer(NewServer(d.n, "test", nil))
	defer srv.Close()
	big := `{"path": "` + strings.Repeat("x", maxBody) + `"}`
	for _, c := range []struct {
		method, path, body string
		status             int
	}{
		{http.MethodPost, "/v1/share", `{"path": `, http.StatusBadRequest},
		{http.MethodPost, "/v1/share", `{"path": "/tmp", "bogus": 1}`, http.StatusBadRequest},
		{http.MethodPost, "/v1/share", big, http.StatusBadRequest},
		{http.MethodPost, "/v1/share", `{"path": "relative"}`, http.StatusBadRequest},
		{http.MethodPost, "/v1/fetch", `{"root": "not-a-cid", "dst": "/tmp/x"}`, http.StatusBadRequest},
		{http.MethodPost, "/v1/connect", `{"addr": "nonsense"}`, http.StatusBadRequest},
		{http.MethodDelete, "/v1/shares/not-a-cid", "", http.StatusBadRequest},
	} {
		req, _ := http.NewRequest(c.method, srv.URL+c.path, strings.NewReader(c.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e Event
		err = json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if err != nil || resp.StatusCode != c.status || e.Code != CodeBadRequest {
			t.Errorf("%s %s %.40q: %s, code %q (%s), want %d bad_request", c.method, c.path, c.body, resp.Status, e.Code, e.Error, c.status)
		}
	}
	_, err := d.c.Fetch(context.Background(), FetchRequest{Root: "not-a-cid", Dst: "x"}, nil)
	if !errors.Is(err, ErrBadRequest) {
		t.Errorf("client: %v, want ErrBadRequest", err)
	}
	if err := d.c.Unshare(context.Background(), "bafy-nonsense"); !errors.Is(err, ErrBadRequest) {
		t.Errorf("client unshare: %v, want ErrBadRequest", err)
	}
}

// The read-only token reads (status, members, content held here) and
// changes nothing: no share, fetch, unshare, and no fetch of content not
// held here through the gateway.
func TestReadOnlyBearer(t *testing.T) {
	d := newDaemon(t)
	full, err := LoadOrCreateBearer(d.home)
	if err != nil {
		t.Fatal(err)
	}
	read, err := LoadOrCreateReadBearer(d.home)
	if err != nil || read == full {
		t.Fatalf("read-only token %q (%v)", read, err)
	}
	if fi, err := os.Stat(filepath.Join(d.home, ReadTokenFileName)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("read-only token file: %v %v", fi, err)
	}
	src, data := writeRandom(t, 1000)
	done, err := d.c.Share(context.Background(), ShareRequest{Path: src}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A root held elsewhere only.
	elsewhere, _ := writeRandom(t, 10)
	e, err := newDaemon(t).c.Share(context.Background(), ShareRequest{Path: elsewhere}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	other := e.Root
	srv := httptest.NewServer(RequireBearer(full, read, NewServer(d.n, "test", nil)))
	defer srv.Close()
	for _, c := range []struct {
		token, method, path, body string
		want                      int
	}{
		{read, http.MethodGet, "/v1/status", "", http.StatusOK},
		{read, http.MethodGet, "/v1/members", "", http.StatusOK},
		{read, http.MethodGet, "/content/" + done.Root, "", http.StatusOK},
		{read, http.MethodHead, "/content/" + done.Root, "", http.StatusOK},
		{read, http.MethodGet, "/content/" + other, "", http.StatusForbidden},
		{read, http.MethodPost, "/v1/share", `{"path": "/etc"}`, http.StatusForbidden},
		{read, http.MethodPost, "/v1/fetch", `{"root": "` + other + `", "dst": "/tmp/x"}`, http.StatusForbidden},
		{read, http.MethodDelete, "/v1/shares/" + done.Root, "", http.StatusForbidden},
		{"nope", http.MethodGet, "/v1/status", "", http.StatusUnauthorized},
		{full, http.MethodPost, "/v1/connect", `{"addr": "nonsense"}`, http.StatusBadRequest},
		{read, http.MethodGet, "/metrics", "", http.StatusOK},
		{read, http.MethodGet, "/v1/replicas/" + done.Root, "", http.StatusOK},
		{read, http.MethodPost, "/v1/pins", `{"root": "` + done.Root + `", "replicas": 2}`, http.StatusForbidden},
		{read, http.MethodGet, "/debug/pprof/", "", http.StatusForbidden},
		{full, http.MethodGet, "/debug/pprof/", "", http.StatusOK},
		{"nope", http.MethodGet, "/metrics", "", http.StatusUnauthorized},
	} {
		req, _ := http.NewRequest(c.method, srv.URL+c.path, strings.NewReader(c.body))
		req.Header.Set("Authorization", "Bearer "+c.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s %s with the %s token: %s (%s), want %d", c.method, c.path, map[bool]string{true: "read-only", false: "other"}[c.token == read], resp.Status, body, c.want)
		}
		if c.want == http.StatusForbidden && !strings.Contains(string(body), CodeForbidden) {
			t.Errorf("%s %s: %s, want the code forbidden", c.method, c.path, body)
		}
		if c.method == http.MethodGet && c.path == "/content/"+done.Root && string(body) != string(data) {
			t.Errorf("content with the read-only token: %d bytes", len(body))
		}
	}
	if len(d.n.Shares()) != 1 {
		t.Errorf("the read-only token changed the shares: %+v", d.n.Shares())
	}
}

// /metrics speaks the Prometheus text format, with shoal's metrics and
// libp2p's.
func TestMetricsEndpoint(t *testing.T) {
	d := newDaemon(t)
	srv := httptest.NewServer(NewServer(d.n, "test", nil))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"# TYPE shoal_chunks_served_total counter", "shoal_members{state=\"alive\"} 1", "libp2p_", "go_goroutines"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q", ct)
	}
}

// The dashboard's files are served without a token (they hold no data),
// with a policy that keeps the page to its own origin; what the page
// reads still needs one.
func TestDashboardFiles(t *testing.T) {
	d := newDaemon(t)
	srv := httptest.NewServer(RequireBearer("full-token", "read-token", NewServer(d.n, "test", nil)))
	defer srv.Close()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, c := range []struct {
		method, path string
		want         int
		contains     string
	}{
		{http.MethodGet, "/ui/", http.StatusOK, `<script src="app.js"></script>`},
		{http.MethodGet, "/ui/app.js", http.StatusOK, "Authorization"},
		{http.MethodGet, "/ui/style.css", http.StatusOK, "--alive"},
		{http.MethodHead, "/ui/", http.StatusOK, ""},
		{http.MethodGet, "/", http.StatusFound, ""},
		{http.MethodGet, "/ui/missing.js", http.StatusNotFound, ""},
		{http.MethodPost, "/ui/", http.StatusUnauthorized, ""},
		{http.MethodGet, "/v1/status", http.StatusUnauthorized, ""},
		{http.MethodGet, "/v1/graph", http.StatusUnauthorized, ""},
		{http.MethodGet, "/uix", http.StatusUnauthorized, ""},
	} {
		req, _ := http.NewRequest(c.method, srv.URL+c.path, nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.want || !strings.Contains(string(body), c.contains) {
			t.Errorf("%s %s: %d %.80q, want %d with %q", c.method, c.path, resp.StatusCode, body, c.want, c.contains)
		}
		if c.want == http.StatusOK && !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'self'") {
			t.Errorf("%s %s: no content security policy", c.method, c.path)
		}
	}
	if loc := func() string {
		resp, err := client.Get(srv.URL + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.Header.Get("Location")
	}(); loc != DashboardPath {
		t.Errorf("/ redirects to %q, want %s", loc, DashboardPath)
	}
}

func TestDashboardURL(t *testing.T) {
	for addr, want := range map[string]string{
		"127.0.0.1:4111": "http://127.0.0.1:4111/ui/",
		"0.0.0.0:4111":   "http://127.0.0.1:4111/ui/",
		"[::]:4111":      "http://[::1]:4111/ui/",
		"[::1]:80":       "http://[::1]:80/ui/",
		"node.lan:4111":  "http://node.lan:4111/ui/",
	} {
		if got := DashboardURL(addr); got != want {
			t.Errorf("DashboardURL(%q) = %q, want %q", addr, got, want)
		}
	}
}
