package main

// The network-namespace testbed: hosts as network namespaces on one Linux
// bridge, each link shaped with tbf. Needs root, ip(8) and tc(8).
//
// Layout, for a prefix P (default "shb"):
//
//	namespace P-br       the bridge br0, with no address, and one veth end
//	                     v-<host> per host, enslaved to br0
//	namespace P-<host>   eth0 (the other veth end) with 10.77.0.<i>/24, and lo
//
// Nothing is created in the root namespace, so deleting the namespaces
// deletes every link. Addresses come from 10.77.0.0/24 only, and traffic
// goes only between these namespaces.
//
// Shaping: the host's end (eth0) gets an egress tbf at the host's upload
// cap; the bridge's end (v-<host>) gets an egress tbf at its download cap.
// tbfParams gives the burst and queue length.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	subnetPrefix = "10.77.0." // hosts get .1, .2, ...; a /24
	maxHosts     = 250
	bridgeName   = "br0"
)

// rateFlag is a flag.Value holding a rate in bits per second, as tc
// writes it: 100mbit, 1gbit, 500kbit, or a plain number of bit/s; 0 or
// "none" means uncapped.
type rateFlag struct {
	bps  int64
	text string
}

func (f *rateFlag) String() string { return f.text }

func (f *rateFlag) Set(s string) error {
	n, err := parseRate(s)
	if err != nil {
		return err
	}
	f.bps, f.text = n, formatRate(n)
	return nil
}

func newRateFlag(def string) *rateFlag {
	f := &rateFlag{}
	if err := f.Set(def); err != nil {
		panic(err) // a constant
	}
	return f
}

