package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"text/tabwriter"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/shoalnet/shoal/node"
)

// TTFBRun is one run of the ttfb benchmark.
type TTFBRun struct {
	Run int `json:"run"`
	// FirstSeconds: node.Open of a share not held, to its first byte.
	FirstSeconds float64 `json:"first_byte_seconds"`
	// MiddleSeconds: then a seek to the middle, to the byte there.
	MiddleSeconds float64 `json:"middle_byte_seconds"`
	// FullSeconds: a fetch of the whole share by a node that does not
	// hold it, into a file, fsynced.
	FullSeconds float64 `json:"full_fetch_seconds"`
	Ratio       float64 `json:"first_over_full"`
}

// TTFBResult is the ttfb benchmark's outcome.
type TTFBResult struct {
	Header
	Benchmark string    `json:"benchmark"`
	Size      int64     `json:"size_bytes"`
	Warmup    int       `json:"warmup_runs"`
	Runs      []TTFBRun `json:"runs"`
	Median    struct {
		FirstSeconds  float64 `json:"first_byte_seconds"`
		MiddleSeconds float64 `json:"middle_byte_seconds"`
		FullSeconds   float64 `json:"full_fetch_seconds"`
		Ratio         float64 `json:"first_over_full"` // median of the per-run ratios
	} `json:"median"`
}

func ttfbCmd(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("ttfb", flag.ContinueOnError)
	size := newSizeFlag("1GiB")
	fs.Var(size, "size", "size of the shared file (KiB, MiB, GiB or bytes)")
	runs := fs.Int("runs", 5, "number of runs")
	warmup := fs.Int("warmup", 1, "warm-up runs before the counted ones")
	dir := fs.String("dir", "", "directory for the file and node homes (default: os.TempDir())")
	jsonPath := fs.String("json", "", "also write the results as JSON to this file")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: shoal-bench ttfb [flags]\n\n"+
			"Time to the first byte of a share that is not held yet (node.Open, as the\n"+
			"gateway and `shoal cat` use it), and to a byte in its middle after a seek,\n"+
			"vs the time of a whole fetch of it, over loopback TCP from one seed.\n\n")
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
	repro := []string{"ttfb", "--size", formatSize(size.n), "--runs", fmt.Sprint(*runs), "--warmup", fmt.Sprint(*warmup)}
	if *dir != "" {
		repro = append(repro, "--dir", *dir)
	}
	res := &TTFBResult{Header: newHeader(repro), Benchmark: "ttfb", Size: size.n, Warmup: *warmup}
	res.Header.print(out)
	fmt.Fprintf(out, "file:     %s, one seed, loopback TCP; runs: %d after %d warm-up run(s)\n", formatSize(size.n), *runs, *warmup)

	work, cleanup, err := workDir(*dir)
	if err != nil {
		return err
	}
	defer cleanup()
	src := filepath.Join(work, "source.bin")
	if _, err := writeRandomFile(ctx, src, size.n); err != nil {
		return ctxErr(ctx, err)
	}
	seed, err := benchNode(ctx, work, "seed")
	if err != nil {
		return err
	}
	defer closeBenchNode(seed)
	root, err := seed.Share(ctx, src, node.ShareOptions{})
	if err != nil {
		return err
	}
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	fmt.Fprintln(out)
	for r := 1 - *warmup; r <= *runs; r++ {
		runtime.GC()
		run := TTFBRun{Run: r}
		if err := measureTTFB(ctx, &run, work, seed, root, f, size.n); err != nil {
			return fmt.Errorf("%s: %w", runLabel(r), ctxErr(ctx, err))
		}
		runtime.GC()
		if err := measureFull(ctx, &run, work, seed, root); err != nil {
			return fmt.Errorf("%s: %w", runLabel(r), ctxErr(ctx, err))
		}
		run.Ratio = run.FirstSeconds / run.FullSeconds
		fmt.Fprintf(out, "%s: first byte %.3fs, middle byte after a seek %.3fs, whole fetch %.2fs, first/whole %.4f\n",
			runLabel(r), run.FirstSeconds, run.MiddleSeconds, run.FullSeconds, run.Ratio)
		if r >= 1 {
			res.Runs = append(res.Runs, run)
		}
	}
	var first, middle, full, ratio []float64
	for _, r := range res.Runs {
		first, middle, full, ratio = append(first, r.FirstSeconds), append(middle, r.MiddleSeconds),
			append(full, r.FullSeconds), append(ratio, r.Ratio)
	}
	m := &res.Median
	m.FirstSeconds, m.MiddleSeconds, m.FullSeconds, m.Ratio = median(first), median(middle), median(full), median(ratio)
	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "median of %d runs\tfirst byte\tmiddle byte (seek)\twhole fetch\tfirst/whole\n", len(res.Runs))
	lo, hi := spread(first)
	fmt.Fprintf(tw, "\t%.3fs (%.3f-%.3f)\t%.3fs\t%.2fs\t%.4f\n", m.FirstSeconds, lo, hi, m.MiddleSeconds, m.FullSeconds, m.Ratio)
	tw.Flush()
	if *jsonPath != "" {
		return writeJSON(*jsonPath, res)
	}
	return nil
}

