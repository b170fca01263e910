package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSwarmBound(t *testing.T) {
	const mbit = 1_000_000
	const f = 100 << 20 // bytes
	bits := float64(f) * 8
	rep := func(n int, r int64) []int64 {
		out := make([]int64, n)
		for i := range out {
			out[i] = r
		}
		return out
	}
	for _, tc := range []struct {
		name                 string
		seedUp, peerUp, down []int64
		want                 float64
	}{
		{"the seed's upload binds (one peer, fast download)", rep(1, 100*mbit), rep(1, 100*mbit), rep(1, 1000*mbit), bits / 100e6},
		{"the slowest download binds", rep(1, 1000*mbit), rep(3, 1000*mbit), []int64{1000 * mbit, 10 * mbit, 1000 * mbit}, bits / 10e6},
		{"the total upload binds", rep(1, 1000*mbit), rep(15, 100*mbit), rep(15, 1000*mbit), 15 * bits / (1000e6 + 15*100e6)},
		{"15 peers, everything at 100 Mbit/s: F/u_s", rep(1, 100*mbit), rep(15, 100*mbit), rep(15, 100*mbit), bits / 100e6},
		{"31 peers with slow uploads", rep(1, 100*mbit), rep(31, 10*mbit), rep(31, 100*mbit), 31 * bits / (100e6 + 31*10e6)},
		{"k seeders add up", rep(4, 100*mbit), rep(1, 1000*mbit), rep(1, 1000*mbit), bits / 400e6},
		{"k seeders, the download binds", rep(4, 100*mbit), rep(1, 100*mbit), rep(1, 200*mbit), bits / 200e6},
		{"uncapped peers: the seed binds", rep(1, 100*mbit), rep(4, 0), rep(4, 0), bits / 100e6},
		{"nothing capped", rep(1, 0), rep(4, 0), rep(4, 0), 0},
	} {
		got := swarmBound(f, tc.seedUp, tc.peerUp, tc.down)
		if math.Abs(got-tc.want) > 1e-9*max(1, tc.want) {
			t.Errorf("%s: bound %.6f s, want %.6f s", tc.name, got, tc.want)
		}
	}
}

func TestParseRate(t *testing.T) {
	for in, want := range map[string]int64{
		"100mbit": 100e6, "1gbit": 1e9, "500kbit": 500e3, "2.5gbit": 2.5e9, "none": 0, "0": 0, "64000": 64000,
	} {
		got, err := parseRate(in)
		if err != nil || got != want {
			t.Errorf("parseRate(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "fast", "-1mbit", "10bit", "1mbps"} {
		if _, err := parseRate(in); err == nil {
			t.Errorf("parseRate(%q) succeeded", in)
		}
	}
	if s := formatRate(100e6); s != "100mbit" {
		t.Errorf("formatRate(100e6) = %q", s)
	}
	// A 64 KiB GSO packet always fits the bucket; at 1 Gbit/s, 2 ms of it.
	if b, _ := tbfParams(100e6); b != 64<<10 {
		t.Errorf("burst at 100mbit: %d", b)
	}
	if b, _ := tbfParams(1e9); b != 250_000 {
		t.Errorf("burst at 1gbit: %d", b)
	}
}

// TestSwarmTestbed runs the swarm scenario end to end on a tiny file: a
// seed and two peers in network namespaces, every link at 50 Mbit/s. It
// needs root (CI runs as root).
func TestSwarmTestbed(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the namespace testbed needs root (it creates network namespaces); CI runs it as root")
	}
	if err := checkRoot(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	prefix := fmt.Sprintf("sht%d", os.Getpid()%100000)
	dir, out := t.TempDir(), t.TempDir()
	jsonPath, pngPath := filepath.Join(out, "swarm.json"), filepath.Join(out, "swarm.png")
	const size = 4 << 20
	const rate = 50_000_000
	var buf bytes.Buffer
	_, err := runTestbed(ctx, testbedOptions{
		Scenario: scSwarm, Ns: []int{2}, Seeders: 1, Size: size,
		SeedUp: rate, SeedDown: rate, PeerUp: rate, PeerDown: rate,
		Runs: 1, HTTP: true, Dir: dir, JSON: jsonPath, PNG: pngPath, Prefix: prefix, LogLevel: "warn",
		ReadyTimeout: time.Minute, FetchTimeout: time.Minute,
		Args: []string{"swarm", "--n", "2"}, Out: &buf,
	})
	t.Log(buf.String())
	if err != nil {
		t.Fatal(err)
	}

	var res TestbedResult
	data, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Runs) != 1 {
		t.Fatalf("%d runs in the JSON, want 1", len(res.Runs))
	}
	run := res.Runs[0]
	for phase, pr := range map[string]*PhaseRun{"shoal": run.Shoal, "http": run.HTTP} {
		if pr == nil {
			t.Fatalf("no %s phase in the JSON", phase)
		}
		if len(pr.Completions) != 2 {
			t.Fatalf("%s: %d completions, want one per peer (2)", phase, len(pr.Completions))
		}
		hosts := map[string]bool{}
		for _, c := range pr.Completions {
			hosts[c.Host] = true
			// Each copy was hashed in full before it was removed.
			if !c.Verified || c.SHA256 != res.SourceHash || c.Seconds <= 0 {
				t.Errorf("%s, %s: verified %v, SHA-256 %s (source %s), %.2fs", phase, c.Host, c.Verified, c.SHA256, res.SourceHash, c.Seconds)
			}
			if phase == "shoal" && c.FromSeeders+c.FromPeers != size {
				t.Errorf("%s: %d bytes from the seed and %d from peers, want %d in all", c.Host, c.FromSeeders, c.FromPeers, size)
			}
		}
		if !hosts["p1"] || !hosts["p2"] {
			t.Errorf("%s: completions of %v, want p1 and p2", phase, hosts)
		}
	}
	// max(F/u_s, F/d_min, N·F/(u_s+Σu_i)) = F/u_s here.
	if want := float64(size) * 8 / rate; math.Abs(run.BoundSeconds-want) > 1e-9 {
		t.Errorf("bound %.6f s, want %.6f s", run.BoundSeconds, want)
	}
	if run.LastOverBound < 0.9 {
		t.Errorf("the last peer finished at %.3f x the bound: faster than the links allow, so the shaping is off", run.LastOverBound)
	}
	if st, err := os.Stat(pngPath); err != nil || st.Size() == 0 {
		t.Errorf("no plot: %v", err)
	}

	// Nothing is left: no namespace, link or process of the run, no file.
	nss, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(nss), prefix+"-") {
		t.Errorf("namespaces left behind:\n%s", nss)
	}
	links, err := exec.Command("ip", "link").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{prefix, "v-seed", "v-p1", "v-p2", bridgeName} {
		if strings.Contains(string(links), name) {
			t.Errorf("link %q left behind:\n%s", name, links)
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		cmdline, _ := os.ReadFile(p)
		if bytes.Contains(cmdline, []byte(dir)) {
			t.Errorf("process left behind: %s", bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))
		}
	}
	checkEmpty(t, dir)
}