func parseRate(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	if t == "none" || t == "0" || t == "unlimited" {
		return 0, nil
	}
	mult := 1.0
	for _, u := range []struct {
		suffix string
		mult   float64
	}{{"gbit", 1e9}, {"mbit", 1e6}, {"kbit", 1e3}, {"bit", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSuffix(t, u.suffix), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(t), 64)
	if err != nil || v < 0 || v*mult > 1e12 || (v > 0 && v*mult < 8000) {
		return 0, fmt.Errorf("rate %q: want a rate such as 100mbit, 1gbit or 500kbit (at least 8kbit), or none", s)
	}
	return int64(v * mult), nil
}

// formatRate prints a rate the way tc reads it.
func formatRate(bps int64) string {
	switch {
	case bps == 0:
		return "none"
	case bps%1e9 == 0:
		return fmt.Sprintf("%dgbit", bps/1e9)
	case bps%1e6 == 0:
		return fmt.Sprintf("%dmbit", bps/1e6)
	case bps%1e3 == 0:
		return fmt.Sprintf("%dkbit", bps/1e3)
	}
	return fmt.Sprintf("%dbit", bps)
}

// tbfLatency bounds the time a packet waits in a tbf queue. 50 ms of
// queue keeps a link busy for TCP (whose RTT here is otherwise well
// under a millisecond) without inflating RTTs beyond those of a real
// access link; the queue holds rate × 50 ms + burst bytes.
const tbfLatency = 50 * time.Millisecond

// tbfParams returns the tbf bucket (burst) for a rate in bit/s: 2 ms of
// traffic at that rate, but at least 64 KiB, so that one 64 KiB GSO
// packet from the veth fits in the bucket and tbf never has to split it.
// At 100 Mbit/s that bucket is 5 ms of traffic, at 1 Gbit/s 2 ms: short
// next to transfers of seconds, so the measured rates are the caps.
func tbfParams(bps int64) (burst int64, latency time.Duration) {
	return max(64<<10, bps/8*2/1000), tbfLatency
}

// nsHost is one host of the testbed.
type nsHost struct {
	Name string // seed, p1, s1, fetcher, ...
	NS   string // P-<name>
	Veth string // the bridge's end, in P-br
	Addr string // 10.77.0.<i>
	Up   int64  // bit/s, 0 uncapped
	Down int64
}

// testbed is a bridge namespace and its hosts.
type testbed struct {
	Prefix string
	Bridge string // P-br
	Hosts  []*nsHost
}

var prefixRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,7}$`)

// checkRoot tells why the testbed cannot run here, or nil.
func checkRoot() error {
	if os.Geteuid() != 0 {
		return errors.New("the namespace testbed needs root (it creates network namespaces, a bridge and tc qdiscs): run it with sudo")
	}
	for _, tool := range []string{"ip", "tc"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("the namespace testbed needs %s(8) (Debian: apt-get install iproute2): %w", tool, err)
		}
	}
	return nil
}

// sysCmd runs one ip/tc command; its output goes into the error.
func sysCmd(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out.Bytes()))
	}
	return nil
}

// prefixNamespaces lists the namespaces named prefix-*.
func prefixNamespaces(prefix string) ([]string, error) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return nil, fmt.Errorf("ip netns list: %w", err)
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && strings.HasPrefix(f[0], prefix+"-") {
			names = append(names, f[0])
		}
	}
	return names, nil
}

// removeNamespaces kills every process in the namespaces named prefix-*
// and deletes them (the veths and the bridge go with them). It is how a
// run cleans up, and how it removes what a crashed run left behind.
func removeNamespaces(prefix string) error {
	names, err := prefixNamespaces(prefix)
	if err != nil {
		return err
	}
	var errs []error
	for _, ns := range names {
		killNamespace(ns)
	}
	for _, ns := range names {
		if err := sysCmd(context.Background(), "ip", "netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// killNamespace SIGKILLs the processes left in ns and waits up to 5 s for
// them to go.
func killNamespace(ns string) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, _ := exec.Command("ip", "netns", "pids", ns).Output()
		pids := strings.Fields(string(out))
		if len(pids) == 0 || time.Now().After(deadline) {
			return
		}
		for _, p := range pids {
			if pid, err := strconv.Atoi(p); err == nil && pid != os.Getpid() {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		time.Sleep(50 * time.Millisecond) // polling the kernel, not synchronising goroutines
	}
}

// lockPrefix takes an exclusive lock for prefix, so that a second run with
// the same prefix fails at once instead of removing the first one's
// namespaces as leftovers. The lock goes when the process ends.
func lockPrefix(prefix string) (unlock func(), err error) {
	path := filepath.Join(os.TempDir(), "shoal-bench-"+prefix+".lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("another shoal-bench runs with --prefix %s (it holds %s): wait for it, or use another --prefix", prefix, path)
	}
	return func() { os.Remove(path); f.Close() }, nil
}

// newTestbed creates the bridge namespace and one namespace per host.
// Whatever it creates is pushed on cs, also when it fails midway.
func newTestbed(ctx context.Context, prefix string, hosts []*nsHost, cs *cleanupStack) (*testbed, error) {
	if len(hosts) > maxHosts {
		return nil, fmt.Errorf("%d hosts: at most %d fit the testbed's /24", len(hosts), maxHosts)
	}
	tb := &testbed{Prefix: prefix, Bridge: prefix + "-br", Hosts: hosts}
	cs.push("delete namespaces "+prefix+"-*", func() error { return removeNamespaces(prefix) })
	run := func(name string, args ...string) error { return sysCmd(ctx, name, args...) }
	if err := run("ip", "netns", "add", tb.Bridge); err != nil {
		return nil, err
	}
	for _, args := range [][]string{
		{"-n", tb.Bridge, "link", "set", "lo", "up"},
		{"-n", tb.Bridge, "link", "add", bridgeName, "type", "bridge"},
		{"-n", tb.Bridge, "link", "set", bridgeName, "up"},
	} {
		if err := run("ip", args...); err != nil {
			return nil, err
		}
	}
	for i, h := range hosts {
		h.NS = prefix + "-" + h.Name
		h.Veth = "v-" + h.Name
		h.Addr = subnetPrefix + strconv.Itoa(i+1)
		if len(h.Veth) > 15 {
			return nil, fmt.Errorf("host name %q too long for an interface name", h.Name)
		}
		if err := run("ip", "netns", "add", h.NS); err != nil {
			return nil, err
		}
		for _, args := range [][]string{
			{"-n", tb.Bridge, "link", "add", h.Veth, "type", "veth", "peer", "name", "eth0", "netns", h.NS},
			{"-n", tb.Bridge, "link", "set", h.Veth, "master", bridgeName, "up"},
			{"-n", h.NS, "link", "set", "lo", "up"},
			{"-n", h.NS, "addr", "add", h.Addr + "/24", "dev", "eth0"},
			{"-n", h.NS, "link", "set", "eth0", "up"},
		} {
			if err := run("ip", args...); err != nil {
				return nil, err
			}
		}
		if err := shape(ctx, h.NS, "eth0", h.Up); err != nil {
			return nil, err
		}
		if err := shape(ctx, tb.Bridge, h.Veth, h.Down); err != nil {
			return nil, err
		}
	}
	return tb, nil
}

// shape puts an egress tbf at bps on dev in ns; 0 leaves it unshaped.
func shape(ctx context.Context, ns, dev string, bps int64) error {
	if bps == 0 {
		return nil
	}
	burst, lat := tbfParams(bps)
	return sysCmd(ctx, "tc", "-n", ns, "qdisc", "replace", "dev", dev, "root", "tbf",
		"rate", strconv.FormatInt(bps, 10)+"bit", "burst", strconv.FormatInt(burst, 10),
		"latency", fmt.Sprintf("%dms", lat.Milliseconds()))
}

// cleanupStack runs clean-up functions in reverse order of push. It is
// safe for concurrent use.
type cleanupStack struct {
	mu  sync.Mutex
	fns []cleanupFn
	log io.Writer // where failures are reported; nil: nowhere
}

type cleanupFn struct {
	what string
	fn   func() error
}

func (c *cleanupStack) push(what string, fn func() error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fns = append(c.fns, cleanupFn{what, fn})
}

// run pops and runs every function, newest first, and joins their errors.
func (c *cleanupStack) run() error {
	c.mu.Lock()
	fns := c.fns
	c.fns = nil
	c.mu.Unlock()
	var errs []error
	for i := len(fns) - 1; i >= 0; i-- {
		if err := fns[i].fn(); err != nil {
			err = fmt.Errorf("clean-up, %s: %w", fns[i].what, err)
			if c.log != nil {
				fmt.Fprintln(c.log, err)
			}
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
