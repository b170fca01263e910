package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// natNet is a small internet in network namespaces the test creates: a
// public segment (a bridge in nsPub, 11.0.0.0/24, where the relay lives
// at 11.0.0.1), and two sites, each a host on a private LAN behind a NAT
// router (iptables MASQUERADE, and a firewall that drops what comes in
// unasked, as home routers do) whose public side is on the segment. The
// public addresses are ordinary global ones so that libp2p treats them as
// public; no namespace has a route out, so nothing leaves them.
type natNet struct {
	pub   string    // the public segment and the relay
	hosts [2]string // the hosts behind the NATs
	nats  [2]string // the NAT routers
}

const relayIP = "11.0.0.1"

func natPublicIP(i int) string { return fmt.Sprintf("11.0.0.%d", i+2) }

func newNATNet(t *testing.T, tag string) natNet {
	t.Helper()
	for _, tool := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("needs %s (Debian packages iproute2 and iptables; .ci/run installs them)", tool)
		}
	}
	n := natNet{pub: "shoal-pub-" + tag}
	all := []string{n.pub}
	for i := range 2 {
		n.hosts[i] = fmt.Sprintf("shoal-h%d-%s", i, tag)
		n.nats[i] = fmt.Sprintf("shoal-n%d-%s", i, tag)
		all = append(all, n.hosts[i], n.nats[i])
	}
	for _, ns := range all {
		ipCmd(t, "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		ipCmd(t, "-n", ns, "link", "set", "lo", "up")
	}
	ipCmd(t, "-n", n.pub, "link", "add", "br0", "type", "bridge")
	ipCmd(t, "-n", n.pub, "addr", "add", relayIP+"/24", "dev", "br0")
	ipCmd(t, "-n", n.pub, "link", "set", "br0", "up")
	for i := range 2 {
		wan, port := fmt.Sprintf("w%d%s", i, tag), fmt.Sprintf("p%d%s", i, tag)
		ipCmd(t, "link", "add", wan, "type", "veth", "peer", "name", port)
		ipCmd(t, "link", "set", wan, "netns", n.nats[i])
		ipCmd(t, "link", "set", port, "netns", n.pub)
		ipCmd(t, "-n", n.pub, "link", "set", port, "master", "br0", "up")
		ipCmd(t, "-n", n.nats[i], "addr", "add", natPublicIP(i)+"/24", "dev", wan)
		ipCmd(t, "-n", n.nats[i], "link", "set", wan, "up")
		lan, eth := fmt.Sprintf("l%d%s", i, tag), fmt.Sprintf("e%d%s", i, tag)
		ipCmd(t, "link", "add", lan, "type", "veth", "peer", "name", eth)
		ipCmd(t, "link", "set", lan, "netns", n.nats[i])
		ipCmd(t, "link", "set", eth, "netns", n.hosts[i])
		ipCmd(t, "-n", n.nats[i], "addr", "add", fmt.Sprintf("192.168.%d.1/24", i+1), "dev", lan)
		ipCmd(t, "-n", n.nats[i], "link", "set", lan, "up")
		ipCmd(t, "-n", n.hosts[i], "addr", "add", fmt.Sprintf("192.168.%d.2/24", i+1), "dev", eth)
		ipCmd(t, "-n", n.hosts[i], "link", "set", eth, "up")
		ipCmd(t, "-n", n.hosts[i], "route", "add", "default", "via", fmt.Sprintf("192.168.%d.1", i+1))
		nsRun(t, n.nats[i], "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
		nsRun(t, n.nats[i], "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", wan, "-j", "MASQUERADE")
		// Like a home router: from outside, only answers to what went
		// out get in; anything else is dropped, not refused.
		for _, chain := range []string{"INPUT", "FORWARD"} {
			nsRun(t, n.nats[i], "iptables", "-A", chain, "-i", wan, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT")
			nsRun(t, n.nats[i], "iptables", "-A", chain, "-i", wan, "-j", "DROP")
		}
	}
	return n
}

// nsRun runs a command in namespace ns and fails the test on error.
func nsRun(t *testing.T, ns string, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("in %s: %s: %v\n%s", ns, strings.Join(args, " "), err, out)
	}
}

// blockDirect makes the two sites unable to reach each other but
// through the relay: each NAT drops what goes to or comes from the other.
func (n natNet) blockDirect(t *testing.T) {
	for i := range 2 {
		other := natPublicIP(1 - i)
		for _, chain := range []string{"INPUT", "FORWARD", "OUTPUT"} {
			nsRun(t, n.nats[i], "iptables", "-A", chain, "-s", other, "-j", "DROP")
			nsRun(t, n.nats[i], "iptables", "-A", chain, "-d", other, "-j", "DROP")
		}
	}
}

// startDaemonIn runs `shoal daemon` in namespace ns and returns its peer
// ID once it listens.
func startDaemonIn(t *testing.T, ns, home string, args ...string) string {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, shoalBinary(t), "--home", home, "daemon", "--log-level", "warn"}, args...)...)
	id, _, _ := startDaemonCmd(t, cmd)
	return id
}

// natStatus is the part of `shoal status --json` about reachability.
type natStatus struct {
	NAT struct {
		Reachability string   `json:"reachability"`
		PublicAddrs  []string `json:"public_addrs"`
		RelayAddrs   []string `json:"relay_addrs"`
		Direct       int      `json:"direct_connections"`
		Relayed      int      `json:"relayed_connections"`
	} `json:"nat"`
}

