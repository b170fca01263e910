package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binDir holds the shoal binary, built on first use by shoalBinary so that
// fuzz workers and tests that never run it do not pay for a build.
var (
	binDir   string
	binOnce  sync.Once
	binPath  string
	binError error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// shoalBinary returns the path of a shoal binary built from this package.
func shoalBinary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "shoal-bin-")
		if err != nil {
			binError = err
			return
		}
		binDir = dir
		path := filepath.Join(dir, "shoal")
		if out, err := exec.Command("go", "build", "-o", path, ".").CombinedOutput(); err != nil {
			binError = fmt.Errorf("build shoal: %v\n%s", err, out)
			return
		}
		binPath = path
	})
	if binError != nil {
		t.Fatal(binError)
	}
	return binPath
}

// startDaemon runs `shoal daemon` on loopback and returns its address.
func startDaemon(t *testing.T, home string, args ...string) (*exec.Cmd, string) {
	t.Helper()
	cmd, addr, _ := startDaemonEnv(t, home, nil, args...)
	return cmd, addr
}

// startDaemonEnv is startDaemon with env added to the daemon's
// environment; rest yields what the daemon printed on stdout after its
// address, once it exits.
func startDaemonEnv(t *testing.T, home string, env []string, args ...string) (*exec.Cmd, string, <-chan string) {
	t.Helper()
	cmd := exec.Command(shoalBinary(t), append([]string{"--home", home, "daemon", "--listen", "/ip4/127.0.0.1/tcp/0", "--log-level", "warn"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	_, addr, rest := startDaemonCmd(t, cmd)
	return cmd, addr, rest
}

// startDaemonCmd starts cmd, a `shoal daemon`, and returns the peer ID
// and the first address it prints once it listens; rest yields what it
// printed on stdout after that, once it exits. The daemon is killed when
// the test ends.
func startDaemonCmd(t *testing.T, cmd *exec.Cmd) (id, addr string, rest <-chan string) {
	t.Helper()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	sc := bufio.NewScanner(out)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "peer "); ok {
			id = v
		}
		if addr, ok := strings.CutPrefix(sc.Text(), "listening on "); ok {
			ch := make(chan string, 1)
			go func() {
				var b strings.Builder
				for sc.Scan() {
					b.WriteString(sc.Text())
					b.WriteByte('\n')
				}
				ch <- b.String()
			}()
			return id, addr, ch
		}
	}
	t.Fatal("daemon printed no address")
	return "", "", nil
}

func TestDaemonStartsJoinsAndStops(t *testing.T) {
	homeA := t.TempDir()
	a, addr := startDaemon(t, homeA)
	if !strings.Contains(addr, "/p2p/12D3KooW") {
		t.Fatalf("address without peer id: %s", addr)
	}
	b, _ := startDaemon(t, t.TempDir(), "--bootstrap", addr)
	for _, c := range []*exec.Cmd{b, a} {
		if err := c.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		if err := c.Wait(); err != nil {
			t.Fatalf("daemon exit after SIGINT: %v", err)
		}
	}
	if _, err := os.Stat(filepath.Join(homeA, "api.sock")); !os.IsNotExist(err) {
		t.Fatalf("api.sock left behind: %v", err)
	}
}

func TestDaemonBadBootstrap(t *testing.T) {
	out, err := exec.Command(shoalBinary(t), "--home", t.TempDir(), "daemon", "--listen", "/ip4/127.0.0.1/tcp/0", "--bootstrap", "not-an-address").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "bootstrap") {
		t.Fatalf("bad bootstrap: err=%v out=%s", err, out)
	}
}

func TestVersion(t *testing.T) {
	out, err := exec.Command(shoalBinary(t), "version").Output()
	if err != nil || !strings.HasPrefix(string(out), "shoal ") {
		t.Fatalf("version: %q %v", out, err)
	}
}

