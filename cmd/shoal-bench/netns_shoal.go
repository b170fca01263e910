package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/shoalnet/shoal/node/api"
	"github.com/shoalnet/shoal/transfer"
)

// shoalPort is every daemon's TCP port, on its namespace's address.
const shoalPort = 4001

// daemonEnv quiets libp2p's own logging in the daemons.
var daemonEnv = []string{"GOLOG_LOG_LEVEL=error"}

// buildShoal builds ./cmd/shoal into dir and returns the binary's path.
func buildShoal(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "shoal")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/shoalnet/shoal/cmd/shoal")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/shoal: %w\n%s", err, out)
	}
	return bin, nil
}

// shoalDaemon is `shoal daemon` running in a host's namespace.
type shoalDaemon struct {
	host *nsHost
	bin  string
	home string
	proc *nsProc
	cl   *api.Client
	id   string
	addr string // /ip4/<addr>/tcp/4001/p2p/<id>
}

// idJSON is the output of `shoal id --json`.
type idJSON struct {
	ID      string   `json:"id"`
	Addrs   []string `json:"addrs"`
	Running bool     `json:"running"`
}

// startDaemon initialises a new home under dir and starts the daemon on
// it, listening on the host's address only, with mDNS off, bootstrapped
// from bootstrap (multiaddrs with /p2p/). It does not wait for it.
func startDaemon(ctx context.Context, bin string, h *nsHost, dir string, bootstrap []string, logLevel string) (*shoalDaemon, error) {
	home := filepath.Join(dir, "home")
	d := &shoalDaemon{host: h, bin: bin, home: home, cl: api.NewClient(home)}
	if _, err := d.cli(ctx, "init"); err != nil {
		return nil, err
	}
	args := []string{"--home", home, "daemon",
		"--listen", fmt.Sprintf("/ip4/%s/tcp/%d", h.Addr, shoalPort),
		"--mdns=false", "--log-level", logLevel}
	for _, b := range bootstrap {
		args = append(args, "--bootstrap", b)
	}
	p, err := startInNS(h.NS, "shoal daemon on "+h.Name, filepath.Join(dir, "daemon.log"), daemonEnv, bin, args...)
	if err != nil {
		return nil, err
	}
	d.proc = p
	return d, nil
}

// cli runs `shoal --home H args...` in the host's namespace and returns
// its stdout.
func (d *shoalDaemon) cli(ctx context.Context, args ...string) (string, error) {
	return execInNS(ctx, d.host.NS, daemonEnv, d.bin, append([]string{"--home", d.home}, args...)...)
}

// waitUp waits until the daemon answers `shoal status` on its socket,
// then reads its peer ID with `shoal id --json`.
func (d *shoalDaemon) waitUp(ctx context.Context, timeout time.Duration) error {
	err := poll(ctx, timeout, 100*time.Millisecond, "the daemon on "+d.host.Name+" to answer on "+filepath.Join(d.home, api.SocketName),
		func() (bool, error) {
			if err := d.proc.exitedEarly(); err != nil {
				return false, &fatalErr{err}
			}
			sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			_, err := d.cl.Status(sctx)
			return err == nil, err
		})
	if err != nil {
		return err
	}
	out, err := d.cli(ctx, "id", "--json")
	if err != nil {
		return err
	}
	var id idJSON
	if err := json.Unmarshal([]byte(out), &id); err != nil {
		return fmt.Errorf("shoal id --json on %s: %w", d.host.Name, err)
	}
	if !id.Running {
		return fmt.Errorf("shoal id --json on %s: the daemon does not run", d.host.Name)
	}
	d.id = id.ID
	d.addr = fmt.Sprintf("/ip4/%s/tcp/%d/p2p/%s", d.host.Addr, shoalPort, id.ID)
	return nil
}

