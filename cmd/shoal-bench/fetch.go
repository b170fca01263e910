package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/trace"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/shoalnet/shoal/node"
	"github.com/shoalnet/shoal/transfer"
)

type fetchOptions struct {
	Size       int64
	Runs       int
	Warmup     int    // runs before the counted ones, not counted
	Dir        string // parent of the work directory; "" for os.TempDir()
	Discard    bool   // also measure the TLS copy into io.Discard
	JSON       string
	CPUProfile string
	Trace      string        // runtime/trace of each timed shoal fetch: PREFIX.shoal-runN.trace
	Timeline   bool          // print the shoal fetch's progress reports
	Checkpoint time.Duration // transfer.Config.CheckpointInterval; 0: the default
	ChunkSize  int64         // node.ShareOptions.ChunkSize; 0: the default
	Args       []string
	Out        io.Writer
}

// Variants measured in each run of the fetch benchmark.
const (
	varTLS    = "tls"    // plain TLS 1.3 copy into a file, fsynced
	varShoal  = "shoal"  // node.Fetch from one seed
	varNoDisk = "nodisk" // plain TLS 1.3 copy into io.Discard
)

var variantNames = map[string]string{
	varTLS:    "TLS copy",
	varShoal:  "shoal fetch",
	varNoDisk: "TLS copy, no disk",
}

// FetchRun is one run of the fetch benchmark.
type FetchRun struct {
	Run           int     `json:"run"`
	Order         string  `json:"order"`
	TLSSeconds    float64 `json:"tls_seconds"`
	ShoalSeconds  float64 `json:"shoal_seconds"`
	NoDiskSeconds float64 `json:"nodisk_seconds,omitempty"`
	TLSMBps       float64 `json:"tls_mb_per_s"`
	ShoalMBps     float64 `json:"shoal_mb_per_s"`
	NoDiskMBps    float64 `json:"nodisk_mb_per_s,omitempty"`
	Ratio         float64 `json:"shoal_over_tls"`
	DiskRatio     float64 `json:"tls_over_nodisk,omitempty"`
	// Diagnostics of the shoal fetch: the share's hashing (not timed),
	// the fetch's own elapsed time as it reports it, and its counters.
	ShareSeconds    float64 `json:"share_seconds"`
	FetchElapsed    float64 `json:"fetch_reported_seconds"`
	ShoalReceived   int64   `json:"shoal_received_bytes"`
	ShoalDuplicates int64   `json:"shoal_duplicate_chunks"`
}

// FetchResult is the fetch benchmark's outcome.
type FetchResult struct {
	Header
	Benchmark string     `json:"benchmark"`
	Size      int64      `json:"size_bytes"`
	Warmup    int        `json:"warmup_runs"`
	Transport string     `json:"shoal_transport"`
	TLSSuite  string     `json:"tls_cipher_suite"`
	Runs      []FetchRun `json:"runs"`
	Median    struct {
		TLSMBps    float64 `json:"tls_mb_per_s"`
		ShoalMBps  float64 `json:"shoal_mb_per_s"`
		NoDiskMBps float64 `json:"nodisk_mb_per_s,omitempty"`
		Ratio      float64 `json:"shoal_over_tls"`            // median of the per-run ratios
		DiskRatio  float64 `json:"tls_over_nodisk,omitempty"` // median of the per-run ratios
	} `json:"median"`
}