// id with no daemon: the peer ID alone on stdout (for scripts), the note
// about addresses on stderr; the same ID as the daemon reports later.
func TestIDWithoutDaemon(t *testing.T) {
	home := t.TempDir()
	out, errOut, err := shoal(t, home, "id")
	if err != nil {
		t.Fatalf("id: %v\n%s", err, errOut)
	}
	id := strings.TrimSuffix(out, "\n")
	if strings.ContainsAny(id, "\n (") || !strings.HasPrefix(id, "12D3KooW") {
		t.Fatalf("stdout is %q; want the peer ID alone on one line", out)
	}
	if !strings.HasPrefix(errOut, "(no daemon running") || !strings.HasSuffix(errOut, ")\n") {
		t.Fatalf("stderr is %q; want the note on a line of its own", errOut)
	}
	_, addr := startDaemon(t, home)
	if !strings.HasSuffix(addr, "/p2p/"+id) {
		t.Fatalf("the daemon listens as %s, id said %s", addr, id)
	}
}

// shoal runs the CLI and returns its stdout and stderr.
func shoal(t *testing.T, home string, args ...string) (string, string, error) {
	t.Helper()
	cmd := exec.Command(shoalBinary(t), append([]string{"--home", home}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

func mustShoal(t *testing.T, home string, args ...string) string {
	t.Helper()
	out, errOut, err := shoal(t, home, args...)
	if err != nil {
		t.Fatalf("shoal %v: %v\n%s", args, err, errOut)
	}
	return out
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func randomFile(t *testing.T, size int) string {
	t.Helper()
	data := make([]byte, size)
	rand.Read(data)
	p := filepath.Join(t.TempDir(), "payload.bin")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// eventually polls cond until it holds or 20s pass: gossip has no
// completion event to wait on from outside the process.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	eventuallyWithin(t, 20*time.Second, what, cond, nil)
}

// eventuallyWithin polls cond every 100ms until it holds or limit passes;
// then it calls onFail (if set) to log what helps, and fails the test.
func eventuallyWithin(t *testing.T, limit time.Duration, what string, cond func() bool, onFail func()) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			if onFail != nil {
				onFail()
			}
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Three daemons on one machine: share on two, fetch on the third with the
// CLI, list everywhere.
func TestClusterWalkthrough(t *testing.T) {
	homeA, homeB, homeC := t.TempDir(), t.TempDir(), t.TempDir()
	if out := mustShoal(t, homeA, "init", "--network", "demo"); !strings.Contains(out, "peer 12D3KooW") {
		t.Fatalf("init: %s", out)
	}
	if _, _, err := shoal(t, homeA, "init"); err == nil {
		t.Fatal("init of an initialised home succeeded")
	}
	if st, err := os.Stat(filepath.Join(homeA, "identity.key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("identity.key: %v %v", st, err)
	}
	_, addrA := startDaemon(t, homeA)
	_, addrB := startDaemon(t, homeB, "--network", "demo", "--bootstrap", addrA)
	startDaemon(t, homeC, "--network", "demo", "--bootstrap", addrA)

	var id struct {
		ID      string   `json:"id"`
		Addrs   []string `json:"addrs"`
		Running bool     `json:"running"`
	}
	if err := json.Unmarshal([]byte(mustShoal(t, homeA, "id", "--json")), &id); err != nil || !id.Running || len(id.Addrs) == 0 || !strings.HasSuffix(addrA, id.ID) {
		t.Fatalf("id --json: %+v %v", id, err)
	}

	src := randomFile(t, 12<<20+5)
	copyB := filepath.Join(t.TempDir(), "payload.bin")
	data, _ := os.ReadFile(src)
	os.WriteFile(copyB, data, 0o644)
	root := lastLine(mustShoal(t, homeA, "share", src))
	if !strings.HasPrefix(root, "bafy") {
		t.Fatalf("share printed %q", root)
	}
	if got := strings.TrimSpace(mustShoal(t, homeB, "share", "--quiet", copyB)); got != root {
		t.Fatalf("share --quiet printed %q, want only %s", got, root)
	}

	dst := filepath.Join(t.TempDir(), "fetched.bin")
	mustShoal(t, homeC, "fetch", root, "-o", dst, "--peer", addrA, "--peer", addrB)
	got, err := os.ReadFile(dst)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("fetched copy differs (%v)", err)
	}
	// Without --force the destination is not replaced.
	if _, errOut, err := shoal(t, homeC, "fetch", root, "-o", dst, "--peer", addrA); err == nil || !strings.Contains(errOut, "--force") {
		t.Fatalf("existing destination: %v %s", err, errOut)
	}
	mustShoal(t, homeC, "fetch", root, "-o", dst, "--peer", addrA, "--force", "--quiet")

	for i, home := range []string{homeA, homeB, homeC} {
		eventually(t, "the share in catalog "+strconv.Itoa(i), func() bool {
			var entries []struct {
				Root string `json:"root"`
				Name string `json:"name"`
			}
			out, _, err := shoal(t, home, "ls", "--json")
			if err != nil || json.Unmarshal([]byte(out), &entries) != nil {
				return false
			}
			for _, e := range entries {
				if e.Root == root && e.Name == "payload.bin" {
					return true
				}
			}
			return false
		})
	}
	var peers []map[string]any
	if err := json.Unmarshal([]byte(mustShoal(t, homeA, "peers", "--json")), &peers); err != nil || len(peers) < 2 {
		t.Fatalf("peers --json: %v %v", peers, err)
	}
	var st struct {
		ID      string `json:"id"`
		Network string `json:"network"`
		Shares  int    `json:"shares"`
	}
	if err := json.Unmarshal([]byte(mustShoal(t, homeC, "status", "--json")), &st); err != nil || st.Network != "demo" || st.Shares != 1 {
		t.Fatalf("status --json: %+v %v", st, err)
	}
	if out := mustShoal(t, homeA, "unshare", root); !strings.Contains(out, root) {
		t.Fatalf("unshare: %s", out)
	}
}

// fetch with no daemon running starts a node of its own.
func TestFetchWithoutDaemon(t *testing.T) {
	homeA := t.TempDir()
	_, addrA := startDaemon(t, homeA)
	src := randomFile(t, 3<<20)
	root := lastLine(mustShoal(t, homeA, "share", "--quiet", src))
	dir := t.TempDir()
	cmd := exec.Command(shoalBinary(t), "--home", t.TempDir(), "fetch", root, "--peer", addrA)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("fetch: %v\n%s", err, out)
	}
	want, _ := os.ReadFile(src)
	got, err := os.ReadFile(filepath.Join(dir, "payload.bin"))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("fetched into the current directory under the share's name: %v", err)
	}
}

func TestCLIErrors(t *testing.T) {
	home := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"share", "/etc/hostname"}, "no shoal daemon is running"},
		{[]string{"status"}, "start one with: shoal --home"},
		{[]string{"fetch", "not-a-cid"}, "malformed CID"},
		{[]string{"fetch", "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"}, "share roots are CIDv1 dag-cbor"},
		{[]string{"fetch", "bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy", "-o", filepath.Join(t.TempDir(), "x")}, "no providers"},
		{[]string{"fetch", "bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy", "--peer", "nonsense"}, "--peer"},
	} {
		_, errOut, err := shoal(t, home, tc.args...)
		if err == nil || !strings.Contains(errOut, tc.want) {
			t.Errorf("shoal %v: err=%v, stderr %q, want it to say %q", tc.args, err, errOut, tc.want)
		}
	}

	// A path to share that does not exist.
	_, _ = startDaemon(t, home)
	if _, errOut, err := shoal(t, home, "share", filepath.Join(t.TempDir(), "missing")); err == nil || !strings.Contains(errOut, "no such file") {
		t.Errorf("share of a missing path: %v %q", err, errOut)
	}
	// A second daemon on the same home.
	if _, errOut, err := shoal(t, home, "daemon", "--listen", "/ip4/127.0.0.1/tcp/0"); err == nil || !strings.Contains(errOut, "another shoal daemon is running") {
		t.Errorf("second daemon: %v %q", err, errOut)
	}
	// A home that cannot be created.
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	if _, errOut, err := shoal(t, filepath.Join(file, "home"), "init"); err == nil || !strings.Contains(errOut, "not a directory") {
		t.Errorf("unwritable home: %v %q", err, errOut)
	}
	// A port in use.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	_, errOut, err := shoal(t, t.TempDir(), "daemon", "--listen", "/ip4/127.0.0.1/tcp/"+strconv.Itoa(port))
	if err == nil || !strings.Contains(errOut, "port in use") {
		t.Errorf("port in use: %v %q", err, errOut)
	}
}

