package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/metrics"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/shoalnet/shoal/node"
	"github.com/shoalnet/shoal/transfer/wire"
)

// RepairRun is one run of the repair benchmark for one failure count.
type RepairRun struct {
	Run      int `json:"run"`
	Failures int `json:"failures"`
	// LostReplicas and LostBytes: the copies the failed members held.
	LostReplicas int   `json:"lost_replicas"`
	LostBytes    int64 `json:"lost_bytes"`
	// CopiesBefore: complete copies on storers before the crashes (more
	// than roots x replicas while surplus copies wait out their grace).
	CopiesBefore int `json:"copies_before"`
	// DetectSeconds: from the crashes until every survivor saw them dead.
	DetectSeconds float64 `json:"detect_seconds"`
	// RestoreSeconds: from the crashes until every root had its count of
	// complete copies on live members again.
	RestoreSeconds float64 `json:"restore_seconds"`
	// RepairBytes: bytes the survivors received over the transfer
	// protocol meanwhile (chunks, manifests, have-messages).
	RepairBytes int64   `json:"repair_bytes"`
	Traffic     float64 `json:"traffic_over_lost"`
}

// RepairResult is the repair benchmark's outcome.
type RepairResult struct {
	Header
	Benchmark string      `json:"benchmark"`
	Nodes     int         `json:"nodes"`
	Roots     int         `json:"roots"`
	Size      int64       `json:"root_size_bytes"`
	Replicas  int         `json:"replicas"`
	Probe     string      `json:"probe_interval"`
	Runs      []RepairRun `json:"runs"`
}

func repairCmd(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("repair", flag.ContinueOnError)
	nodes := fs.Int("nodes", 20, "members of the cluster: one publisher and nodes-1 storers")
	roots := fs.Int("roots", 10, "roots shared, each asking for --replicas copies")
	size := newSizeFlag("16MiB")
	fs.Var(size, "size", "size of each root (KiB, MiB, GiB or bytes)")
	replicas := fs.Int("replicas", 3, "copies asked of each root")
	failList := fs.String("fail", "1,2,5", "numbers of holders crashed at once, one cluster each")
	runs := fs.Int("runs", 3, "runs of each failure count")
	probe := fs.Duration("probe", 200*time.Millisecond, "membership probe interval")
	dir := fs.String("dir", "", "directory for the files and node homes (default: os.TempDir())")
	jsonPath := fs.String("json", "", "also write the results as JSON to this file")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: shoal-bench repair [flags]\n\n"+
			"Replication self-healing in one process over loopback: a publisher shares\n"+
			"--roots roots asking for --replicas copies each; once the storers hold\n"+
			"them, the storers holding the most copies crash (their hosts close\n"+
			"without a word). Measured: the time until every survivor declared them\n"+
			"dead, the time until every root has its count of complete copies on\n"+
			"live members again, and the bytes the survivors received meanwhile as a\n"+
			"multiple of the bytes the crashed members held (goal: close to 1).\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return errUsage
	}
	var fails []int
	for _, f := range strings.Split(*failList, ",") {
		k, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || k < 1 || k > *nodes-1-*replicas {
			fmt.Fprintf(fs.Output(), "--fail %q: want counts from 1 to nodes-1-replicas\n", *failList)
			return errUsage
		}
		fails = append(fails, k)
	}
	if fs.NArg() > 0 || *runs < 1 || *nodes < 3 || *roots < 1 || *replicas < 1 || *replicas > *nodes-1 {
		fs.Usage()
		return errUsage
	}
	repro := []string{"repair", "--nodes", fmt.Sprint(*nodes), "--roots", fmt.Sprint(*roots), "--size", formatSize(size.n),
		"--replicas", fmt.Sprint(*replicas), "--fail", *failList, "--runs", fmt.Sprint(*runs), "--probe", probe.String()}
	if *dir != "" {
		repro = append(repro, "--dir", *dir)
	}
	res := &RepairResult{Header: newHeader(repro), Benchmark: "repair", Nodes: *nodes, Roots: *roots, Size: size.n,
		Replicas: *replicas, Probe: probe.String()}
	res.Header.print(out)
	fmt.Fprintf(out, "cluster:  %d members (1 publisher, %d storers), %d roots of %s, %d copies each, probe %v\n\n",
		*nodes, *nodes-1, *roots, formatSize(size.n), *replicas, *probe)

	work, cleanup, err := workDir(*dir)
	if err != nil {
		return err
	}
	defer cleanup()
	var srcs []string
	for i := range *roots {
		p := filepath.Join(work, fmt.Sprintf("root-%02d.bin", i))
		if _, err := writeRandomFile(ctx, p, size.n); err != nil {
			return ctxErr(ctx, err)
		}
		srcs = append(srcs, p)
	}
	for _, f := range fails {
		for r := 1; r <= *runs; r++ {
			runtime.GC()
			run := RepairRun{Run: r, Failures: f}
			c := repairCluster{work: work, n: *nodes, probe: *probe, replicas: *replicas}
			if err := c.measure(ctx, &run, srcs); err != nil {
				return fmt.Errorf("%d failures, run %d: %w", f, r, ctxErr(ctx, err))
			}
			fmt.Fprintf(out, "%d failed, run %d: %d copies of %d lost (%s); dead everywhere after %.2fs, restored after %.2fs; repair traffic %s = %.2f x lost\n",
				f, r, run.LostReplicas, run.CopiesBefore, formatSize(run.LostBytes), run.DetectSeconds, run.RestoreSeconds, formatSize(run.RepairBytes), run.Traffic)
			res.Runs = append(res.Runs, run)
		}
	}
	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "failed\tcopies lost (median)\tdetected (median)\trestored (median, range)\ttraffic / lost (median, range)\n")
	for _, f := range fails {
		var det, rest, traffic, lost []float64
		for _, r := range res.Runs {
			if r.Failures == f {
				det, rest, traffic = append(det, r.DetectSeconds), append(rest, r.RestoreSeconds), append(traffic, r.Traffic)
				lost = append(lost, float64(r.LostReplicas))
			}
		}
		rlo, rhi := spread(rest)
		tlo, thi := spread(traffic)
		fmt.Fprintf(tw, "%d\t%.0f\t%.2fs\t%.2fs (%.2f-%.2f)\t%.3f (%.3f-%.3f)\n", f, median(lost), median(det), median(rest), rlo, rhi, median(traffic), tlo, thi)
	}
	tw.Flush()
	if *jsonPath != "" {
		return writeJSON(*jsonPath, res)
	}
	return nil
}

