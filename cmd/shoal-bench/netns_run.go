package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shoalnet/shoal/transfer"
)

// Scenarios of the namespace testbed.
const (
	scKSource = "ksource"
	scSwarm   = "swarm"
	scScale   = "scale"
	scMemory  = "memory"
)

// Phases of a testbed run.
const (
	phShoal = "shoal"
	phHTTP  = "http"
)

type testbedOptions struct {
	Scenario     string
	Ns           []int // peers (fetchers) per topology; one entry except for scale
	Seeders      int
	Size         int64
	ChunkSize    int64 // shoal share --chunk-size; 0: the default
	SeedUp       int64 // bit/s, 0 uncapped
	SeedDown     int64
	PeerUp       int64
	PeerDown     int64
	Runs         int
	Warmup       int
	HTTP         bool // also the HTTP baseline
	FetchCLI     bool // fetch with `shoal fetch` instead of the API (no per-source figures)
	Dir          string
	JSON         string
	PNG          string
	Prefix       string
	Shoal        string // shoal binary; "" builds ./cmd/shoal
	LogLevel     string
	KeepLogs     string        // copy the daemons' and HTTP processes' logs here
	Progress     time.Duration // print the fetches' progress this often; 0: never
	ReadyTimeout time.Duration
	FetchTimeout time.Duration
	Args         []string
	Out          io.Writer
}

// tbEnv is what every run of a testbed command shares.
type tbEnv struct {
	o    testbedOptions
	dir  string // the work directory
	bin  string // shoal
	self string // this program, for the hidden HTTP subcommands
	src  string
	sum  [sha256.Size]byte
}

func runTestbed(ctx context.Context, o testbedOptions) (res *TestbedResult, err error) {
	if err := checkRoot(); err != nil {
		return nil, err
	}
	if !prefixRE.MatchString(o.Prefix) {
		return nil, fmt.Errorf("--prefix %q: want 1 to 8 lower-case letters and digits, starting with a letter", o.Prefix)
	}
	res = &TestbedResult{
		Header: newHeader(o.Args), Benchmark: o.Scenario, Size: o.Size, Seeders: o.Seeders,
		SeedUp: formatRate(o.SeedUp), SeedDown: formatRate(o.SeedDown),
		PeerUp: formatRate(o.PeerUp), PeerDown: formatRate(o.PeerDown),
		Subnet: subnetPrefix + "0/24", FetchVia: "api", Warmup: o.Warmup,
	}
	if o.FetchCLI {
		res.FetchVia = "cli"
	}
	res.Shaping = shapingNote(o)
	res.print(o.Out, o)

	// One run per prefix at a time: the clean-up of leftovers below would
	// otherwise tear down a running one.
	unlock, err := lockPrefix(o.Prefix)
	if err != nil {
		return nil, err
	}
	defer unlock()
	// What a crashed run with this prefix left behind goes first.
	if left, _ := prefixNamespaces(o.Prefix); len(left) > 0 {
		fmt.Fprintf(o.Out, "removing %d namespace(s) left by an earlier run: %s\n", len(left), strings.Join(left, " "))
	}
	if err := removeNamespaces(o.Prefix); err != nil {
		return nil, err
	}
	parent := o.Dir
	if parent == "" {
		parent = os.TempDir()
	}
	stale, _ := filepath.Glob(filepath.Join(parent, "shoal-netns-"+o.Prefix+"-*"))
	for _, d := range stale {
		os.RemoveAll(d)
	}

	cs := &cleanupStack{log: o.Out}
	defer func() { err = errors.Join(err, cs.run()) }()
	dir, err := os.MkdirTemp(parent, "shoal-netns-"+o.Prefix+"-")
	if err != nil {
		return nil, fmt.Errorf("create work directory: %w", err)
	}
	cs.push("remove "+dir, func() error { return os.RemoveAll(dir) })
	// The daemons run in other namespaces but as root on the same file
	// system; the homes need no special modes.
	env := &tbEnv{o: o, dir: dir}
	if env.self, err = os.Executable(); err != nil {
		return nil, err
	}
	env.bin = o.Shoal
	if env.bin == "" {
		fmt.Fprintln(o.Out, "building ./cmd/shoal")
		if env.bin, err = buildShoal(ctx, dir); err != nil {
			return nil, err
		}
	}
	env.src = filepath.Join(dir, "source", "payload.bin")
	if err := os.MkdirAll(filepath.Dir(env.src), 0o755); err != nil {
		return nil, err
	}
	fmt.Fprintf(o.Out, "writing %s of random data to %s\n\n", formatSize(o.Size), env.src)
	if env.sum, err = writeRandomFile(ctx, env.src, o.Size); err != nil {
		return nil, ctxErr(ctx, err)
	}
	res.SourceHash = hex.EncodeToString(env.sum[:])

	var failed []error
	for _, n := range o.Ns {
		for r := 1 - o.Warmup; r <= o.Runs; r++ {
			run, err := env.runOnce(ctx, n, r)
			if err != nil && run != nil {
				// Some fetches failed and the others completed: keep the
				// run, out of the medians, and go on.
				err = fmt.Errorf("N=%d, %s: %w", n, runLabel(r), err)
				failed = append(failed, err)
				run.Error = err.Error()
				run.printFailed(o.Out)
				if r >= 1 {
					res.Runs = append(res.Runs, *run)
				}
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("N=%d, %s: %w", n, runLabel(r), ctxErr(ctx, err))
			}
			run.printLine(o.Out, o)
			if r >= 1 {
				res.Runs = append(res.Runs, *run)
			}
		}
		res.Medians = append(res.Medians, medianOf(res.Runs, n))
	}
	res.printTable(o.Out, o)
	if o.JSON != "" {
		if err := writeJSON(o.JSON, res); err != nil {
			return nil, err
		}
	}
	if o.PNG != "" {
		if err := res.plot(o.PNG, o); err != nil {
			return nil, fmt.Errorf("write plot: %w", err)
		}
	}
	if len(failed) > 0 {
		return res, fmt.Errorf("%d run(s) had failed fetches:\n%w", len(failed), errors.Join(failed...))
	}
	return res, nil
}