// share runs `shoal share PATH --quiet` (with --chunk-size if chunk is
// not 0) and returns the root CID.
func (d *shoalDaemon) share(ctx context.Context, path string, chunk int64) (string, error) {
	args := []string{"share", path, "--quiet"}
	if chunk != 0 {
		args = append(args, "--chunk-size", strconv.FormatInt(chunk, 10))
	}
	out, err := d.cli(ctx, args...)
	if err != nil {
		return "", err
	}
	root := strings.TrimSpace(out)
	if i := strings.LastIndexByte(root, '\n'); i >= 0 {
		root = root[i+1:]
	}
	if root == "" {
		return "", fmt.Errorf("shoal share on %s printed no root CID", d.host.Name)
	}
	return root, nil
}

// waitSees waits until the daemon is connected to every peer of ids and
// its catalog lists root from every one of them (that is, it knows they
// hold it), so that a fetch starts with its sources known.
func (d *shoalDaemon) waitSees(ctx context.Context, timeout time.Duration, root string, ids []string) error {
	what := fmt.Sprintf("%s to connect to the seeder(s) and see their announcement of %s", d.host.Name, root)
	return poll(ctx, timeout, 200*time.Millisecond, what, func() (bool, error) {
		if err := d.proc.exitedEarly(); err != nil {
			return false, &fatalErr{err}
		}
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		peers, err := d.cl.Peers(sctx)
		if err != nil {
			return false, err
		}
		connected := map[string]bool{}
		for _, p := range peers {
			connected[p.ID.String()] = true
		}
		entries, err := d.cl.Catalog(sctx)
		if err != nil {
			return false, err
		}
		announced := map[string]bool{}
		for _, e := range entries {
			if e.Root.String() == root && !e.Removed {
				announced[e.Publisher.String()] = true
			}
		}
		for _, id := range ids {
			if !connected[id] {
				return false, fmt.Errorf("not connected to %s", id)
			}
			if !announced[id] {
				return false, fmt.Errorf("no catalog entry of %s from %s", root, id)
			}
		}
		return true, nil
	})
}

// fetchAPI fetches root to dst through the daemon's API, as `shoal fetch
// ROOT -o DST --quiet` does (the same request on the same socket; the
// socket is a path, which every network namespace shares), and returns
// the final progress, whose per-peer figures the CLI does not print.
// Each progress report is passed to each.
func (d *shoalDaemon) fetchAPI(ctx context.Context, root, dst string, each func(transfer.Progress)) (*transfer.Progress, error) {
	ev, err := d.cl.Fetch(ctx, api.FetchRequest{Root: root, Dst: dst}, each)
	if err != nil {
		return nil, fmt.Errorf("fetch on %s: %w", d.host.Name, err)
	}
	if ev.Fetch == nil {
		return nil, fmt.Errorf("fetch on %s: the daemon's done event has no progress", d.host.Name)
	}
	return ev.Fetch, nil
}

// fetchCLI runs `shoal fetch ROOT -o DST --quiet` in the namespace.
func (d *shoalDaemon) fetchCLI(ctx context.Context, root, dst string) error {
	_, err := d.cli(ctx, "fetch", root, "-o", dst, "--quiet")
	return err
}

// stop stops the daemon (SIGTERM, then SIGKILL after 5 s).
func (d *shoalDaemon) stop() error {
	d.cl.Close()
	if d.proc == nil {
		return nil
	}
	return d.proc.stop(5 * time.Second)
}

// memStatus reads the memory figures of /proc/<pid>/status, in bytes.
type memStatus struct {
	VmHWM, VmRSS, RssAnon, RssFile int64
}

func readMemStatus(pid int) (memStatus, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memStatus{}, err
	}
	var m memStatus
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		var kb int64
		if _, err := fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kb); err != nil {
			continue
		}
		switch k {
		case "VmHWM":
			m.VmHWM = kb << 10
		case "VmRSS":
			m.VmRSS = kb << 10
		case "RssAnon":
			m.RssAnon = kb << 10
		case "RssFile":
			m.RssFile = kb << 10
		}
	}
	if m.VmHWM == 0 {
		return m, fmt.Errorf("/proc/%d/status has no VmHWM", pid)
	}
	return m, nil
}

// sourceNames maps peer IDs to host names.
type sourceNames map[string]string

func (s sourceNames) name(id string) string {
	if n, ok := s[id]; ok {
		return n
	}
	return id
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
