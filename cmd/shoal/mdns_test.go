package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// netns runs ip(8) with args and fails the test on error.
func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// Two daemons in two network namespaces on a bridge (in a third), both
// with --mdns, find each other. mDNS multicasts on every interface, so it
// is tested only inside namespaces the test creates, never on the host's.
func TestMDNSInNamespaces(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip(8) from iproute2")
	}
	tag := fmt.Sprintf("%d", os.Getpid()%100000)
	nsA, nsB, nsBr := "shoal-a-"+tag, "shoal-b-"+tag, "shoal-br-"+tag
	for _, ns := range []string{nsA, nsB, nsBr} {
		ipCmd(t, "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	}
	ipCmd(t, "-n", nsBr, "link", "add", "br0", "type", "bridge")
	ipCmd(t, "-n", nsBr, "link", "set", "br0", "up")
	for i, ns := range []string{nsA, nsB} {
		in, out := fmt.Sprintf("si%s%d", tag, i), fmt.Sprintf("so%s%d", tag, i)
		ipCmd(t, "link", "add", in, "type", "veth", "peer", "name", out)
		ipCmd(t, "link", "set", in, "netns", ns)
		ipCmd(t, "link", "set", out, "netns", nsBr)
		ipCmd(t, "-n", nsBr, "link", "set", out, "master", "br0", "up")
		ipCmd(t, "-n", ns, "addr", "add", fmt.Sprintf("10.231.7.%d/24", i+1), "dev", in)
		ipCmd(t, "-n", ns, "link", "set", in, "up", "multicast", "on")
		ipCmd(t, "-n", ns, "link", "set", "lo", "up")
	}
	homes := []string{t.TempDir(), t.TempDir()}
	ids := make([]string, 2)
	logs := make([]*syncBuffer, 2)
	for i, ns := range []string{nsA, nsB} {
		cmd := exec.Command("ip", "netns", "exec", ns, shoalBinary(t), "--home", homes[i], "daemon",
			"--mdns", "--log-level", "debug", "--listen", fmt.Sprintf("/ip4/10.231.7.%d/tcp/0", i+1))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		logs[i] = &syncBuffer{}
		cmd.Stderr = logs[i]
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		buf := make([]byte, 4096)
		n, _ := stdout.Read(buf)
		line := strings.SplitN(string(buf[:n]), "\n", 2)[0]
		ids[i] = strings.TrimPrefix(line, "peer ")
		go func() {
			for {
				if _, err := stdout.Read(buf); err != nil {
					return
				}
			}
		}()
	}
	// mDNS queries are spaced 4s, then about 10s, then about 25s apart:
	// allow for a lost first query.
	eventuallyWithin(t, 45*time.Second, "the daemons to find each other by mDNS", func() bool {
		return connected(t, homes[0], ids[1]) || connected(t, homes[1], ids[0])
	}, func() {
		for i, ns := range []string{nsA, nsB} {
			out, _ := exec.Command("ip", "-n", ns, "addr").CombinedOutput()
			t.Logf("namespace %s:\n%s\ndaemon log:\n%s", ns, out, logs[i].String())
		}
	})
}

// connected reports whether the daemon of home lists peer id.
func connected(t *testing.T, home, id string) bool {
	out, _, err := shoal(t, home, "peers", "--json")
	var peers []struct {
		ID string `json:"id"`
	}
	if err != nil || json.Unmarshal([]byte(out), &peers) != nil {
		return false
	}
	for _, p := range peers {
		if p.ID == id {
			return true
		}
	}
	return false
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
