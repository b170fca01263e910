package api

import (
	"errors"
	"fmt"
	"html/template"
	"io"
	"mime"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/shoalnet/shoal/node"
	"github.com/shoalnet/shoal/transfer"
	"github.com/shoalnet/shoal/transfer/manifest"
	"github.com/shoalnet/shoal/transfer/seal"
)

// The content gateway: GET /content/<root>/<path> serves a file of a
// share to plain HTTP clients while it arrives, with Range requests
// (http.ServeContent), the ETag "<root>/<escaped path>" (content addressed, so
// cached copies never go stale) and a Content-Type from the name or the
// first bytes. A directory is listed as HTML, or as JSON when asked
// (Accept: application/json, or ?format=json). It only reads: a root not
// held here is fetched into the node's store (node.Open). At most
// ContentLimit requests are served at once; more get 503.

// DefaultContentLimit is how many content requests are served at once.
const DefaultContentLimit = 64

// KindHeader says whether a content answer is a "file" or a "directory"
// listing (a JSON file and a JSON listing look alike otherwise).
const KindHeader = "X-Shoal-Kind"

// Listing is the JSON form of a directory of a share.
type Listing struct {
	Root    string         `json:"root"`
	Path    string         `json:"path"` // "" for the share's top
	Name    string         `json:"name"` // the share's name
	Entries []ListingEntry `json:"entries"`
}

// ListingEntry is one file or directory in a Listing.
type ListingEntry struct {
	Name string `json:"name"`
	Path string `json:"path"` // in the share
	Dir  bool   `json:"dir,omitempty"`
	Size int64  `json:"size"`
	// ModTime is set only when the share records times.
	ModTime *time.Time `json:"mtime,omitempty"`
}

// SetContentLimit sets how many content requests are served at once
// (default DefaultContentLimit); call it before serving.
func (s *Server) SetContentLimit(k int) {
	if k < 1 {
		k = 1
	}
	s.contentSlots = make(chan struct{}, k)
}

func (s *Server) content(w http.ResponseWriter, r *http.Request) {
	root, err := cid.Decode(r.PathValue("root"))
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("%w: %q is not a CID: %v", node.ErrNotRoot, r.PathValue("root"), err))
		return
	}
	if err := node.CheckRoot(root); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	select {
	case s.contentSlots <- struct{}{}:
		defer func() { <-s.contentSlots }()
	default:
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, fmt.Errorf("%w: %d content requests are being served; try again", ErrBusy, cap(s.contentSlots)))
		return
	}
	if readOnly(r) && !s.n.Holds(root) {
		writeError(w, http.StatusForbidden, fmt.Errorf("%w: it reads content held here only, and %s is not", ErrReadOnly, root))
		return
	}
	ctx := r.Context()
	var key *seal.Key
	if kt := r.Header.Get(KeyHeader); kt != "" {
		k, err := seal.ParseKey(kt)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("%w: %s: %v", ErrBadRequest, KeyHeader, err))
			return
		}
		key = &k
	}
	var m *manifest.Manifest
	if key != nil {
		m, err = s.n.ContentDecrypted(ctx, root)
	} else {
		m, err = s.n.Content(ctx, root)
	}
	if err != nil {
		writeError(w, contentStatus(err), err)
		return
	}
	name := strings.Trim(r.PathValue("path"), "/")
	if name != "" {
		name = path.Clean(name)
	}
	if m.Single && name == m.Name {
		name = ""
	}
	if !m.Single && isDir(m, name) {
		if !strings.HasSuffix(r.URL.Path, "/") {
			// Relative links in the listing need the slash.
			u := *r.URL
			u.Path += "/"
			u.RawPath = ""
			http.Redirect(w, r, u.RequestURI(), http.StatusMovedPermanently)
			return
		}
		s.list(w, r, root, m, name)
		return
	}
	var f contentFile
	if key != nil {
		var sf *node.SealedReader
		if sf, err = s.n.OpenDecrypted(ctx, root, *key, name); err == nil {
			f = sf
			// A wrong key fails on the first segment: say so before
			// the headers go, not as a cut body.
			if sf.Size() > 0 {
				var b [1]byte
				if _, rerr := sf.ReadAt(b[:], 0); rerr != nil {
					sf.Close()
					writeError(w, contentStatus(rerr), rerr)
					return
				}
			}
		}
	} else {
		f, err = s.n.Open(ctx, root, name)
	}
	if err != nil {
		writeError(w, contentStatus(err), err)
		return
	}
	defer f.Close()
	h := w.Header()
	h.Set(KindHeader, "file")
	// Escaped: an entity tag holds no spaces or quotes.
	h.Set("ETag", `"`+root.String()+"/"+(&url.URL{Path: name}).EscapedPath()+`"`)
	h.Set("Cache-Control", "public, max-age=31536000, immutable")
	if key != nil {
		h.Set("Cache-Control", "private, no-store") // plaintext of an encrypted share
	}
	if t := mime.TypeByExtension(path.Ext(f.Name())); t != "" {
		h.Set("Content-Type", t)
	}
	// Range, If-Range, If-None-Match and HEAD; it sniffs the type from
	// the first bytes when the name does not say. Last-Modified only for a
	// share that records times.
	http.ServeContent(w, r, f.Name(), f.ModTime(), f)
}