func fetchCmd(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("fetch", flag.ContinueOnError)
	size := newSizeFlag("1GiB")
	fs.Var(size, "size", "size of the test file (KiB, MiB, GiB or bytes)")
	warmup := fs.Int("warmup", 1, "warm-up runs before the counted ones (the first touches of fresh memory are slow on a VM)")
	runs := fs.Int("runs", 3, "number of runs")
	dir := fs.String("dir", "", "directory for the files and node homes (default: os.TempDir())")
	discard := fs.Bool("discard", false, "also measure the TLS copy into io.Discard (\"TLS copy, no disk\"): node.Fetch has no discard mode")
	jsonPath := fs.String("json", "", "also write the results as JSON to this file")
	prof := fs.String("cpuprofile", "", "write a CPU profile of each timed section to PREFIX.<variant>-runN.pprof")
	tracePrefix := fs.String("trace", "", "write an execution trace of each timed shoal fetch to PREFIX.shoal-runN.trace")
	timeline := fs.Bool("timeline", false, "print the shoal fetch's progress reports (every 200 ms)")
	checkpoint := fs.Duration("checkpoint", 0, "the fetcher's checkpoint interval (fsync + have-bitfield record); 0: the node's default")
	chunk := &sizeFlag{}
	fs.Var(chunk, "chunk-size", "the seed shares with this chunk size (KiB, MiB or bytes; default: shoal's default)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: shoal-bench fetch [flags]\n\n"+
			"A single-peer shoal fetch over loopback TCP vs a plain TLS 1.3 copy of the\n"+
			"same file into a file on the same disk, side by side in each run.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return errUsage
	}
	if fs.NArg() > 0 || *runs < 1 || *warmup < 0 {
		fs.Usage()
		return errUsage
	}
	repro := []string{"fetch", "--size", formatSize(size.n), "--runs", fmt.Sprint(*runs), "--warmup", fmt.Sprint(*warmup)}
	if *discard {
		repro = append(repro, "--discard")
	}
	if *checkpoint != 0 {
		repro = append(repro, "--checkpoint", checkpoint.String())
	}
	if *dir != "" {
		repro = append(repro, "--dir", *dir)
	}
	if chunk.n != 0 {
		repro = append(repro, "--chunk-size", formatSize(chunk.n))
	}
	_, err := runFetch(ctx, fetchOptions{
		Size: size.n, Runs: *runs, Warmup: *warmup, Dir: *dir, Discard: *discard, JSON: *jsonPath,
		CPUProfile: *prof, Trace: *tracePrefix, Timeline: *timeline, Checkpoint: *checkpoint, ChunkSize: chunk.n, Args: repro, Out: out,
	})
	return err
}