// shapingNote describes the tbf settings of the caps in use.
func shapingNote(o testbedOptions) string {
	var parts []string
	seen := map[int64]bool{}
	for _, r := range []int64{o.SeedUp, o.SeedDown, o.PeerUp, o.PeerDown} {
		if r == 0 || seen[r] {
			continue
		}
		seen[r] = true
		b, lat := tbfParams(r)
		parts = append(parts, fmt.Sprintf("%s: burst %d B, latency %s", formatRate(r), b, lat))
	}
	if len(parts) == 0 {
		return "none (no caps)"
	}
	return "tbf egress, host end = upload, bridge end = download; " + strings.Join(parts, "; ")
}

// runOnce builds the topology for n peers, runs the phases in an order
// that rotates with r, and removes everything it made.
func (e *tbEnv) runOnce(ctx context.Context, n, r int) (run *TestbedRun, err error) {
	o := e.o
	var seeders, peers []*nsHost
	for i := range o.Seeders {
		name := "seed"
		if o.Seeders > 1 {
			name = "s" + strconv.Itoa(i+1)
		}
		seeders = append(seeders, &nsHost{Name: name, Up: o.SeedUp, Down: o.SeedDown})
	}
	for i := range n {
		peers = append(peers, &nsHost{Name: "p" + strconv.Itoa(i+1), Up: o.PeerUp, Down: o.PeerDown})
	}
	run = &TestbedRun{N: n, Run: r}
	var seedUp, peerUp, peerDown []int64
	for _, h := range seeders {
		seedUp = append(seedUp, h.Up)
	}
	for _, h := range peers {
		peerUp, peerDown = append(peerUp, h.Up), append(peerDown, h.Down)
	}
	run.BoundSeconds = swarmBound(o.Size, seedUp, peerUp, peerDown)

	cs := &cleanupStack{log: o.Out}
	defer func() { err = errors.Join(err, cs.run()) }()
	runDir := filepath.Join(e.dir, fmt.Sprintf("n%d-%s", n, runName(r)))
	cs.push("remove "+runDir, func() error { return os.RemoveAll(runDir) })
	for _, h := range append(slices.Clone(seeders), peers...) {
		if err := os.MkdirAll(filepath.Join(runDir, h.Name), 0o755); err != nil {
			return nil, err
		}
	}
	if _, err := newTestbed(ctx, o.Prefix, append(slices.Clone(seeders), peers...), cs); err != nil {
		return nil, fmt.Errorf("build the topology: %w", err)
	}

	phases := []string{phShoal}
	if o.HTTP {
		phases = append(phases, phHTTP)
	}
	k := mod(r-1, len(phases))
	phases = append(phases[k:], phases[:k]...)
	run.Order = strings.Join(phases, ",")
	var shoalErr error
	for _, ph := range phases {
		switch ph {
		case phShoal:
			if err := e.shoalPhase(ctx, run, runDir, seeders, peers); err != nil {
				var ff *fetchFailed
				if !errors.As(err, &ff) || ctx.Err() != nil {
					return nil, fmt.Errorf("shoal: %w", err)
				}
				// Some fetches failed: the baseline still runs, and the
				// run is returned with the error.
				shoalErr = fmt.Errorf("shoal: %w", err)
			}
		case phHTTP:
			pr, err := e.httpPhase(ctx, runDir, seeders[0], peers)
			if err != nil {
				return nil, fmt.Errorf("HTTP baseline: %w", err)
			}
			run.HTTP = pr
		}
	}
	if shoalErr != nil {
		return run, shoalErr
	}
	s := run.Shoal
	if run.BoundSeconds > 0 {
		run.LastOverBound = s.LastSeconds / run.BoundSeconds
		run.MedianOverBound = s.MedianSeconds / run.BoundSeconds
		if run.HTTP != nil {
			run.HTTPOverBound = run.HTTP.LastSeconds / run.BoundSeconds
		}
	}
	if run.HTTP != nil {
		run.SpeedUp = run.HTTP.LastSeconds / s.LastSeconds
	}
	if n == 1 {
		run.ThroughputBps = float64(o.Size) * 8 / s.LastSeconds
		if caps := sumRates(seedUp); caps > 0 {
			run.CapRatio = run.ThroughputBps / caps
		}
	}
	return run, nil
}

