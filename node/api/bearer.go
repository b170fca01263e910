package api

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

// TokenFileName is the file in the home that holds the bearer token of
// the TCP API listener: full control, as the API socket gives.
const TokenFileName = "api.token"

// ReadTokenFileName holds the read-only bearer token of the TCP API
// listener, for dashboards and monitoring: GET and HEAD only, and content
// only of roots held or being fetched here.
const ReadTokenFileName = "api.read.token"

// LoadOrCreateBearer returns the bearer token kept in <home>/api.token,
// creating a random one (mode 0600) if there is none.
func LoadOrCreateBearer(home string) (string, error) {
	return loadOrCreateToken(filepath.Join(home, TokenFileName))
}

// LoadOrCreateReadBearer returns the read-only bearer token kept in
// <home>/api.read.token, creating a random one (mode 0600) if there is
// none.
func LoadOrCreateReadBearer(home string) (string, error) {
	return loadOrCreateToken(filepath.Join(home, ReadTokenFileName))
}

func loadOrCreateToken(p string) (string, error) {
	data, err := os.ReadFile(p)
	if err == nil {
		tok := strings.TrimSpace(string(data))
		if len(tok) < 32 {
			return "", fmt.Errorf("api: %s holds a token of %d characters; want at least 32 (delete it to make a new one)", p, len(tok))
		}
		return tok, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("api: %w", err)
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	tok := hex.EncodeToString(b[:])
	if err := os.WriteFile(p, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("api: %w", err)
	}
	return tok, nil
}

// scopeKey marks the context of a request made with the read-only token.
type scopeKey struct{}

// readOnly reports whether r came with the read-only token.
func readOnly(r *http.Request) bool {
	ro, _ := r.Context().Value(scopeKey{}).(bool)
	return ro
}

// RequireBearer serves h only to requests that carry "Authorization:
// Bearer <token>": full gets everything; read (if not empty) gets GET and
// HEAD requests, and the content gateway only for roots held or being
// fetched here. Others get 401; a read-only request for more gets 403.
func RequireBearer(full, read string, h http.Handler) http.Handler {
	wantFull := []byte("Bearer " + full)
	wantRead := []byte("Bearer " + read)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		switch {
		case isDashboardFile(r):
			// The page and its script; what they show is asked with a token.
			h.ServeHTTP(w, r)
		case subtle.ConstantTimeCompare(got, wantFull) == 1:
			h.ServeHTTP(w, r)
		case read != "" && subtle.ConstantTimeCompare(got, wantRead) == 1:
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				writeError(w, http.StatusForbidden, fmt.Errorf("%w: the read-only token allows GET and HEAD only (%s %s)",
					ErrReadOnly, r.Method, r.URL.Path))
				return
			}
			if strings.HasPrefix(r.URL.Path, "/debug/") {
				writeError(w, http.StatusForbidden, fmt.Errorf("%w: profiles need the full token (%s)", ErrReadOnly, r.URL.Path))
				return
			}
			h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), scopeKey{}, true)))
		default:
			w.Header().Set("WWW-Authenticate", `Bearer realm="shoal"`)
			writeError(w, http.StatusUnauthorized, errors.New("a bearer token is required (see <home>/api.token, or api.read.token to read only)"))
		}
	})
}

// ErrReadOnly: the request needs the full token.
var ErrReadOnly = errors.New("read-only token")
