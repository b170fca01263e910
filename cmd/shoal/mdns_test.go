package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
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
	for i, ns := range []string{nsA, nsB} {
		cmd := exec.Command("ip", "netns", "exec", ns, shoalBin, "--home", homes[i], "daemon",
			"--mdns", "--log-level", "warn", "--listen", fmt.Sprintf("/ip4/10.231.7.%d/tcp/0", i+1))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
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
	eventually(t, "mDNS discovery between the namespaces", func() bool {
		out, _, err := shoal(t, homes[0], "peers", "--json")
		var peers []struct {
			ID string `json:"id"`
		}
		if err != nil || json.Unmarshal([]byte(out), &peers) != nil {
			return false
		}
		for _, p := range peers {
			if p.ID == ids[1] {
				return true
			}
		}
		return false
	})
}