// sumRates adds rates in bit/s; 0 if any is uncapped.
func sumRates(rates []int64) float64 {
	s := 0.0
	for _, r := range rates {
		if r == 0 {
			return 0
		}
		s += float64(r)
	}
	return s
}

// shoalPhase starts a daemon on every host, shares the file on the
// seeders, waits until every peer sees them, starts every fetch at once
// and records the completions. The daemons are stopped and their homes
// and files removed before it returns.
func (e *tbEnv) shoalPhase(ctx context.Context, run *TestbedRun, runDir string, seeders, peers []*nsHost) (err error) {
	o := e.o
	cs := &cleanupStack{log: o.Out}
	defer func() { err = errors.Join(err, cs.run()) }()
	start := func(h *nsHost, bootstrap []string) (*shoalDaemon, error) {
		dir := filepath.Join(runDir, h.Name, "shoal")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		cs.push("remove "+dir, func() error { return os.RemoveAll(dir) })
		cs.push("keep the log of "+h.Name, func() error {
			return e.keepLog(filepath.Join(dir, "daemon.log"), run, h.Name+"-daemon.log")
		})
		d, err := startDaemon(ctx, e.bin, h, dir, bootstrap, o.LogLevel)
		if err != nil {
			return nil, err
		}
		cs.push("stop the daemon on "+h.Name, d.stop)
		return d, nil
	}
	first, err := start(seeders[0], nil)
	if err != nil {
		return err
	}
	if err := first.waitUp(ctx, o.ReadyTimeout); err != nil {
		return err
	}
	var others []*shoalDaemon
	for _, h := range append(slices.Clone(seeders[1:]), peers...) {
		d, err := start(h, []string{first.addr})
		if err != nil {
			return err
		}
		others = append(others, d)
	}
	if err := parallel(ctx, others, func(ctx context.Context, d *shoalDaemon) error { return d.waitUp(ctx, o.ReadyTimeout) }); err != nil {
		return err
	}
	seedDs := append([]*shoalDaemon{first}, others[:len(seeders)-1]...)
	peerDs := others[len(seeders)-1:]

	t0 := time.Now()
	var root string
	for i, d := range seedDs {
		got, err := d.share(ctx, e.src, o.ChunkSize)
		if err != nil {
			return err
		}
		if i == 0 {
			run.ShareSeconds = time.Since(t0).Seconds()
			root = got
		} else if got != root {
			return fmt.Errorf("%s shared the file as %s, %s as %s: the roots differ", seedDs[0].host.Name, root, d.host.Name, got)
		}
	}
	names := sourceNames{}
	var seedIDs []string
	for _, d := range seedDs {
		names[d.id] = d.host.Name
		seedIDs = append(seedIDs, d.id)
	}
	for _, d := range peerDs {
		names[d.id] = d.host.Name
	}
	t1 := time.Now()
	if err := parallel(ctx, peerDs, func(ctx context.Context, d *shoalDaemon) error {
		return d.waitSees(ctx, o.ReadyTimeout, root, seedIDs)
	}); err != nil {
		return err
	}
	run.ReadySeconds = time.Since(t1).Seconds()

	// Memory: sample the fetching daemon (the first peer's).
	var stopMem func()
	if o.Scenario == scMemory {
		idle, err := readMemStatus(peerDs[0].proc.pid())
		if err != nil {
			return err
		}
		run.IdleHWM = idle.VmHWM
		stopMem = e.sampleMem(peerDs[0].proc.pid(), run)
	}

	fctx, cancel := context.WithTimeout(ctx, o.FetchTimeout)
	defer cancel()
	comps := make([]Completion, len(peerDs))
	errs := make([]error, len(peerDs))
	var wg sync.WaitGroup
	begin := make(chan struct{})
	var tStart time.Time
	live := newLiveProgress(len(peerDs), names, seedIDs)
	for i, d := range peerDs {
		dst := filepath.Join(runDir, d.host.Name, "shoal", "out.bin")
		wg.Go(func() {
			<-begin
			c := Completion{Host: d.host.Name}
			if o.FetchCLI {
				errs[i] = d.fetchCLI(fctx, root, dst)
				c.Seconds = time.Since(tStart).Seconds()
			} else {
				var last float64 = -1
				p, err := d.fetchAPI(fctx, root, dst, func(p transfer.Progress) {
					live.set(i, p)
					t := time.Since(tStart).Seconds()
					if t-last >= 1 {
						last = t
						_, fromPeers := splitSources(p, names, seedIDs)
						c.Timeline = append(c.Timeline, TimelinePoint{T: t, Bytes: p.Bytes, FromPeers: fromPeers})
					}
				})
				c.Seconds = time.Since(tStart).Seconds()
				errs[i] = err
				if err == nil {
					c.fill(*p, names, seedIDs)
					c.Timeline = append(c.Timeline, TimelinePoint{T: c.Seconds, Bytes: p.Bytes, FromPeers: c.FromPeers})
				}
			}
			if errs[i] != nil {
				// The others go on: their completions show what the
				// failure cost. The run is recorded as failed.
				c.Error = errs[i].Error()
			}
			comps[i] = c
		})
	}
	tStart = time.Now()
	close(begin)
	stopLive := func() {}
	if o.Progress > 0 && !o.FetchCLI {
		stopLive = live.print(o.Out, o.Progress, tStart)
	}
	wg.Wait()
	stopLive()
	if stopMem != nil {
		stopMem()
	}
	if err := errors.Join(errs...); err != nil {
		run.Shoal = summarise(comps)
		return &fetchFailed{err}
	}
	if o.Scenario == scMemory {
		end, err := readMemStatus(peerDs[0].proc.pid())
		if err != nil {
			return err
		}
		run.PeakHWM = end.VmHWM
	}
	if err := e.verify(ctx, runDir, comps, "shoal"); err != nil {
		return err
	}
	run.Shoal = summarise(comps)
	return nil
}