func runFetch(ctx context.Context, o fetchOptions) (*FetchResult, error) {
	res := &FetchResult{Header: newHeader(o.Args), Benchmark: "fetch", Size: o.Size, Warmup: o.Warmup}
	res.print(o.Out, o.Discard)
	fmt.Fprintf(o.Out, "runs: %d, after %d warm-up run(s), printed but not counted\n", o.Runs, o.Warmup)

	dir, cleanup, err := workDir(o.Dir)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	src := filepath.Join(dir, "source.bin")
	fmt.Fprintf(o.Out, "writing %s of random data to %s\n", formatSize(o.Size), src)
	sum, err := writeRandomFile(ctx, src, o.Size)
	if err != nil {
		return nil, ctxErr(ctx, err)
	}
	tlsCfg, err := newTLSPair()
	if err != nil {
		return nil, err
	}
	fmt.Fprintln(o.Out, "note: the source file is in the page cache; every destination is fsynced before its clock stops")
	fmt.Fprintln(o.Out)

	variants := []string{varTLS, varShoal}
	if o.Discard {
		variants = append(variants, varNoDisk)
	}
	prof := profiler{o.CPUProfile}
	for r := 1 - o.Warmup; r <= o.Runs; r++ { // r <= 0: warm-up, not counted
		// Rotate the order, so that no variant always runs first.
		k := mod(r-1, len(variants))
		order := append(append([]string(nil), variants[k:]...), variants[:k]...)
		run := FetchRun{Run: r, Order: strings.Join(order, ",")}
		for _, v := range order {
			runtime.GC()
			pname := fmt.Sprintf("%s-%s", v, runName(r))
			err := measureVariant(ctx, v, &run, res, tlsCfg, dir, src, o, sum, prof, pname)
			if err != nil {
				return nil, fmt.Errorf("%s, %s: %w", runLabel(r), variantNames[v], ctxErr(ctx, err))
			}
		}
		run.TLSMBps = float64(o.Size) / run.TLSSeconds / 1e6
		run.ShoalMBps = float64(o.Size) / run.ShoalSeconds / 1e6
		run.Ratio = run.ShoalMBps / run.TLSMBps
		line := fmt.Sprintf("%s (%s): TLS copy %.0f MB/s, shoal %.0f MB/s, shoal/TLS %.3f",
			runLabel(r), run.Order, run.TLSMBps, run.ShoalMBps, run.Ratio)
		if o.Discard {
			run.NoDiskMBps = float64(o.Size) / run.NoDiskSeconds / 1e6
			run.DiskRatio = run.TLSMBps / run.NoDiskMBps
			line += fmt.Sprintf("; TLS no disk %.0f MB/s", run.NoDiskMBps)
		}
		fmt.Fprintf(o.Out, "%s  [share %.2fs untimed; fetch reports %.2fs]\n", line, run.ShareSeconds, run.FetchElapsed)
		if r >= 1 {
			res.Runs = append(res.Runs, run)
		}
	}

	var tlss, shoals, nodisks, ratios, diskRatios []float64
	for _, r := range res.Runs {
		tlss, shoals, ratios = append(tlss, r.TLSMBps), append(shoals, r.ShoalMBps), append(ratios, r.Ratio)
		if o.Discard {
			nodisks, diskRatios = append(nodisks, r.NoDiskMBps), append(diskRatios, r.DiskRatio)
		}
	}
	m := &res.Median
	m.TLSMBps, m.ShoalMBps, m.Ratio = median(tlss), median(shoals), median(ratios)
	m.NoDiskMBps, m.DiskRatio = median(nodisks), median(diskRatios)
	res.printTable(o.Out, o.Discard)
	if o.JSON != "" {
		if err := writeJSON(o.JSON, res); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// measureVariant runs one variant, records it in run, verifies the copy
// and removes it. The timed section is profiled as pname.
func measureVariant(ctx context.Context, v string, run *FetchRun, res *FetchResult, tlsCfg *tlsPair,
	dir, src string, o fetchOptions, sum [sha256.Size]byte, prof profiler, pname string) error {
	size := o.Size
	switch v {
	case varTLS, varNoDisk:
		dst := ""
		if v == varTLS {
			dst = filepath.Join(dir, "tls-copy-"+runName(run.Run)+".bin")
			defer os.Remove(dst)
		}
		stop, err := prof.start(pname)
		if err != nil {
			return err
		}
		cr, err := tlsCopy(ctx, tlsCfg, src, dst)
		if err := errors.Join(err, stop()); err != nil {
			return err
		}
		if cr.Bytes != size {
			return fmt.Errorf("copied %d bytes, want %d", cr.Bytes, size)
		}
		res.TLSSuite = "TLS 1.3, " + cr.Suite
		if v == varNoDisk {
			run.NoDiskSeconds = cr.Elapsed.Seconds()
			return nil
		}
		run.TLSSeconds = cr.Elapsed.Seconds()
		return checkSame(dst, size, sum)
	case varShoal:
		return shoalFetch(ctx, run, res, dir, src, o, sum, prof, pname)
	}
	return fmt.Errorf("unknown variant %q", v)
}

// shoalFetch starts a seed and a fetcher in new homes under dir, shares
// src on the seed (untimed), and times the fetcher's node.Fetch of it.
func shoalFetch(ctx context.Context, run *FetchRun, res *FetchResult, dir, src string, o fetchOptions,
	sum [sha256.Size]byte, prof profiler, pname string) (err error) {
	checkpoint := func(c *node.Config) { c.Transfer.CheckpointInterval = o.Checkpoint }
	seed, err := benchNode(ctx, dir, "seed", checkpoint)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, closeBenchNode(seed)) }()
	fetcher, err := benchNode(ctx, dir, "fetcher", checkpoint)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, closeBenchNode(fetcher)) }()

	// The share's hashing is not part of the fetch time.
	t0 := time.Now()
	root, err := seed.Share(ctx, src, node.ShareOptions{ChunkSize: o.ChunkSize})
	if err != nil {
		return err
	}
	run.ShareSeconds = time.Since(t0).Seconds()
	if err := fetcher.Connect(ctx, seed.AddrInfo()); err != nil {
		return err
	}
	res.Transport = describeConn(fetcher, seed.ID())

	dst := filepath.Join(dir, "shoal-fetch-"+runName(run.Run)+".bin")
	defer os.Remove(dst)
	opts := node.FetchOptions{Peers: []peer.AddrInfo{seed.AddrInfo()}, NoDHT: true}
	if o.Timeline {
		opts.Progress = func(p transfer.Progress) {
			fmt.Fprintf(o.Out, "  %6.2fs %-9s received %5.0f MB, verified %5.0f MB, %4.0f MB/s\n",
				p.Elapsed.Seconds(), p.Phase, float64(p.Received)/1e6, float64(p.Bytes)/1e6, p.Rate/1e6)
		}
	}
	stop, err := prof.start(pname)
	if err != nil {
		return err
	}
	stopTrace, err := startTrace(o.Trace, pname)
	if err != nil {
		return errors.Join(err, stop())
	}
	start := time.Now()
	fr, err := fetcher.Fetch(ctx, root, dst, opts)
	run.ShoalSeconds = time.Since(start).Seconds()
	if perr := errors.Join(stopTrace(), stop()); err == nil {
		err = perr
	}
	if err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	run.FetchElapsed = fr.Progress.Elapsed.Seconds()
	run.ShoalReceived = fr.Progress.Received
	run.ShoalDuplicates = fr.Progress.Duplicates
	if fr.Path != dst {
		return fmt.Errorf("fetch wrote %s, want %s", fr.Path, dst)
	}
	return checkSame(dst, o.Size, sum)
}

