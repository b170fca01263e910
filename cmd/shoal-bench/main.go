// Command shoal-bench measures shoal's performance figures as ratios
// against a baseline measured in the same run, on the same machine:
//
//	shoal-bench hash  [--size 1GiB] [--runs 5] [--warmup 1] [--dir DIR] [--json FILE] [--cpuprofile PREFIX]
//	shoal-bench fetch [--size 1GiB] [--runs 3] [--warmup 1] [--dir DIR] [--discard] [--json FILE]
//	                  [--cpuprofile PREFIX] [--trace PREFIX] [--timeline] [--checkpoint DURATION]
//	shoal-bench ttfb  [--size 1GiB] [--runs 5] [--warmup 1] [--dir DIR] [--json FILE]
//	shoal-bench repair [--nodes 20] [--roots 10] [--size 16MiB] [--replicas 3] [--fail 1,2,5] [--runs 3]
//	                  [--probe 200ms] [--dir DIR] [--json FILE]
//	shoal-bench members [--n 10,25,50] [--runs 3] [--interval 200ms] [--timeout 100ms] [--steady 10s]
//	                  [--settle 5s] [--sync 30s] [--limit 2m] [--json FILE]
//	shoal-bench ksource|swarm|scale|memory [--n 15] [--seeders 1] [--size 256MiB]
//	                  [--seed-up 100mbit] [--up 100mbit] [--down 100mbit] [--runs 3] [--warmup 0]
//	                  [--http] [--json FILE] [--png FILE] [--prefix shb] [--shoal PATH]
//
// hash compares manifest.BuildFromPath with BLAKE3-256 on all cores from
// memory (and from cache); fetch compares a single-peer shoal fetch over
// loopback TCP with a plain TLS 1.3 copy of the same bytes. Each prints
// the command that reproduces it, the machine and the date, the per-run
// figures, their medians and the median of the per-run ratios; the
// measurements of a run are taken side by side, in an order that rotates
// from run to run. ksource, swarm, scale and memory run real shoal
// daemons in network namespaces with tbf-shaped links (as root; see
// netns.go). BENCHMARKS.md at the repository root records the
// results.
//
// Files go in a new directory under --dir (default os.TempDir()), removed
// at the end, also on error, SIGINT or SIGTERM, or when the output
// cannot be written.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `usage: shoal-bench <command> [flags]

commands:
  hash   BLAKE3 on all cores vs manifest.BuildFromPath
  fetch  single-peer shoal fetch vs a plain TLS 1.3 copy over loopback
  ttfb   first byte of a share not held yet (node.Open) vs a whole fetch of it
  members  shoal's membership protocol vs hashicorp/memberlist
  repair   replicas restored after 1, 2 and 5 holders crash in a 20-member cluster

network-namespace testbed (root; real 'shoal daemon's on tbf-shaped links):
  ksource  one peer fetching from 4 seeders capped at 100 Mbit/s: throughput / sum of caps
  swarm    seed + 15 peers at 100 Mbit/s: last completion / bound, vs plain HTTP from the seed
  scale    the swarm at N = 4,8,16,32: completion time vs N, bound and HTTP
  memory   peak RSS of a daemon fetching 4 GiB from 4 seeders
  chunktrace  where the chunks' time went in a run, from its daemons' debug logs

Run 'shoal-bench <command> -h' for the flags of a command.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// Output piped into head must not kill the program before its
	// clean-up: a failed write to stdout cancels the run instead.
	signal.Ignore(syscall.SIGPIPE)
	ctx, cancel := context.WithCancel(ctx)
	err := run(ctx, os.Args[1:], &cancelOnError{w: os.Stdout, cancel: cancel})
	cancel()
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "shoal-bench:", err)
		os.Exit(1)
	}
}

// errUsage: the command line was wrong; the usage was printed.
var errUsage = errors.New("bad usage")

func run(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return errUsage
	}
	switch args[0] {
	case "hash":
		return hashCmd(ctx, args[1:], out)
	case "fetch":
		return fetchCmd(ctx, args[1:], out)
	case "ttfb":
		return ttfbCmd(ctx, args[1:], out)
	case "members":
		return membersCmd(ctx, args[1:], out)
	case "repair":
		return repairCmd(ctx, args[1:], out)
	case scKSource, scSwarm, scScale, scMemory:
		return testbedCmd(ctx, args[0], args[1:], out)
	case "chunktrace":
		return chunktraceCmd(args[1:], out)
	case "http-serve": // hidden: the testbed's HTTP baseline, run in a namespace
		return httpServeCmd(ctx, args[1:], out)
	case "http-get": // hidden: likewise
		return httpGetCmd(ctx, args[1:], out)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(out, usage)
		return nil
	}
	fmt.Fprint(os.Stderr, usage)
	return fmt.Errorf("%w: unknown command %q", errUsage, args[0])
}

// cancelOnError passes writes to w and calls cancel when one fails.
type cancelOnError struct {
	w      io.Writer
	cancel context.CancelFunc
}

func (c *cancelOnError) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	if err != nil {
		c.cancel()
	}
	return n, err
}