// keepLog copies a log to --keep-logs/n<N>-<run>/name, if set.
func (e *tbEnv) keepLog(path string, run *TestbedRun, name string) error {
	if e.o.KeepLogs == "" {
		return nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	dir := filepath.Join(e.o.KeepLogs, fmt.Sprintf("n%d-%s", run.N, runName(run.Run)))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, name), data, 0o644)
}

// httpPhase serves the file over plain HTTP from the seed host and has
// every peer GET it at once.
func (e *tbEnv) httpPhase(ctx context.Context, runDir string, seed *nsHost, peers []*nsHost) (pr *PhaseRun, err error) {
	o := e.o
	cs := &cleanupStack{log: o.Out}
	defer func() { err = errors.Join(err, cs.run()) }()
	addr := fmt.Sprintf("%s:%d", seed.Addr, httpPort)
	srvDir := filepath.Join(runDir, seed.Name, "http")
	if err := os.MkdirAll(srvDir, 0o755); err != nil {
		return nil, err
	}
	cs.push("remove "+srvDir, func() error { return os.RemoveAll(srvDir) })
	srvLog := filepath.Join(srvDir, "server.log")
	srv, err := startInNS(seed.NS, "HTTP server on "+seed.Name, srvLog, []string{selfEnv}, e.self, "http-serve", addr, e.src)
	if err != nil {
		return nil, err
	}
	cs.push("stop the HTTP server", func() error { return srv.stop(5 * time.Second) })
	err = poll(ctx, o.ReadyTimeout, 50*time.Millisecond, "the HTTP server on "+addr, func() (bool, error) {
		if err := srv.exitedEarly(); err != nil {
			return false, &fatalErr{err}
		}
		data, _ := os.ReadFile(srvLog)
		return strings.Contains(string(data), "listening on"), nil
	})
	if err != nil {
		return nil, err
	}
	url := fmt.Sprintf("http://%s/file", addr)
	comps := make([]Completion, len(peers))
	procs := make([]*nsProc, len(peers))
	tStart := time.Now()
	for i, h := range peers {
		dir := filepath.Join(runDir, h.Name, "http")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		cs.push("remove "+dir, func() error { return os.RemoveAll(dir) })
		p, err := startInNS(h.NS, "http-get on "+h.Name, filepath.Join(dir, "get.log"), []string{selfEnv},
			e.self, "http-get", url, filepath.Join(dir, "out.bin"))
		if err != nil {
			return nil, err
		}
		cs.push("stop http-get on "+h.Name, func() error { return p.stop(time.Second) })
		procs[i] = p
	}
	timeout := time.NewTimer(o.FetchTimeout)
	defer timeout.Stop()
	for i, p := range procs {
		select {
		case <-p.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-timeout.C:
			return nil, fmt.Errorf("the HTTP downloads did not finish within %s", o.FetchTimeout)
		}
		if p.err != nil {
			return nil, fmt.Errorf("%s failed (%v):\n%s", p.name, p.err, p.tail(10))
		}
		comps[i] = Completion{Host: peers[i].Name, Seconds: p.exited.Sub(tStart).Seconds()}
	}
	if err := e.verify(ctx, runDir, comps, "http"); err != nil {
		return nil, err
	}
	return summarise(comps), nil
}