// A daemon killed with SIGKILL in the middle of a fetch loses nothing that
// resume cannot recover: after a restart the fetch completes and fetches
// only what was missing.
func TestKill9ResumesFetch(t *testing.T) {
	homeA, homeC := t.TempDir(), t.TempDir()
	_, addrA := startDaemon(t, homeA, "--upload-rate", strconv.Itoa(8<<20))
	src := randomFile(t, 32<<20)
	root := lastLine(mustShoal(t, homeA, "share", "--quiet", src))
	c1, _ := startDaemon(t, homeC)
	dst := filepath.Join(t.TempDir(), "out.bin")
	bg := exec.Command(shoalBinary(t), "--home", homeC, "fetch", root, "-o", dst, "--peer", addrA, "--quiet")
	if err := bg.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { bg.Process.Kill(); bg.Wait() }()
	eventually(t, "half of the fetch, some of it checkpointed", func() bool {
		var st struct {
			Fetches []struct {
				Bytes   int64 `json:"bytes"`
				Durable int64 `json:"durable_chunks"`
			} `json:"fetches"`
		}
		out, _, err := shoal(t, homeC, "status", "--json")
		return err == nil && json.Unmarshal([]byte(out), &st) == nil && len(st.Fetches) == 1 &&
			st.Fetches[0].Bytes >= 16<<20 && st.Fetches[0].Durable >= 4
	})
	c1.Process.Signal(syscall.SIGKILL)
	c1.Wait()
	bg.Wait()

	startDaemon(t, homeC)
	out := mustShoal(t, homeC, "fetch", root, "-o", dst, "--peer", addrA)
	want, _ := os.ReadFile(src)
	got, err := os.ReadFile(dst)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("fetch after kill -9: %v", err)
	}
	var resumed int
	for _, line := range strings.Split(out, "\n") {
		if i := strings.Index(line, " chunk(s) resumed"); i > 0 {
			f := strings.Fields(line[:i])
			resumed, _ = strconv.Atoi(f[len(f)-1])
		}
	}
	// At least the chunks of the last checkpoint before the kill survive.
	if resumed < 4 {
		t.Fatalf("resumed %d chunks after kill -9, want at least 4:\n%s", resumed, out)
	}
}

