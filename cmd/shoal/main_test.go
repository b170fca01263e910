package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

var shoalBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "shoal-bin-")
	if err != nil {
		panic(err)
	}
	shoalBin = filepath.Join(dir, "shoal")
	if out, err := exec.Command("go", "build", "-o", shoalBin, ".").CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		panic("build shoal: " + err.Error() + "\n" + string(out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// startDaemon runs `shoal daemon` on loopback and returns its address.
func startDaemon(t *testing.T, home string, args ...string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(shoalBin, append([]string{"--home", home, "daemon", "--listen", "/ip4/127.0.0.1/tcp/0", "--log-level", "warn"}, args...)...)
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
	for sc.Scan() {
		if addr, ok := strings.CutPrefix(sc.Text(), "listening on "); ok {
			go func() {
				for sc.Scan() {
				}
			}()
			return cmd, addr
		}
	}
	t.Fatal("daemon printed no address")
	return nil, ""
}

func TestDaemonStartsJoinsAndStops(t *testing.T) {
	a, addr := startDaemon(t, t.TempDir())
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
}

func TestDaemonBadBootstrap(t *testing.T) {
	out, err := exec.Command(shoalBin, "--home", t.TempDir(), "daemon", "--listen", "/ip4/127.0.0.1/tcp/0", "--bootstrap", "not-an-address").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--bootstrap") {
		t.Fatalf("bad bootstrap: err=%v out=%s", err, out)
	}
}

func TestVersion(t *testing.T) {
	out, err := exec.Command(shoalBin, "version").Output()
	if err != nil || !strings.HasPrefix(string(out), "shoal ") {
		t.Fatalf("version: %q %v", out, err)
	}
}