type repairCluster struct {
	work     string
	n        int
	probe    time.Duration
	replicas int
	nodes    []*node.Node
	bw       []*metrics.BandwidthCounter
}

func (c *repairCluster) start(ctx context.Context) error {
	c.nodes = make([]*node.Node, c.n)
	c.bw = make([]*metrics.BandwidthCounter, c.n)
	edit := func(i int) func(*node.Config) {
		return func(cfg *node.Config) {
			c.bw[i] = metrics.NewBandwidthCounter()
			cfg.Libp2pOptions = append(cfg.Libp2pOptions, libp2p.BandwidthReporter(c.bw[i]))
			cfg.Membership.ProbeInterval = c.probe
			cfg.Membership.ProbeTimeout = c.probe / 2
			cfg.Membership.SyncInterval = 5 * c.probe
			cfg.Replication = node.ReplicationConfig{Storer: i != 0, Grace: 2 * time.Second, Interval: time.Second}
			if i > 0 {
				cfg.BootstrapPeers = []peer.AddrInfo{c.nodes[0].AddrInfo()}
			}
		}
	}
	var err error
	if c.nodes[0], err = benchNode(ctx, c.work, "publisher", edit(0)); err != nil {
		return err
	}
	var wg sync.WaitGroup
	errs := make([]error, c.n)
	for i := 1; i < c.n; i++ {
		wg.Go(func() { c.nodes[i], errs[i] = benchNode(ctx, c.work, fmt.Sprintf("storer%02d", i), edit(i)) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (c *repairCluster) close() {
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		if n != nil {
			wg.Go(func() { closeBenchNode(n) })
		}
	}
	wg.Wait()
}

// copies returns, per root, the live members holding it complete.
func (c *repairCluster) copies(roots []cid.Cid, down map[int]bool) map[cid.Cid][]int {
	out := make(map[cid.Cid][]int)
	for i, n := range c.nodes {
		if down[i] || i == 0 {
			continue
		}
		for _, s := range n.Shares() {
			if s.Stale == "" && slices.Contains(roots, s.Root) {
				out[s.Root] = append(out[s.Root], i)
			}
		}
	}
	return out
}

func (c *repairCluster) inbound(down map[int]bool) int64 {
	var sum int64
	for i, bw := range c.bw {
		if !down[i] {
			sum += bw.GetBandwidthForProtocol(wire.ProtocolID).TotalIn
		}
	}
	return sum
}

// settledInbound returns the survivors' inbound transfer bytes once the
// counters stop moving: libp2p's meters fold new bytes into their totals
// about once a second, so a total read at once lags the traffic.
func (c *repairCluster) settledInbound(ctx context.Context, down map[int]bool) (int64, error) {
	last := c.inbound(down)
	for {
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(1500 * time.Millisecond):
		}
		now := c.inbound(down)
		if now == last {
			return now, nil
		}
		last = now
	}
}

// pollUntil calls cond every 20ms until it holds or ctx ends.
func pollUntil(ctx context.Context, limit time.Duration, what string, cond func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

func (c *repairCluster) measure(ctx context.Context, run *RepairRun, srcs []string) error {
	defer c.close()
	if err := c.start(ctx); err != nil {
		return err
	}
	if err := pollUntil(ctx, time.Minute, "every member to see every other alive", func() bool {
		for _, n := range c.nodes {
			alive := 0
			for _, m := range n.Members() {
				if m.State.String() == "alive" {
					alive++
				}
			}
			if alive != c.n {
				return false
			}
		}
		return true
	}); err != nil {
		return err
	}
	var roots []cid.Cid
	var size int64
	for _, src := range srcs {
		root, err := c.nodes[0].Share(ctx, src, node.ShareOptions{Replicas: c.replicas})
		if err != nil {
			return err
		}
		roots = append(roots, root)
	}
	for _, s := range c.nodes[0].Shares() {
		size = s.Size
	}
	full := func(down map[int]bool) bool {
		cp := c.copies(roots, down)
		for _, r := range roots {
			if len(cp[r]) < c.replicas {
				return false
			}
		}
		return true
	}
	// Steady state: exactly the copies asked for (a member that took
	// another for dead under load may have made one more, released after
	// the grace period).
	exact := func() bool {
		cp := c.copies(roots, nil)
		for _, r := range roots {
			if len(cp[r]) != c.replicas {
				return false
			}
		}
		return true
	}
	if err := pollUntil(ctx, 5*time.Minute, "every root's copies", exact); err != nil {
		return err
	}
	// Crash the storers holding the most copies.
	held := make(map[int]int)
	for _, holders := range c.copies(roots, nil) {
		run.CopiesBefore += len(holders)
		for _, i := range holders {
			held[i]++
		}
	}
	var order []int
	for i := 1; i < c.n; i++ {
		order = append(order, i)
	}
	slices.SortStableFunc(order, func(a, b int) int { return held[b] - held[a] })
	down := make(map[int]bool)
	for _, i := range order[:run.Failures] {
		down[i] = true
		run.LostReplicas += held[i]
	}
	run.LostBytes = int64(run.LostReplicas) * size
	before, err := c.settledInbound(ctx, down)
	if err != nil {
		return err
	}
	start := time.Now()
	for i := range down {
		c.nodes[i].Host().Close()
	}
	err = pollUntil(ctx, 5*time.Minute, "the copies restored", func() bool { return full(down) })
	run.RestoreSeconds = time.Since(start).Seconds()
	if err != nil {
		return err
	}
	after, err := c.settledInbound(ctx, down)
	if err != nil {
		return err
	}
	run.RepairBytes = after - before
	run.Traffic = float64(run.RepairBytes) / float64(run.LostBytes)
	// Detection: when the last survivor changed a crashed member to dead
	// (membership records when it saw each change).
	var detectAt time.Time
	for i, n := range c.nodes {
		if down[i] {
			continue
		}
		for _, m := range n.Members() {
			for j := range down {
				if m.ID == c.nodes[j].ID() && m.Changed.After(detectAt) {
					detectAt = m.Changed
				}
			}
		}
	}
	run.DetectSeconds = detectAt.Sub(start).Seconds()
	return nil
}