func TestMembersCommand(t *testing.T) {
	homeA, homeB := t.TempDir(), t.TempDir()
	_, addrA := startDaemon(t, homeA)
	b, _ := startDaemon(t, homeB, "--bootstrap", addrA)
	type member struct {
		ID    string `json:"id"`
		State string `json:"state"`
		Meta  struct {
			Addrs []string `json:"addrs"`
		} `json:"meta"`
	}
	members := func(home string) []member {
		var ms []member
		out, _, err := shoal(t, home, "members", "--json")
		if err != nil || json.Unmarshal([]byte(out), &ms) != nil {
			return nil
		}
		return ms
	}
	eventually(t, "both members alive on A", func() bool {
		ms := members(homeA)
		alive := 0
		for _, m := range ms {
			if m.State == "alive" && len(m.Meta.Addrs) > 0 {
				alive++
			}
		}
		return alive == 2
	})
	if out := mustShoal(t, homeA, "status"); !strings.Contains(out, "members:      2 alive") {
		t.Fatalf("status: %s", out)
	}
	// B leaves gracefully: A records "left".
	b.Process.Signal(syscall.SIGINT)
	b.Wait()
	eventually(t, "B recorded as left on A", func() bool {
		for _, m := range members(homeA) {
			if m.State == "left" {
				return true
			}
		}
		return false
	})
}

func TestPrivateNetworkCLI(t *testing.T) {
	homeA, homeB, homeC := t.TempDir(), t.TempDir(), t.TempDir()
	if out := mustShoal(t, homeA, "init", "--swarm-key"); !strings.Contains(out, "swarm.key") {
		t.Fatalf("init --swarm-key: %s", out)
	}
	key, err := os.ReadFile(filepath.Join(homeA, "swarm.key"))
	if err != nil || !strings.HasPrefix(string(key), "/key/swarm/psk/1.0.0/") {
		t.Fatalf("swarm.key: %q %v", key, err)
	}
	os.WriteFile(filepath.Join(homeB, "swarm.key"), key, 0o600)
	_, addrA := startDaemon(t, homeA)
	src := randomFile(t, 2<<20)
	root := lastLine(mustShoal(t, homeA, "share", "--quiet", src))
	// With the key: fetch works. Without: no connection, no providers.
	mustShoal(t, homeB, "fetch", root, "-o", filepath.Join(t.TempDir(), "ok"), "--peer", addrA)
	if _, errOut, err := shoal(t, homeC, "fetch", root, "-o", filepath.Join(t.TempDir(), "no"), "--peer", addrA); err == nil || !strings.Contains(errOut, "no providers") {
		t.Fatalf("outsider fetch: %v %s", err, errOut)
	}
}