// measureTTFB opens root on a new node that knows the seed holds it, and
// times the first byte, then a byte in the middle; each is checked
// against the source.
func measureTTFB(ctx context.Context, run *TTFBRun, work string, seed *node.Node, root cid.Cid, src *os.File, size int64) (err error) {
	reader, err := benchNode(ctx, work, "reader")
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, closeBenchNode(reader)) }()
	if err := reader.Connect(ctx, seed.AddrInfo()); err != nil {
		return err
	}
	// Untimed: the reader learns who holds the root, as a cluster's
	// catalog tells its members.
	if err := reader.SyncCatalog(ctx, seed.ID()); err != nil {
		return err
	}
	// byteAt reads the byte at off and returns when it came.
	byteAt := func(r io.ReadSeeker, off int64) (time.Time, error) {
		if _, err := r.Seek(off, io.SeekStart); err != nil {
			return time.Time{}, err
		}
		got := make([]byte, 1)
		if _, err := io.ReadFull(r, got); err != nil {
			return time.Time{}, err
		}
		at := time.Now()
		want := make([]byte, 1)
		if _, err := src.ReadAt(want, off); err != nil {
			return time.Time{}, err
		}
		if !bytes.Equal(got, want) {
			return time.Time{}, fmt.Errorf("byte %d differs from the source", off)
		}
		return at, nil
	}
	start := time.Now()
	r, err := reader.Open(ctx, root, "")
	if err != nil {
		return err
	}
	defer r.Close()
	at, err := byteAt(r, 0)
	if err != nil {
		return err
	}
	run.FirstSeconds = at.Sub(start).Seconds()
	start = time.Now()
	at, err = byteAt(r, size/2+12345)
	if err != nil {
		return err
	}
	run.MiddleSeconds = at.Sub(start).Seconds()
	return nil
}

// measureFull times a whole fetch of root by a new node.
func measureFull(ctx context.Context, run *TTFBRun, work string, seed *node.Node, root cid.Cid) (err error) {
	fetcher, err := benchNode(ctx, work, "fetcher")
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, closeBenchNode(fetcher)) }()
	if err := fetcher.Connect(ctx, seed.AddrInfo()); err != nil {
		return err
	}
	dst := filepath.Join(fetcher.Home(), "whole.bin")
	start := time.Now()
	_, err = fetcher.Fetch(ctx, root, dst, node.FetchOptions{Peers: []peer.AddrInfo{seed.AddrInfo()}, NoDHT: true})
	run.FullSeconds = time.Since(start).Seconds()
	return err
}

// benchNode starts a node on loopback TCP in a new home under dir, its
// configuration changed by edit.
func benchNode(ctx context.Context, dir, name string, edit ...func(*node.Config)) (*node.Node, error) {
	home, err := os.MkdirTemp(dir, name+"-home-")
	if err != nil {
		return nil, err
	}
	cfg := node.DefaultConfig()
	cfg.Home = home
	cfg.ListenAddrs = []string{"/ip4/127.0.0.1/tcp/0"}
	for _, e := range edit {
		e(&cfg)
	}
	n, err := node.New(ctx, cfg)
	if err != nil {
		os.RemoveAll(home)
		return nil, fmt.Errorf("start %s node: %w", name, err)
	}
	return n, nil
}

func closeBenchNode(n *node.Node) error {
	err := n.Close()
	return errors.Join(err, os.RemoveAll(n.Home()))
}