func statusOf(t *testing.T, home string) natStatus {
	t.Helper()
	var st natStatus
	if err := json.Unmarshal([]byte(mustShoal(t, home, "status", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// Two peers, each behind its own NAT, and a public relay. They reach
// each other through the relay, hole punching makes the connection
// direct, and one fetches from the other; when nothing but the relay
// gets through, the fetch completes over the relay.
func TestNATTraversal(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	for i, c := range []struct {
		name      string
		blocked   bool
		relayArgs []string
		wantPath  string // or, with a bounded relay, wantErr
		wantErr   string
	}{
		{name: "hole punched", wantPath: "direct"},
		{name: "relay only", blocked: true, wantPath: "relayed"},
		// A relay that bounds what it relays carries the members'
		// exchanges but no transfer: it would cut it.
		{name: "bounded relay only", blocked: true, relayArgs: []string{"--relay-max-data", "128KiB"}, wantErr: "limits what it relays"},
	} {
		t.Run(c.name, func(t *testing.T) {
			n := newNATNet(t, fmt.Sprintf("%d%d", os.Getpid()%1000, i))
			if c.blocked {
				n.blockDirect(t)
			}
			homeR, homeA, homeB := t.TempDir(), t.TempDir(), t.TempDir()
			relayID := startDaemonIn(t, n.pub, homeR, append([]string{"--listen", "/ip4/" + relayIP + "/tcp/4001",
				"--listen", "/ip4/" + relayIP + "/udp/4001/quic-v1", "--relay-service"}, c.relayArgs...)...)
			relay := "/ip4/" + relayIP + "/tcp/4001/p2p/" + relayID
			for i, home := range []string{homeA, homeB} {
				startDaemonIn(t, n.hosts[i], home, "--listen", "/ip4/0.0.0.0/tcp/4001", "--listen", "/ip4/0.0.0.0/udp/4001/quic-v1",
					"--relay", relay, "--bootstrap", relay, "--reachability", "private")
			}
			var viaRelay string
			eventuallyWithin(t, time.Minute, "A holds a slot on the relay", func() bool {
				st := statusOf(t, homeA)
				for _, a := range st.NAT.RelayAddrs {
					if strings.Contains(a, "/tcp/") {
						viaRelay = a
					}
				}
				return viaRelay != ""
			}, nil)
			// B reaches A through the relay; with the NATs letting it,
			// hole punching adds a direct connection.
			mustShoal(t, homeB, "connect", viaRelay)
			aID := viaRelay[strings.LastIndex(viaRelay, "/")+1:]
			if !c.blocked {
				eventuallyWithin(t, time.Minute, "a direct connection from B to A", func() bool {
					return directTo(t, homeB, aID)
				}, func() {
					t.Log(mustShoal(t, homeB, "peers"))
					t.Log(mustShoal(t, homeA, "status", "--json"))
					t.Log(mustShoal(t, homeB, "status", "--json"))
				})
			}
			data := randomFile(t, 8<<20)
			root := lastLine(mustShoal(t, homeA, "share", "--quiet", data))
			dst := filepath.Join(t.TempDir(), "got")
			if c.wantErr != "" {
				eventuallyWithin(t, time.Minute, "B sees A alive through the bounded relay", func() bool {
					return strings.Contains(mustShoal(t, homeB, "members"), "alive") &&
						strings.Count(mustShoal(t, homeB, "members"), "alive") == 3
				}, func() { t.Log(mustShoal(t, homeB, "members")) })
				out, errOut, err := shoal(t, homeB, "fetch", root, "--peer", viaRelay, "-o", dst)
				if err == nil || !strings.Contains(errOut, c.wantErr) {
					t.Fatalf("fetch through a bounded relay: %v, want an error saying %q\n%s%s", err, c.wantErr, out, errOut)
				}
				return
			}
			out := mustShoal(t, homeB, "fetch", root, "--peer", viaRelay, "-o", dst, "--explain")
			want, _ := os.ReadFile(data)
			got, err := os.ReadFile(dst)
			if err != nil || string(got) != string(want) {
				t.Fatalf("fetched copy differs (%v)\n%s", err, out)
			}
			if !strings.Contains(out, c.wantPath) {
				t.Errorf("the peer's path is not %s:\n%s", c.wantPath, out)
			}
			if c.blocked && directTo(t, homeB, aID) {
				t.Error("B reached A directly through NATs that drop it")
			}
			st := statusOf(t, homeB)
			if st.NAT.Reachability != "private" {
				t.Errorf("B's reachability %q, want private", st.NAT.Reachability)
			}
			t.Logf("B: %d direct, %d relayed connections\n%s", st.NAT.Direct, st.NAT.Relayed, out)
		})
	}
}

// directTo reports whether home's node has a direct (not relayed)
// connection to peer id.
func directTo(t *testing.T, home, id string) bool {
	t.Helper()
	var peers []struct {
		ID    string   `json:"id"`
		Addrs []string `json:"addrs"`
	}
	if err := json.Unmarshal([]byte(mustShoal(t, home, "peers", "--json")), &peers); err != nil {
		t.Fatal(err)
	}
	for _, p := range peers {
		if p.ID != id {
			continue
		}
		for _, a := range p.Addrs {
			if !strings.Contains(a, "p2p-circuit") {
				return true
			}
		}
	}
	return false
}
