package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// scenarioDefaults are a testbed scenario's defaults and description.
type scenarioDefaults struct {
	about    string
	n        string
	seeders  int
	size     string
	seedUp   string
	seedDown string
	up, down string
	http     bool
	runs     int
}

var scenarios = map[string]scenarioDefaults{
	scKSource: {
		about: "One peer fetches from k seeders that share the same file (one root CID).\n" +
			"Reports the fetch's throughput over the sum of the seeders' upload caps\n" +
			"(target >= 0.9).",
		n: "1", seeders: 4, size: "512MiB", seedUp: "100mbit", seedDown: "100mbit", up: "1gbit", down: "1gbit", runs: 3,
	},
	scSwarm: {
		about: "One seed and N peers, every host capped up and down; all peers fetch at\n" +
			"once. Reports the time at which the last peer completes over the bound\n" +
			"max(F/u_s, F/d_min, N*F/(u_s + sum u_i)) (target <= 1.25), the median peer,\n" +
			"and a plain HTTP baseline (every peer GETs the file from the seed, at once):\n" +
			"its last completion and shoal's speed-up over it.",
		n: "15", seeders: 1, size: "256MiB", seedUp: "100mbit", seedDown: "100mbit", up: "100mbit", down: "100mbit", http: true, runs: 3,
	},
	scScale: {
		about: "The swarm scenario at several N: completion time vs N, with the bound and\n" +
			"the HTTP baseline (--png plots all three curves vs N).",
		n: "4,8,16,32", seeders: 1, size: "256MiB", seedUp: "100mbit", seedDown: "100mbit", up: "100mbit", down: "100mbit", http: true, runs: 1,
	},
	scMemory: {
		about: "Peak RSS (VmHWM in /proc/<pid>/status) of the daemon of one peer fetching\n" +
			"a big file from k seeders (target < 200 MiB); uncapped links by default.",
		n: "1", seeders: 4, size: "4GiB", seedUp: "none", seedDown: "none", up: "none", down: "none", runs: 1,
	},
}

const testbedUsageCommon = `
Runs as root: every host is a network namespace (<prefix>-<host>) on one
Linux bridge in namespace <prefix>-br, with an address in 10.77.0.0/24 and
its upload and download capped by tc tbf (host end of its veth: upload;
bridge end: download). Every host runs a real 'shoal daemon' (mDNS off,
listening on its address, bootstrapped from the first seeder); the seeders
'shoal share' the file, and the peers fetch it through their daemon's API,
all at once, once every peer is connected to the seeders and has seen their
catalog announcement. Every copy is checked against the source's SHA-256.
Everything made is removed at the end, also on error or Ctrl-C; namespaces
left by a crashed run with the same --prefix are removed first.

`