// KeyHeader carries the key of an encrypted share (the part of its link
// after '#') in a content request: the gateway decrypts the file.
const KeyHeader = "Shoal-Key"

// contentFile is a file of a share being read: Open's or OpenDecrypted's.
type contentFile interface {
	io.ReadSeekCloser
	Name() string
	ModTime() time.Time
}

// contentStatus is the HTTP status of a content error.
func contentStatus(err error) int {
	switch {
	case errors.Is(err, transfer.ErrNotFound), errors.Is(err, transfer.ErrIsDir):
		return http.StatusNotFound
	case errors.Is(err, transfer.ErrNoProviders):
		return http.StatusBadGateway
	case errors.Is(err, node.ErrSealed), errors.Is(err, seal.ErrWrongKey):
		return http.StatusUnauthorized
	case errors.Is(err, transfer.ErrDenied), errors.Is(err, node.ErrRefused), errors.Is(err, ErrReadOnly):
		return http.StatusForbidden
	case errors.Is(err, node.ErrNotRoot):
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

// isDir reports whether name is a directory of m ("" is the top).
func isDir(m *manifest.Manifest, name string) bool {
	if name == "" {
		return true
	}
	for _, e := range m.Entries {
		if e.Path == name {
			return e.Dir
		}
	}
	return false
}

// children lists the entries directly in directory dir of m, directories
// first, then by name.
func children(m *manifest.Manifest, dir string) []ListingEntry {
	prefix := ""
	if dir != "" {
		prefix = dir + "/"
	}
	var out []ListingEntry
	for _, e := range m.Entries {
		rest, ok := strings.CutPrefix(e.Path, prefix)
		if !ok || rest == "" || strings.Contains(rest, "/") {
			continue
		}
		le := ListingEntry{Name: rest, Path: e.Path, Dir: e.Dir, Size: e.Size}
		if !e.ModTime.IsZero() {
			le.ModTime = &e.ModTime
		}
		out = append(out, le)
	}
	slices.SortFunc(out, func(a, b ListingEntry) int {
		if a.Dir != b.Dir {
			if a.Dir {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out
}

func (s *Server) list(w http.ResponseWriter, r *http.Request, root cid.Cid, m *manifest.Manifest, dir string) {
	l := Listing{Root: root.String(), Path: dir, Name: m.Name, Entries: children(m, dir)}
	if l.Entries == nil {
		l.Entries = []ListingEntry{}
	}
	w.Header().Set(KindHeader, "directory")
	w.Header().Set("Vary", "Accept")
	if r.URL.Query().Get("format") == "json" || strings.Contains(r.Header.Get("Accept"), "application/json") {
		writeJSON(w, l)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := listingPage.Execute(w, l); err != nil {
		s.log.Debug("content listing", "root", root, "err", err)
	}
}

var listingPage = template.Must(template.New("listing").Funcs(template.FuncMap{
	"href": url.PathEscape,
	"size": func(n int64) string {
		const unit = 1024
		if n < unit {
			return fmt.Sprintf("%d B", n)
		}
		div, exp := int64(unit), 0
		for k := n / unit; k >= unit; k /= unit {
			div *= unit
			exp++
		}
		return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
	},
}).Parse(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{{.Name}}/{{.Path}}</title>
<style>body{font-family:sans-serif;margin:2em}td{padding:.2em 1em}td.n{text-align:right}small{color:#666}</style>
</head><body>
<h1>{{.Name}}/{{.Path}}</h1>
<p><small>{{.Root}}</small></p>
<table>
{{if .Path}}<tr><td><a href="../">../</a></td><td></td></tr>{{end}}
{{range .Entries}}<tr><td><a href="{{href .Name}}{{if .Dir}}/{{end}}">{{.Name}}{{if .Dir}}/{{end}}</a></td><td class="n">{{if not .Dir}}{{size .Size}}{{end}}</td></tr>
{{end}}</table>
</body></html>
`))
