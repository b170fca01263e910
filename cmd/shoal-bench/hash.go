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
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	mh "github.com/multiformats/go-multihash"

	"github.com/shoalnet/shoal/transfer/manifest"
)

// hashChunk is the chunk size of both measurements (the default chunk
// size of a share).
const hashChunk = manifest.DefaultChunkSize

type hashOptions struct {
	Size       int64
	Runs       int
	Warmup     int    // runs before the counted ones, not counted
	Dir        string // parent of the work directory; "" for os.TempDir()
	JSON       string // write the results here too, if set
	CPUProfile string // profile prefix, if set
	Args       []string
	Out        io.Writer
}

// HashRun is one run of the hash benchmark.
type HashRun struct {
	Run          int     `json:"run"`
	Order        string  `json:"order"`
	RawSeconds   float64 `json:"raw_seconds"`
	HotSeconds   float64 `json:"hot_seconds"`
	BuildSeconds float64 `json:"build_seconds"`
	RawMBps      float64 `json:"raw_mb_per_s"`
	HotMBps      float64 `json:"hot_mb_per_s"`
	BuildMBps    float64 `json:"build_mb_per_s"`
	Ratio        float64 `json:"build_over_raw"`
	HotRatio     float64 `json:"build_over_hot"`
}

// HashResult is the hash benchmark's outcome.
type HashResult struct {
	Header
	Benchmark string    `json:"benchmark"`
	Size      int64     `json:"size_bytes"`
	Warmup    int       `json:"warmup_runs"`
	ChunkSize int64     `json:"chunk_size_bytes"`
	Workers   int       `json:"workers"`
	Runs      []HashRun `json:"runs"`
	Median    struct {
		RawMBps   float64 `json:"raw_mb_per_s"`
		HotMBps   float64 `json:"hot_mb_per_s"`
		BuildMBps float64 `json:"build_mb_per_s"`
		Ratio     float64 `json:"build_over_raw"` // median of the per-run ratios
		HotRatio  float64 `json:"build_over_hot"` // median of the per-run ratios
	} `json:"median"`
	Note string `json:"note"`
}

const hashNote = "the file is in the page cache after it is written (nothing is dropped): every figure is CPU-bound hashing, not disk reads"

func hashCmd(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("hash", flag.ContinueOnError)
	size := newSizeFlag("1GiB")
	fs.Var(size, "size", "size of the test file (KiB, MiB, GiB or bytes)")
	warmup := fs.Int("warmup", 1, "warm-up runs before the counted ones (the first touches of fresh memory are slow on a VM)")
	runs := fs.Int("runs", 5, "number of runs")
	dir := fs.String("dir", "", "directory for the test file (default: os.TempDir())")
	jsonPath := fs.String("json", "", "also write the results as JSON to this file")
	prof := fs.String("cpuprofile", "", "write a CPU profile of each BuildFromPath run to PREFIX.build-runN.pprof")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: shoal-bench hash [flags]\n\n"+
			"BLAKE3-256 of 1 MiB chunks on GOMAXPROCS goroutines from memory, vs\n"+
			"manifest.BuildFromPath of the same file (from the page cache).\n\n")
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
	repro := []string{"hash", "--size", formatSize(size.n), "--runs", fmt.Sprint(*runs), "--warmup", fmt.Sprint(*warmup)}
	if *dir != "" {
		repro = append(repro, "--dir", *dir)
	}
	_, err := runHash(ctx, hashOptions{
		Size: size.n, Runs: *runs, Warmup: *warmup, Dir: *dir, JSON: *jsonPath, CPUProfile: *prof,
		Args: repro, Out: out,
	})
	return err
}

