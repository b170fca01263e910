package api

import (
	"embed"
	"io/fs"
	"net"
	"net/http"
	"strings"
	"time"
)

// The web dashboard: static files embedded in the binary, served at /ui/.
// The page holds no data of its own: its script reads the API (status,
// members, catalog, graph) with the bearer token the user gives it — in
// the URL's fragment, #token=..., which browsers never send to servers,
// or typed into the page — and redraws every second. So the files are
// served without a token, and everything they show needs one.

//go:embed ui
var uiFiles embed.FS

// DashboardPath is where the dashboard is served.
const DashboardPath = "/ui/"

func uiHandler() http.Handler {
	sub, err := fs.Sub(uiFiles, "ui")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.StripPrefix(DashboardPath, http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}

// isDashboardFile reports whether r asks for one of the dashboard's
// static files, which need no token.
func isDashboardFile(r *http.Request) bool {
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) &&
		(r.URL.Path == "/" || strings.HasPrefix(r.URL.Path, DashboardPath))
}

// graphFresh is how long a topology is answered again before the members
// are asked anew: every open dashboard asks for it every few seconds.
const graphFresh = 2 * time.Second

func (s *Server) graph(w http.ResponseWriter, r *http.Request) {
	s.graphMu.Lock()
	if s.graphAt.IsZero() || time.Since(s.graphAt) > graphFresh {
		g, err := s.n.Topology(r.Context())
		if err != nil {
			s.graphMu.Unlock()
			reply(w, nil, err)
			return
		}
		s.graphLast, s.graphAt = g, time.Now()
	}
	g := s.graphLast
	s.graphMu.Unlock()
	reply(w, g, nil)
}

// DashboardURL is the dashboard's address on a daemon's TCP listener at
// addr (host:port); a listener on every interface is reached on loopback.
func DashboardURL(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://" + addr + DashboardPath
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		if ip.To4() != nil {
			host = "127.0.0.1"
		} else {
			host = "::1"
		}
	}
	return "http://" + net.JoinHostPort(host, port) + DashboardPath
}