// verify checks every peer's copy (runDir/<host>/<sub>/out.bin) against
// the source, records its SHA-256, and removes it.
func (e *tbEnv) verify(ctx context.Context, runDir string, comps []Completion, sub string) error {
	return parallel(ctx, indices(len(comps)), func(ctx context.Context, i int) error {
		c := &comps[i]
		path := filepath.Join(runDir, c.Host, sub, "out.bin")
		defer os.Remove(path)
		got, size, err := fileSHA256(path)
		if err != nil {
			return fmt.Errorf("verify %s's copy: %w", c.Host, err)
		}
		c.SHA256 = hex.EncodeToString(got[:])
		c.Verified = size == e.o.Size && got == e.sum
		if !c.Verified {
			return fmt.Errorf("%s's copy differs from the source: %d bytes with SHA-256 %x, want %d bytes with %x",
				c.Host, size, got[:8], e.o.Size, e.sum[:8])
		}
		return nil
	})
}

func indices(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// parallel runs fn on every item at once (the work is mostly waiting on
// other processes) and returns the joined errors.
func parallel[T any](ctx context.Context, items []T, fn func(context.Context, T) error) error {
	errs := make([]error, len(items))
	var wg sync.WaitGroup
	for i, it := range items {
		wg.Go(func() { errs[i] = fn(ctx, it) })
	}
	wg.Wait()
	return errors.Join(errs...)
}
