package main

import (
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// peerOf returns the peer ID that `shoal init` printed.
func peerOf(t *testing.T, initOut string) string {
	t.Helper()
	for _, l := range strings.Split(initOut, "\n") {
		if id, ok := strings.CutPrefix(l, "peer "); ok {
			return id
		}
	}
	t.Fatalf("no peer line in %q", initOut)
	return ""
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestClosedNetworkCLI(t *testing.T) {
	homeA, homeP, homeR, homeO := t.TempDir(), t.TempDir(), t.TempDir(), t.TempDir()
	out := mustShoal(t, homeA, "init", "--network", "corp", "--admin")
	admin := peerOf(t, out)
	if !strings.Contains(out, "closed network") {
		t.Fatalf("init --admin: %s", out)
	}
	pub := peerOf(t, mustShoal(t, homeP, "init", "--network", "corp", "--admins", admin))
	reader := peerOf(t, mustShoal(t, homeR, "init", "--network", "corp", "--admins", admin))
	mustShoal(t, homeO, "init", "--network", "corp", "--admins", admin)

	// Only an admin issues.
	if _, errOut, err := shoal(t, homeP, "token", "issue", "--role", "reader", "--peer", reader); err == nil || !strings.Contains(errOut, "not an admin") {
		t.Fatalf("non-admin issue: %v %s", err, errOut)
	}
	pubTok := lastLine(mustShoal(t, homeA, "token", "issue", "--role", "publisher", "--peer", pub))
	readTok := lastLine(mustShoal(t, homeA, "token", "issue", "--role", "reader", "--peer", reader, "--expires", "1h"))
	if _, errOut, err := shoal(t, homeR, "token", "add", pubTok); err == nil || !strings.Contains(errOut, "names another peer") {
		t.Fatalf("adding another peer's token: %v %s", err, errOut)
	}
	mustShoal(t, homeP, "token", "add", pubTok)
	mustShoal(t, homeR, "token", "add", readTok)
	if out := mustShoal(t, homeR, "token", "show"); !strings.Contains(out, "role:     reader") {
		t.Fatalf("token show: %s", out)
	}

	apiAddr := freePort(t)
	_, addrA := startDaemon(t, homeA, "--api-listen", apiAddr)
	_, addrP := startDaemon(t, homeP, "--bootstrap", addrA)
	src := randomFile(t, 3<<20)
	root := lastLine(mustShoal(t, homeP, "share", "--quiet", src))

	// The reader fetches (with an in-process node); an outsider is refused.
	dst := filepath.Join(t.TempDir(), "got")
	mustShoal(t, homeR, "fetch", root, "-o", dst, "--peer", addrP)
	same(t, src, dst)
	if _, errOut, err := shoal(t, homeO, "fetch", root, "-o", filepath.Join(t.TempDir(), "no"), "--peer", addrP); err == nil || !strings.Contains(errOut, "no token") {
		t.Fatalf("outsider fetch: %v %s", err, errOut)
	}

	// A share limited to the publishers: the reader gets "denied".
	src2 := randomFile(t, 1<<20)
	root2 := lastLine(mustShoal(t, homeP, "share", "--quiet", "--allow", "publisher", src2))
	if _, errOut, err := shoal(t, homeR, "fetch", root2, "-o", filepath.Join(t.TempDir(), "no2"), "--peer", addrP); err == nil || !strings.Contains(errOut, "denied") {
		t.Fatalf("reader fetching a publishers' share: %v %s", err, errOut)
	}

	// The TCP API needs the bearer token.
	bearer, err := os.ReadFile(filepath.Join(homeA, "api.token"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		auth string
		want int
	}{{"", http.StatusUnauthorized}, {"Bearer " + strings.TrimSpace(string(bearer)), http.StatusOK}} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+apiAddr+"/v1/status", nil)
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Fatalf("TCP API with %q: %d, want %d", c.auth, resp.StatusCode, c.want)
		}
	}

	// Revocation reaches the publisher; the reader is refused from then on.
	if out := mustShoal(t, homeA, "token", "revoke", readTok); !strings.Contains(out, "revoked token") {
		t.Fatalf("revoke: %s", out)
	}
	eventually(t, "the publisher to learn the revocation", func() bool {
		var st struct {
			Access struct {
				Revocations int `json:"revocations"`
			} `json:"access"`
		}
		return json.Unmarshal([]byte(mustShoal(t, homeP, "status", "--json")), &st) == nil && st.Access.Revocations == 1
	})
	if _, errOut, err := shoal(t, homeR, "fetch", root, "-o", filepath.Join(t.TempDir(), "again"), "--peer", addrP); err == nil || !strings.Contains(errOut, "revoked") {
		t.Fatalf("revoked reader's fetch: %v %s", err, errOut)
	}
}

func same(t *testing.T, a, b string) {
	t.Helper()
	da, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	db, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if string(da) != string(db) {
		t.Fatalf("%s and %s differ", a, b)
	}
}