func testbedCmd(ctx context.Context, scenario string, args []string, out io.Writer) error {
	def := scenarios[scenario]
	fs := flag.NewFlagSet(scenario, flag.ContinueOnError)
	ns := fs.String("n", def.n, "number of fetching peers (comma-separated for several topologies)")
	seeders := fs.Int("seeders", def.seeders, "hosts that share the file before the fetch (all share the same file)")
	size := newSizeFlag(def.size)
	fs.Var(size, "size", "size of the file (KiB, MiB, GiB or bytes)")
	chunk := &sizeFlag{}
	fs.Var(chunk, "chunk-size", "the seeders share with 'shoal share --chunk-size' this (KiB, MiB or bytes; default: shoal's default)")
	seedUp, seedDown := newRateFlag(def.seedUp), newRateFlag(def.seedDown)
	up, down := newRateFlag(def.up), newRateFlag(def.down)
	fs.Var(seedUp, "seed-up", "each seeder's upload cap (tc rate: 100mbit, 1gbit; none)")
	fs.Var(seedDown, "seed-down", "each seeder's download cap")
	fs.Var(up, "up", "each peer's upload cap")
	fs.Var(down, "down", "each peer's download cap")
	runs := fs.Int("runs", def.runs, "number of runs (per N)")
	warmup := fs.Int("warmup", 0, "warm-up runs before the counted ones (per N), printed but not counted")
	httpBase := fs.Bool("http", def.http, "also run the plain HTTP baseline in each run (order alternates)")
	fetchCLI := fs.Bool("fetch-cli", false, "fetch with 'shoal fetch ROOT -o PATH --quiet' in the namespace instead of the\n"+
		"daemon's API (the same request; the API's final event also gives bytes per source)")
	dir := fs.String("dir", "", "directory for the files and homes (default: os.TempDir())")
	jsonPath := fs.String("json", "", "also write the results as JSON to this file")
	pngPath := fs.String("png", "", "also plot the results to this PNG file")
	prefix := fs.String("prefix", "shb", "name prefix of the namespaces (and of the work directory)")
	shoalBin := fs.String("shoal", "", "shoal binary to run (default: go build ./cmd/shoal into the work directory)")
	logLevel := fs.String("log-level", "warn", "the daemons' log level")
	progress := fs.Duration("progress", 0, "print a summary of the fetches' progress this often (e.g. 5s); 0: never")
	keepLogs := fs.String("keep-logs", "", "copy every daemon's log to DIR/n<N>-run<R>/<host>-daemon.log (kept after the run)")
	readyTimeout := fs.Duration("ready-timeout", 2*time.Minute, "give up when a daemon does not answer, or a peer does not see the seeders, within this")
	fetchTimeout := fs.Duration("fetch-timeout", 30*time.Minute, "give up when the downloads of one phase take longer than this")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: shoal-bench %s [flags]\n\n%s\n%s", scenario, def.about, testbedUsageCommon)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return errUsage
	}
	counts, err := parseCounts(*ns)
	if err == nil && *seeders < 1 {
		err = fmt.Errorf("--seeders %d: want at least 1", *seeders)
	}
	if err == nil && (*seeders+slicesMax(counts) > maxHosts) {
		err = fmt.Errorf("at most %d hosts", maxHosts)
	}
	if err != nil || fs.NArg() > 0 || *runs < 1 || *warmup < 0 || *readyTimeout <= 0 || *fetchTimeout <= 0 {
		if err != nil {
			fmt.Fprintln(fs.Output(), err)
		}
		fs.Usage()
		return errUsage
	}
	repro := []string{scenario, "--n", *ns, "--seeders", strconv.Itoa(*seeders), "--size", formatSize(size.n),
		"--seed-up", seedUp.String(), "--seed-down", seedDown.String(), "--up", up.String(), "--down", down.String(),
		"--runs", strconv.Itoa(*runs), "--warmup", strconv.Itoa(*warmup), "--http=" + strconv.FormatBool(*httpBase)}
	if *fetchCLI {
		repro = append(repro, "--fetch-cli")
	}
	if chunk.n != 0 {
		repro = append(repro, "--chunk-size", formatSize(chunk.n))
	}
	_, err = runTestbed(ctx, testbedOptions{
		Scenario: scenario, Ns: counts, Seeders: *seeders, Size: size.n, ChunkSize: chunk.n,
		SeedUp: seedUp.bps, SeedDown: seedDown.bps, PeerUp: up.bps, PeerDown: down.bps,
		Runs: *runs, Warmup: *warmup, HTTP: *httpBase, FetchCLI: *fetchCLI,
		Dir: *dir, JSON: *jsonPath, PNG: *pngPath, Prefix: *prefix, Shoal: *shoalBin, LogLevel: *logLevel, KeepLogs: *keepLogs, Progress: *progress,
		ReadyTimeout: *readyTimeout, FetchTimeout: *fetchTimeout, Args: repro, Out: out,
	})
	return err
}

// parseCounts reads a comma-separated list of peer counts, each at least 1.
func parseCounts(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("--n %q: want peer counts of 1 or more, such as 4,8,16", s)
		}
		out = append(out, n)
	}
	return out, nil
}

func slicesMax(xs []int) int {
	m := 0
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}