// startTrace starts an execution trace to prefix.name.trace when prefix
// is set; the returned function ends it.
func startTrace(prefix, name string) (func() error, error) {
	if prefix == "" {
		return func() error { return nil }, nil
	}
	f, err := os.Create(prefix + "." + name + ".trace")
	if err != nil {
		return nil, err
	}
	if err := trace.Start(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() error {
		trace.Stop()
		return f.Close()
	}, nil
}

// describeConn names the transport, security and multiplexer of a's
// connection to p.
func describeConn(a *node.Node, p peer.ID) string {
	conns := a.Host().Network().ConnsToPeer(p)
	if len(conns) == 0 {
		return "unknown (no connection)"
	}
	st := conns[0].ConnState()
	return fmt.Sprintf("libp2p %s + %s + %s (%s)", st.Transport, st.Security, st.StreamMultiplexer, conns[0].RemoteMultiaddr())
}

func (res *FetchResult) print(w io.Writer, discard bool) {
	res.Header.print(w)
	fmt.Fprintf(w, "benchmark: fetch; %s file, one seed, one fetcher, loopback TCP, one process\n", formatSize(res.Size))
	fmt.Fprintln(w, "  TLS copy: crypto/tls server (TLS 1.3, self-signed ECDSA P-256) io.Copy of the file on 127.0.0.1;")
	fmt.Fprintln(w, "            client writes the stream to a file in 1 MiB writes and fsyncs it; timed from dial to fsync")
	fmt.Fprintln(w, "  shoal:    node.Fetch(root, dst, {Peers: [seed], NoDHT: true}) after Share and Connect (untimed);")
	fmt.Fprintln(w, "            writes a temporary file beside dst, fsyncs, renames; timed from call to return")
	if discard {
		fmt.Fprintln(w, "  TLS copy, no disk: the TLS copy into io.Discard (node.Fetch has no discard mode)")
	}
}

func (res *FetchResult) printTable(w io.Writer, discard bool) {
	fmt.Fprintln(w)
	fmt.Fprintf(w, "shoal transport: %s\n", res.Transport)
	fmt.Fprintf(w, "baseline:        %s\n", res.TLSSuite)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := "run\torder\tTLS copy MB/s\tshoal MB/s\tshoal/TLS\t"
	if discard {
		head += "TLS no disk MB/s\tTLS/no disk\t"
	}
	fmt.Fprintln(tw, head)
	for _, r := range res.Runs {
		line := fmt.Sprintf("%d\t%s\t%.0f\t%.0f\t%.3f\t", r.Run, r.Order, r.TLSMBps, r.ShoalMBps, r.Ratio)
		if discard {
			line += fmt.Sprintf("%.0f\t%.3f\t", r.NoDiskMBps, r.DiskRatio)
		}
		fmt.Fprintln(tw, line)
	}
	m := res.Median
	line := fmt.Sprintf("median\t\t%.0f\t%.0f\t%.3f\t", m.TLSMBps, m.ShoalMBps, m.Ratio)
	if discard {
		line += fmt.Sprintf("%.0f\t%.3f\t", m.NoDiskMBps, m.DiskRatio)
	}
	fmt.Fprintln(tw, line)
	tw.Flush()
	var ratios []float64
	for _, r := range res.Runs {
		ratios = append(ratios, r.Ratio)
	}
	lo, hi := spread(ratios)
	fmt.Fprintf(w, "shoal/TLS per run: %.3f to %.3f\n", lo, hi)
	fmt.Fprintln(w, "(MB/s = 10^6 bytes/s; ratios are medians of the per-run ratios)")
}