func runHash(ctx context.Context, o hashOptions) (*HashResult, error) {
	res := &HashResult{
		Header: newHeader(o.Args), Benchmark: "hash", Size: o.Size, Warmup: o.Warmup,
		ChunkSize: hashChunk, Workers: runtime.GOMAXPROCS(0), Note: hashNote,
	}
	res.print(o.Out)
	fmt.Fprintf(o.Out, "runs: %d, after %d warm-up run(s), printed but not counted\n", o.Runs, o.Warmup)

	dir, cleanup, err := workDir(o.Dir)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	path := filepath.Join(dir, "data.bin")
	fmt.Fprintf(o.Out, "writing %s of random data to %s\n", formatSize(o.Size), path)
	if _, err := writeRandomFile(ctx, path, o.Size); err != nil {
		return nil, ctxErr(ctx, err)
	}
	// The raw figure hashes from memory: read the file once, untimed.
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(o.Out, "note: %s\n\n", hashNote)

	prof := profiler{o.CPUProfile}
	for r := 1 - o.Warmup; r <= o.Runs; r++ { // r <= 0: warm-up, not counted
		run := HashRun{Run: r}
		var raw []byte
		var built *manifest.BuildResult
		measure := map[string]func() error{
			"raw": func() error {
				start := time.Now()
				var err error
				raw, err = hashParallel(ctx, data, hashChunk, res.Workers)
				run.RawSeconds = time.Since(start).Seconds()
				return err
			},
			"hot": func() error {
				start := time.Now()
				err := hashHot(ctx, data, hashChunk, res.Workers)
				run.HotSeconds = time.Since(start).Seconds()
				return err
			},
			"build": func() error {
				stop, err := prof.start("build-" + runName(r))
				if err != nil {
					return err
				}
				start := time.Now()
				built, err = manifest.BuildFromPath(ctx, path, manifest.BuildOptions{})
				run.BuildSeconds = time.Since(start).Seconds()
				return errors.Join(err, stop())
			},
		}
		// Rotate the order, so that none always runs on a warmer machine.
		names := []string{"raw", "build", "hot"}
		k := mod(r-1, len(names))
		order := append(append([]string(nil), names[k:]...), names[:k]...)
		run.Order = strings.Join(order, ",")
		for _, name := range order {
			runtime.GC()
			if err := measure[name](); err != nil {
				return nil, ctxErr(ctx, err)
			}
		}
		// Both must have computed the same digests.
		if !bytes.Equal(raw, built.Manifest.Digests) {
			return nil, fmt.Errorf("%s: BuildFromPath's chunk digests differ from BLAKE3-256 of the same chunks", runLabel(r))
		}
		run.RawMBps = float64(o.Size) / run.RawSeconds / 1e6
		run.HotMBps = float64(o.Size) / run.HotSeconds / 1e6
		run.BuildMBps = float64(o.Size) / run.BuildSeconds / 1e6
		run.Ratio = run.BuildMBps / run.RawMBps
		run.HotRatio = run.BuildMBps / run.HotMBps
		if r >= 1 {
			res.Runs = append(res.Runs, run)
		}
		fmt.Fprintf(o.Out, "%s (%s): raw %.0f MB/s, cache-hot %.0f MB/s, build %.0f MB/s, build/raw %.3f, build/hot %.3f\n",
			runLabel(r), run.Order, run.RawMBps, run.HotMBps, run.BuildMBps, run.Ratio, run.HotRatio)
	}
	var raws, hots, builds, ratios, hotRatios []float64
	for _, r := range res.Runs {
		raws, hots, builds = append(raws, r.RawMBps), append(hots, r.HotMBps), append(builds, r.BuildMBps)
		ratios, hotRatios = append(ratios, r.Ratio), append(hotRatios, r.HotRatio)
	}
	m := &res.Median
	m.RawMBps, m.HotMBps, m.BuildMBps = median(raws), median(hots), median(builds)
	m.Ratio, m.HotRatio = median(ratios), median(hotRatios)
	res.printTable(o.Out)
	if o.JSON != "" {
		if err := writeJSON(o.JSON, res); err != nil {
			return nil, err
		}
	}
	return res, nil
}

func (res *HashResult) print(w io.Writer) {
	res.Header.print(w)
	fmt.Fprintf(w, "benchmark: hash; %s file, %s chunks, BLAKE3-256, %d hashing goroutines\n",
		formatSize(res.Size), formatSize(res.ChunkSize), res.Workers)
	fmt.Fprintln(w, "  raw:   manifest.NewHasher(BLAKE3).Sum of each chunk, from memory, on GOMAXPROCS goroutines")
	fmt.Fprintln(w, "  hot:   the same number of chunks, each goroutine hashing its own cache-resident 1 MiB copy")
	fmt.Fprintln(w, "         (BLAKE3's compute ceiling, without reads from DRAM)")
	fmt.Fprintln(w, "  build: manifest.BuildFromPath (read + chunk + hash + manifest blocks)")
}

func (res *HashResult) printTable(w io.Writer) {
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "run\torder\traw BLAKE3 MB/s\tcache-hot MB/s\tBuildFromPath MB/s\tbuild/raw\tbuild/hot\t")
	for _, r := range res.Runs {
		fmt.Fprintf(tw, "%d\t%s\t%.0f\t%.0f\t%.0f\t%.3f\t%.3f\t\n", r.Run, r.Order, r.RawMBps, r.HotMBps, r.BuildMBps, r.Ratio, r.HotRatio)
	}
	m := res.Median
	fmt.Fprintf(tw, "median\t\t%.0f\t%.0f\t%.0f\t%.3f\t%.3f\t\n", m.RawMBps, m.HotMBps, m.BuildMBps, m.Ratio, m.HotRatio)
	tw.Flush()
	var ratios []float64
	for _, r := range res.Runs {
		ratios = append(ratios, r.Ratio)
	}
	lo, hi := spread(ratios)
	fmt.Fprintf(w, "build/raw per run: %.3f to %.3f\n", lo, hi)
	fmt.Fprintln(w, "(MB/s = 10^6 bytes/s; ratios are medians of the per-run ratios)")
}

// hashParallel returns the BLAKE3-256 digests of data's chunks, hashed by
// workers goroutines that take chunks in turn.
func hashParallel(ctx context.Context, data []byte, chunk int64, workers int) ([]byte, error) {
	n := (int64(len(data)) + chunk - 1) / chunk
	digests := make([]byte, n*manifest.DigestSize)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		h, err := manifest.NewHasher(mh.BLAKE3)
		if err != nil {
			return nil, err
		}
		wg.Go(func() {
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= n {
					return
				}
				d := i * manifest.DigestSize
				h.Sum(digests[d:d:d+manifest.DigestSize], data[i*chunk:min((i+1)*chunk, int64(len(data)))])
			}
		})
	}
	wg.Wait()
	return digests, ctx.Err()
}

// hashHot hashes as many chunks as data has, but each goroutine hashes
// its own copy of data's first chunk again and again: the data stays in
// the core's cache, so this is BLAKE3's compute speed alone.
func hashHot(ctx context.Context, data []byte, chunk int64, workers int) error {
	n := (int64(len(data)) + chunk - 1) / chunk
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		h, err := manifest.NewHasher(mh.BLAKE3)
		if err != nil {
			return err
		}
		wg.Go(func() {
			buf := append([]byte(nil), data[:min(chunk, int64(len(data)))]...)
			var sum [manifest.DigestSize]byte
			for ctx.Err() == nil && next.Add(1) <= n {
				h.Sum(sum[:0], buf)
			}
		})
	}
	wg.Wait()
	return ctx.Err()
}