// cat streams a file of a share held by another daemon, through the local
// daemon or a node of its own; the daemon's TCP listener serves the same
// bytes to a plain HTTP client with Range and the bearer token.
func TestCatCommand(t *testing.T) {
	homeA, homeB := t.TempDir(), t.TempDir()
	_, addrA := startDaemon(t, homeA)
	apiAddr := freePort(t)
	startDaemon(t, homeB, "--bootstrap", addrA, "--api-listen", apiAddr)
	dir := filepath.Join(t.TempDir(), "set")
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	src := randomFile(t, 3<<20+11)
	data, _ := os.ReadFile(src)
	if err := os.WriteFile(filepath.Join(dir, "sub", "data.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "note.txt"), []byte("read me\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	root := lastLine(mustShoal(t, homeA, "share", "--quiet", dir))

	if out := mustShoal(t, homeB, "cat", root+"/sub/data.bin"); out != string(data) {
		t.Fatalf("cat through the daemon: %d bytes, want %d", len(out), len(data))
	}
	if out := mustShoal(t, homeB, "cat", root+"/note.txt"); out != "read me\n" {
		t.Fatalf("cat note.txt: %q", out)
	}
	if _, errOut, err := shoal(t, homeB, "cat", root); err == nil || !strings.Contains(errOut, "is a directory") || !strings.Contains(errOut, "note.txt") {
		t.Fatalf("cat of a directory: %v %s", err, errOut)
	}
	if _, errOut, err := shoal(t, homeB, "cat", root+"/missing"); err == nil || !strings.Contains(errOut, "no file missing") {
		t.Fatalf("cat of a missing file: %v %s", err, errOut)
	}
	if _, errOut, err := shoal(t, homeB, "cat", "bafkqaaa"); err == nil || !strings.Contains(errOut, "not a share root") {
		t.Fatalf("cat of a raw CID: %v %s", err, errOut)
	}
	// Without a daemon: a node of its own.
	cmd := exec.Command(shoalBinary(t), "--home", t.TempDir(), "cat", root+"/sub/data.bin", "--bootstrap", addrA)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil || !bytes.Equal(out.Bytes(), data) {
		t.Fatalf("cat without a daemon: %v, %d bytes\n%s", err, out.Len(), errb.String())
	}

	// HTTP over the TCP listener.
	tok, err := os.ReadFile(filepath.Join(homeB, "api.token"))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+apiAddr+"/content/"+root+"/sub/data.bin", nil)
	req.Header.Set("Range", "bytes=1048570-1048585")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without the token: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, data[1048570:1048586]) {
		t.Fatalf("range over HTTP: %s, %d bytes, %v", resp.Status, len(body), err)
	}
}

// A directory holding a symbolic link and a named pipe is refused, with
// the way out named; --skip-special shares the rest and says what it left
// out.
func TestShareSkipSpecial(t *testing.T) {
	home := t.TempDir()
	startDaemon(t, home)
	dir := filepath.Join(t.TempDir(), "set")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "real.txt"), []byte("real\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("real.txt", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "pipe"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, errOut, err := shoal(t, home, "share", dir); err == nil || !strings.Contains(errOut, "--skip-special") {
		t.Fatalf("share of a directory with special files: %v\n%s", err, errOut)
	}
	out, errOut, err := shoal(t, home, "share", "--skip-special", dir)
	if err != nil {
		t.Fatalf("share --skip-special: %v\n%s", err, errOut)
	}
	if !strings.Contains(errOut, "left out: link (symbolic link)") || !strings.Contains(errOut, "left out: pipe (named pipe)") ||
		!strings.Contains(out, "2 entries") {
		t.Fatalf("what was left out is not said:\nstdout %s\nstderr %s", out, errOut)
	}
	root := lastLine(out)
	if _, errOut, err := shoal(t, home, "cat", root); err == nil || !strings.Contains(errOut, "holds: real.txt") || strings.Contains(errOut, "link") {
		t.Fatalf("the share holds more than real.txt: %v %s", err, errOut)
	}
}

