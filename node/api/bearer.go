package api

import (
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
// the TCP API listener.
const TokenFileName = "api.token"

// LoadOrCreateBearer returns the bearer token kept in <home>/api.token,
// creating a random one (mode 0600) if there is none.
func LoadOrCreateBearer(home string) (string, error) {
	p := filepath.Join(home, TokenFileName)
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

// RequireBearer serves h only to requests that carry
// "Authorization: Bearer <token>"; others get 401.
func RequireBearer(token string, h http.Handler) http.Handler {
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="shoal"`)
			writeError(w, http.StatusUnauthorized, errors.New("a bearer token is required (see <home>/api.token)"))
			return
		}
		h.ServeHTTP(w, r)
	})
}
