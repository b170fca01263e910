package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"

	"github.com/shoalnet/shoal/node"
	"github.com/shoalnet/shoal/node/auth"
	"github.com/shoalnet/shoal/transfer"
	"github.com/shoalnet/shoal/transfer/manifest"
	"github.com/shoalnet/shoal/transfer/seal"
)

// Server serves the API over a node. It is an http.Handler.
type Server struct {
	// TCPAddr is the daemon's TCP listener (host:port) serving this
	// handler, if any; set it before serving. Status reports it, and
	// the dashboard's address with it.
	TCPAddr string

	n       *node.Node
	version string
	log     *slog.Logger
	mux     *http.ServeMux

	contentSlots chan struct{} // bounds the content requests served at once

	graphMu   sync.Mutex // held while the members are asked
	graphLast node.Graph // the last topology (graphMu)
	graphAt   time.Time  // when it was asked for
}

// NewServer returns the API handler for n.
func NewServer(n *node.Node, version string, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{n: n, version: version, log: log, mux: http.NewServeMux(),
		contentSlots: make(chan struct{}, DefaultContentLimit)}
	s.mux.HandleFunc("GET /v1/status", s.status)
	s.mux.HandleFunc("GET /v1/peers", s.peers)
	s.mux.HandleFunc("GET /v1/catalog", s.catalog)
	s.mux.HandleFunc("GET /v1/shares", s.shares)
	s.mux.HandleFunc("POST /v1/share", s.share)
	s.mux.HandleFunc("POST /v1/fetch", s.fetch)
	s.mux.HandleFunc("DELETE /v1/shares/{root}", s.unshare)
	s.mux.HandleFunc("POST /v1/connect", s.connect)
	s.mux.HandleFunc("POST /v1/pins", s.pin)
	s.mux.HandleFunc("DELETE /v1/pins/{root}", s.unpin)
	s.mux.HandleFunc("GET /v1/replicas/{root}", s.replicas)
	s.mux.HandleFunc("POST /v1/gc", s.gc)
	s.mux.HandleFunc("GET /v1/graph", s.graph)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(n.Metrics(), promhttp.HandlerOpts{}))
	s.mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	s.mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	s.mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	s.mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	s.mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	s.mux.HandleFunc("GET /v1/members", s.membersList)
	s.mux.HandleFunc("GET /v1/members/watch", s.membersWatch)
	s.mux.HandleFunc("POST /v1/token", s.addToken)
	s.mux.HandleFunc("POST /v1/revoke", s.revoke)
	s.mux.HandleFunc("GET /content/{root}", s.content)
	s.mux.HandleFunc("GET /content/{root}/{path...}", s.content)
	s.mux.Handle("GET "+DashboardPath, uiHandler())
	s.mux.Handle("GET /{$}", http.RedirectHandler(DashboardPath, http.StatusFound))
	return s
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Listen creates the API socket in home with mode 0600, replacing a stale
// one. The caller must hold the home (a running node), so no live daemon
// can own the socket.
func Listen(home string) (net.Listener, error) {
	p := filepath.Join(home, SocketName)
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("api: remove stale socket: %w", err)
	}
	l, err := net.Listen("unix", p)
	if err != nil {
		return nil, fmt.Errorf("api: listen on %s: %w", p, err)
	}
	if err := os.Chmod(p, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("api: %w", err)
	}
	return l, nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, err error) {
	code := codeOf(err)
	if code == CodeInternal && status >= 400 && status < 500 {
		code = CodeBadRequest
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(Event{Type: "error", Error: err.Error(), Code: code})
}

// codeOf is the code of the first sentinel of errorCodes that err wraps.
func codeOf(err error) string {
	for _, c := range errorCodes {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return CodeInternal
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	st := Status{
		ID: s.n.ID().String(), Network: s.n.Network(), Version: s.version,
		Started: s.n.Started(), Uptime: time.Since(s.n.Started()),
		Peers:   len(s.n.Peers()),
		Fetches: s.n.Fetches(), DHTPeers: s.n.DHTPeers(), NAT: s.n.NAT(),
		Access: s.n.Access(), APIListen: s.TCPAddr,
	}
	st.Reachable = st.NAT.Reachability
	for _, a := range s.n.Addrs() {
		st.Addrs = append(st.Addrs, a.String())
	}
	for _, sh := range s.n.Shares() {
		if sh.Stale != "" {
			st.Stale = append(st.Stale, sh)
		} else {
			st.Shares++
		}
	}
	if cat, err := s.n.Catalog(); err == nil {
		st.Catalog = len(cat)
	}
	st.Members = map[string]int{}
	for _, m := range s.n.Members() {
		st.Members[m.State.String()]++
	}
	st.Store = s.n.Store()
	st.UnderReplicated = s.n.UnderReplicated()
	writeJSON(w, st)
}

// rootParam parses the {root} of a request's path.
func rootParam(r *http.Request) (cid.Cid, error) { return parseRoot(r.PathValue("root")) }

// parseRoot parses a CID a request names.
func parseRoot(s string) (cid.Cid, error) {
	root, err := cid.Decode(s)
	if err != nil {
		return cid.Undef, fmt.Errorf("%w: malformed CID %q: %v", ErrBadRequest, s, err)
	}
	return root, nil
}

func (s *Server) pin(w http.ResponseWriter, r *http.Request) {
	var req PinRequest
	if err := decode(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	root, err := parseRoot(req.Root)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if err := s.n.Pin(r.Context(), root, req.Replicas); err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	st, err := s.n.Replicas(root)
	reply(w, st, err)
}

func (s *Server) unpin(w http.ResponseWriter, r *http.Request) {
	root, err := rootParam(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if err := s.n.Unpin(r.Context(), root); err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	writeJSON(w, map[string]string{"root": root.String()})
}

func (s *Server) replicas(w http.ResponseWriter, r *http.Request) {
	root, err := rootParam(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	st, err := s.n.Replicas(root)
	reply(w, st, err)
}

func (s *Server) gc(w http.ResponseWriter, r *http.Request) {
	c, err := s.n.CollectGarbage(r.Context())
	reply(w, c, err)
}

// reply writes a node call's result: v as JSON, or err with the status
// statusOf gives it.
func reply(w http.ResponseWriter, v any, err error) {
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	writeJSON(w, v)
}

// statusOf is the HTTP status of an error of the node.
func statusOf(err error) int {
	switch codeOf(err) {
	case CodeNotFound, CodeUnknownRoot, CodeNotPinned:
		return http.StatusNotFound
	case CodeBadRequest, CodeNotRoot:
		return http.StatusBadRequest
	case CodeForbidden, CodeDenied:
		return http.StatusForbidden
	}
	if errors.Is(err, node.ErrBadArgument) {
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

func (s *Server) peers(w http.ResponseWriter, r *http.Request) { writeJSON(w, s.n.Peers()) }

func (s *Server) catalog(w http.ResponseWriter, r *http.Request) {
	cat, err := s.n.Catalog()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, cat)
}

func (s *Server) shares(w http.ResponseWriter, r *http.Request) { writeJSON(w, s.n.Shares()) }

func (s *Server) unshare(w http.ResponseWriter, r *http.Request) {
	root, err := rootParam(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if err := s.n.Unshare(r.Context(), root); err != nil {
		status := http.StatusInternalServerError
		if errors.Is(err, transfer.ErrNotFound) {
			status = http.StatusNotFound
		}
		writeError(w, status, err)
		return
	}
	writeJSON(w, map[string]string{"root": root.String()})
}

func (s *Server) connect(w http.ResponseWriter, r *http.Request) {
	var req ConnectRequest
	if err := decode(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	ai, err := peer.AddrInfoFromString(req.Addr)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("address %q: %w", req.Addr, err))
		return
	}
	if err := s.n.Connect(r.Context(), *ai); err != nil {
		writeError(w, http.StatusBadGateway, err)
		return
	}
	writeJSON(w, map[string]string{"id": ai.ID.String()})
}

// addToken installs this node's token.
func (s *Server) addToken(w http.ResponseWriter, r *http.Request) {
	var req TokenRequest
	if err := decode(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	t, err := auth.ParseToken(req.Token)
	if err == nil {
		err = s.n.SetToken(t)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	writeJSON(w, NewTokenInfo(t))
}

// revoke revokes a token network-wide (admins only).
func (s *Server) revoke(w http.ResponseWriter, r *http.Request) {
	var req TokenRequest
	if err := decode(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	t, err := auth.ParseToken(req.Token)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if _, err := s.n.Revoke(r.Context(), t); err != nil {
		writeError(w, http.StatusForbidden, err)
		return
	}
	writeJSON(w, NewTokenInfo(t))
}

// maxBody caps a request body.
const maxBody = 1 << 20

// decode reads a JSON request body into v. Its errors wrap ErrBadRequest.
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return fmt.Errorf("%w: the body is over %d bytes", ErrBadRequest, maxBody)
		}
		return fmt.Errorf("%w: body: %v", ErrBadRequest, err)
	}
	return nil
}

// stream writes NDJSON events; send is safe for concurrent use.
type stream struct {
	mu  sync.Mutex
	w   http.ResponseWriter
	enc *json.Encoder
}

func newStream(w http.ResponseWriter) *stream {
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	return &stream{w: w, enc: json.NewEncoder(w)}
}

func (st *stream) send(e Event) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.enc.Encode(e)
	if f, ok := st.w.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *Server) share(w http.ResponseWriter, r *http.Request) {
	var req ShareRequest
	if err := decode(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if !filepath.IsAbs(req.Path) {
		writeError(w, http.StatusBadRequest, fmt.Errorf("path %q is not absolute", req.Path))
		return
	}
	if _, err := os.Stat(req.Path); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("cannot share %s: %w", req.Path, err))
		return
	}
	st := newStream(w)
	opts := node.ShareOptions{
		ChunkSize: req.ChunkSize, SHA256: req.SHA256, Allow: req.Allow,
		Progress:    func(p manifest.BuildProgress) { st.send(Event{Type: "progress", Index: &p}) },
		SkipSpecial: req.SkipSpecial, Times: req.Times, Replicas: req.Replicas,
		Skipped: func(path, kind string) { st.send(Event{Type: "skipped", Path: path, Kind: kind}) },
	}
	done := Event{Type: "done", Name: filepath.Base(req.Path), Path: req.Path}
	var root cid.Cid
	var err error
	if req.Encrypt {
		st.send(Event{Type: "encrypting", Path: req.Path})
		var key seal.Key
		root, key, err = s.n.ShareEncrypted(r.Context(), req.Path, opts)
		done.Link = seal.Link(root, key)
	} else {
		root, err = s.n.Share(r.Context(), req.Path, opts)
	}
	if err != nil {
		st.send(Event{Type: "error", Error: err.Error(), Code: codeOf(err)})
		return
	}
	done.Root = root.String()
	st.send(done)
}

func (s *Server) fetch(w http.ResponseWriter, r *http.Request) {
	var req FetchRequest
	if err := decode(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	root, err := parseRoot(req.Root)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if err := node.CheckRoot(root); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if !filepath.IsAbs(req.Dst) {
		writeError(w, http.StatusBadRequest, fmt.Errorf("destination %q is not absolute", req.Dst))
		return
	}
	opts := node.FetchOptions{Overwrite: req.Overwrite, IntoDir: req.IntoDir, NoDHT: req.NoDHT}
	for _, a := range req.Peers {
		ai, err := peer.AddrInfoFromString(a)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("peer %q: %w (want a multiaddr ending in /p2p/<peer id>)", a, err))
			return
		}
		opts.Peers = append(opts.Peers, *ai)
	}
	var key *seal.Key
	if req.Key != "" {
		k, err := seal.ParseKey(req.Key)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("%w: %v", ErrBadRequest, err))
			return
		}
		key = &k
	}
	st := newStream(w)
	opts.Progress = func(p transfer.Progress) { st.send(Event{Type: "progress", Fetch: &p}) }
	// A caller's trace context (traceparent) makes the fetch part of its
	// trace.
	ctx := otel.GetTextMapPropagator().Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	var res *transfer.Result
	if key != nil {
		res, err = s.n.FetchDecrypted(ctx, root, *key, req.Dst, opts)
	} else {
		res, err = s.n.Fetch(ctx, root, req.Dst, opts)
	}
	if err != nil {
		st.send(Event{Type: "error", Error: err.Error(), Code: codeOf(err)})
		return
	}
	p := res.Progress
	st.send(Event{Type: "done", Root: root.String(), Name: res.Manifest.Name, Path: res.Path, Fetch: &p})
}

func (s *Server) membersList(w http.ResponseWriter, r *http.Request) { writeJSON(w, s.n.Members()) }

// membersWatch streams membership events as NDJSON until the client goes
// away.
func (s *Server) membersWatch(w http.ResponseWriter, r *http.Request) {
	events, cancel := s.n.SubscribeMembers(1024)
	defer cancel()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	flusher, _ := w.(http.Flusher)
	if flusher != nil {
		flusher.Flush()
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case e, ok := <-events:
			if !ok {
				return
			}
			if enc.Encode(e) != nil {
				return
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
	}
}