// share --preserve-times: a fetch by another process restores the times
// of files and directories.
func TestSharePreserveTimes(t *testing.T) {
	home := t.TempDir()
	_, addr := startDaemon(t, home)
	dir := filepath.Join(t.TempDir(), "dated")
	f := filepath.Join(dir, "sub", "f.txt")
	if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f, []byte("dated\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fileTime := time.Date(2012, 12, 12, 12, 12, 12, 120000000, time.UTC)
	dirTime := fileTime.Add(time.Hour)
	if err := os.Chtimes(f, fileTime, fileTime); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(filepath.Dir(f), dirTime, dirTime); err != nil {
		t.Fatal(err)
	}
	root := lastLine(mustShoal(t, home, "share", "--quiet", "--preserve-times", dir))
	dst := filepath.Join(t.TempDir(), "copy")
	mustShoal(t, t.TempDir(), "fetch", root, "--peer", addr, "-o", dst, "--quiet")
	for p, want := range map[string]time.Time{"sub/f.txt": fileTime, "sub": dirTime} {
		st, err := os.Stat(filepath.Join(dst, p))
		if err != nil {
			t.Fatal(err)
		}
		if !st.ModTime().Equal(want) {
			t.Errorf("%s: modified %v; want %v", p, st.ModTime(), want)
		}
	}
}

// fetch --explain says how it went: providers, each peer's path, and the
// limit (here: one provider).
func TestFetchExplain(t *testing.T) {
	homeA, homeB := t.TempDir(), t.TempDir()
	_, addrA := startDaemon(t, homeA)
	startDaemon(t, homeB, "--bootstrap", addrA)
	root := lastLine(mustShoal(t, homeA, "share", "--quiet", randomFile(t, 3<<20)))
	out := mustShoal(t, homeB, "fetch", root, "--peer", addrA, "-o", filepath.Join(t.TempDir(), "x"), "--explain")
	for _, want := range []string{"how the fetch went:", "providers: the first one answered after", "the manifest was here after",
		"direct tcp", "3 chunk(s)", "what limited it: one provider served everything"} {
		if !strings.Contains(out, want) {
			t.Errorf("--explain lacks %q:\n%s", want, out)
		}
	}
	// On failure too, with the error.
	out, _, err := shoal(t, homeB, "fetch", "bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy", "--explain",
		"-o", filepath.Join(t.TempDir(), "y"))
	if err == nil || !strings.Contains(out, "what limited it: no provider served a chunk") {
		t.Fatalf("--explain of a failed fetch: %v\n%s", err, out)
	}
}

// graph draws the members and their connections, in dot and in Mermaid.
func TestGraphCommand(t *testing.T) {
	homeA, homeB, homeC := t.TempDir(), t.TempDir(), t.TempDir()
	_, addrA := startDaemon(t, homeA)
	startDaemon(t, homeB, "--bootstrap", addrA)
	startDaemon(t, homeC, "--bootstrap", addrA)
	var out string
	eventuallyWithin(t, time.Minute, "three members, each connected to the two others", func() bool {
		out = mustShoal(t, homeB, "graph")
		return strings.Count(out, " -- ") == 3 && strings.Count(out, "fillcolor=") == 3
	}, func() { t.Log(out) })
	if !strings.HasPrefix(out, "graph shoal {") || !strings.Contains(out, "alive") {
		t.Fatalf("dot:\n%s", out)
	}
	mer := mustShoal(t, homeC, "graph", "--format", "mermaid")
	if !strings.HasPrefix(mer, "graph LR") || strings.Count(mer, " --- ") != 3 || !strings.Contains(mer, "classDef alive") {
		t.Fatalf("mermaid:\n%s", mer)
	}
	if _, errOut, err := shoal(t, homeC, "graph", "--format", "png"); err == nil || !strings.Contains(errOut, "dot, mermaid or json") {
		t.Fatalf("bad format: %v %s", err, errOut)
	}
}
