package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

type membersOptions struct {
	Ns       []int
	Runs     int
	Interval time.Duration // probe interval of both systems
	Timeout  time.Duration // probe timeout of both systems
	Settle   time.Duration // after convergence and a probe round, before the steady window
	Steady   time.Duration // the window in which bytes are counted
	Sync     time.Duration // anti-entropy period of both systems
	Limit    time.Duration // give up on a convergence or a detection after this long
	JSON     string
	Args     []string
	Out      io.Writer
}

// Systems compared by the members benchmark.
const (
	sysShoal      = "shoal"
	sysMemberlist = "memberlist"
)

// MembersRun is one run of the members benchmark at one size.
type MembersRun struct {
	N          int       `json:"n"`
	Run        int       `json:"run"`
	Order      string    `json:"order"`
	Victim     int       `json:"crashed_member"`
	Shoal      SystemRun `json:"shoal"`
	Memberlist SystemRun `json:"memberlist"`
	// shoal/memberlist; 0 when a detection did not complete.
	AllDeadRatio     float64 `json:"all_dead_ratio"`
	BytesRatio       float64 `json:"bytes_ratio"`
	SocketBytesRatio float64 `json:"socket_bytes_ratio"`
}

// SystemMedian is one system's medians over the runs at one size.
// FalsePositives, Refutations and SpuriousDead are totals over the runs.
type SystemMedian struct {
	ConvergeSeconds       float64            `json:"converge_seconds"`
	FirstSuspectSeconds   float64            `json:"first_suspect_seconds"`
	FirstDeadSeconds      float64            `json:"first_dead_seconds"`
	AllDeadSeconds        float64            `json:"all_dead_seconds"`
	BytesPerNodeSec       float64            `json:"bytes_per_node_per_s"`
	SocketBytesPerNodeSec float64            `json:"socket_bytes_per_node_per_s"`
	PacketsPerNodeSec     float64            `json:"udp_packets_per_node_per_s,omitempty"`
	PartsPerNodeSec       map[string]float64 `json:"bytes_per_node_per_s_by_part"`
	FalsePositives        int                `json:"false_positives"`
	Refutations           int64              `json:"refutations"`
	SteadyRefutations     int64              `json:"steady_refutations"`
	SpuriousDead          int                `json:"spurious_dead_after_crash"`
	Undetected            int                `json:"undetected_runs"`
}

// MembersMedian sums up the runs at one size.
type MembersMedian struct {
	N                int          `json:"n"`
	Shoal            SystemMedian `json:"shoal"`
	Memberlist       SystemMedian `json:"memberlist"`
	AllDeadRatio     float64      `json:"all_dead_ratio"` // median of the per-run ratios
	AllDeadRange     [2]float64   `json:"all_dead_ratio_range"`
	BytesRatio       float64      `json:"bytes_ratio"`
	BytesRange       [2]float64   `json:"bytes_ratio_range"`
	SocketBytesRatio float64      `json:"socket_bytes_ratio"`
	SocketBytesRange [2]float64   `json:"socket_bytes_ratio_range"`
}

// MembersResult is the members benchmark's outcome.
type MembersResult struct {
	Header
	Benchmark      string          `json:"benchmark"`
	ProbeInterval  string          `json:"probe_interval"`
	ProbeTimeout   string          `json:"probe_timeout"`
	Settle         string          `json:"settle"`
	Steady         string          `json:"steady"`
	Sync           string          `json:"sync"`
	ShoalTransport string          `json:"shoal_transport"`
	Runs           []MembersRun    `json:"runs"`
	Medians        []MembersMedian `json:"medians"`
	Incomplete     []string        `json:"incomplete,omitempty"`
}

func membersCmd(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("members", flag.ContinueOnError)
	ns := fs.String("n", "10,25,50", "cluster sizes, comma-separated")
	runs := fs.Int("runs", 3, "runs at each size")
	interval := fs.Duration("interval", 200*time.Millisecond, "probe interval of both systems")
	timeout := fs.Duration("timeout", 100*time.Millisecond, "probe timeout of both systems")
	settle := fs.Duration("settle", 5*time.Second, "wait after convergence and a probe round (N x interval, in which shoal members connect to\n"+
		"each other) before the steady window, so that the joins' gossip is over")
	steady := fs.Duration("steady", 10*time.Second, "steady window in which the bytes sent are counted")
	sync := fs.Duration("sync", 30*time.Second, "anti-entropy (push-pull) period of both systems (memberlist's PushPullInterval)")
	limit := fs.Duration("limit", 2*time.Minute, "give up on a convergence or a detection after this long")
	jsonPath := fs.String("json", "", "also write the results as JSON to this file")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: shoal-bench members [flags]\n\n"+
			"shoal's membership protocol vs hashicorp/memberlist with the same probe\n"+
			"settings, N members of each in this process on 127.0.0.1: convergence,\n"+
			"bytes sent in a quiet steady state, and detection of a crashed member.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return errUsage
	}
	sizes, err := parseSizes(*ns)
	if err != nil || fs.NArg() > 0 || *runs < 1 || *interval <= 0 || *timeout <= 0 || *timeout > *interval ||
		*settle < 0 || *steady <= 0 || *sync <= 0 || *limit <= 0 {
		if err != nil {
			fmt.Fprintln(fs.Output(), err)
		}
		fs.Usage()
		return errUsage
	}
	repro := []string{"members", "--n", *ns, "--runs", fmt.Sprint(*runs), "--interval", interval.String(),
		"--timeout", timeout.String(), "--settle", settle.String(), "--steady", steady.String(), "--sync", sync.String()}
	_, err = runMembers(ctx, membersOptions{
		Ns: sizes, Runs: *runs, Interval: *interval, Timeout: *timeout, Settle: *settle, Steady: *steady,
		Sync: *sync, Limit: *limit, JSON: *jsonPath, Args: repro, Out: out,
	})
	return err
}

// parseSizes reads a comma-separated list of cluster sizes, each at least 3
// (a crash leaves two members to agree).
func parseSizes(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 3 {
			return nil, fmt.Errorf("--n %q: want sizes of 3 or more, such as 10,25,50", s)
		}
		out = append(out, n)
	}
	return out, nil
}

func runMembers(ctx context.Context, o membersOptions) (*MembersResult, error) {
	res := &MembersResult{
		Header: newHeader(o.Args), Benchmark: "members",
		ProbeInterval: o.Interval.String(), ProbeTimeout: o.Timeout.String(),
		Settle: o.Settle.String(), Steady: o.Steady.String(), Sync: o.Sync.String(),
	}
	res.print(o.Out, o)
	mo := measureOptions{Interval: o.Interval, Settle: o.Settle, Steady: o.Steady, Limit: o.Limit}
	for _, n := range o.Ns {
		for r := 1; r <= o.Runs; r++ {
			run := MembersRun{N: n, Run: r, Victim: 1 + rand.IntN(n-1)}
			// Alternate the order, so that neither system always runs on
			// a machine its predecessor has just warmed or tired.
			order := []string{sysShoal, sysMemberlist}
			if r%2 == 0 {
				slices.Reverse(order)
			}
			run.Order = strings.Join(order, ",")
			fmt.Fprintf(o.Out, "N=%d %s (%s), crashing node-%d\n", n, runLabel(r), run.Order, run.Victim)
			for _, sys := range order {
				runtime.GC()
				rec := newRecorder()
				var (
					c   cluster
					dst *SystemRun
				)
				switch sys {
				case sysShoal:
					sc := newShoalCluster(n, o.Interval, o.Timeout, o.Sync, rec)
					c, dst = &describingCluster{shoalCluster: sc, res: res}, &run.Shoal
				case sysMemberlist:
					c, dst = newMLCluster(n, o.Interval, o.Timeout, o.Sync, rec), &run.Memberlist
				}
				sr, err := measureCluster(ctx, c, rec, n, run.Victim, mo)
				if err != nil {
					return nil, fmt.Errorf("N=%d, %s, %s: %w", n, runLabel(r), sys, ctxErr(ctx, err))
				}
				*dst = sr
				fmt.Fprintf(o.Out, "  %-10s %s\n", sys, sr.summary())
				if !sr.Detected {
					res.Incomplete = append(res.Incomplete, fmt.Sprintf("N=%d %s %s: %d of %d members declared the crashed one dead within %v",
						n, runLabel(r), sys, sr.Agreed, n-1, o.Limit))
				}
			}
			if run.Shoal.Detected && run.Memberlist.Detected {
				run.AllDeadRatio = run.Shoal.AllDeadSeconds / run.Memberlist.AllDeadSeconds
			}
			run.BytesRatio = run.Shoal.BytesPerNodeSec / run.Memberlist.BytesPerNodeSec
			run.SocketBytesRatio = run.Shoal.SocketBytesPerNodeSec / run.Memberlist.SocketBytesPerNodeSec
			fmt.Fprintf(o.Out, "  shoal/memberlist: all dead %s, bytes/node/s %.2f (on the socket %.2f)\n",
				ratioText(run.AllDeadRatio), run.BytesRatio, run.SocketBytesRatio)
			res.Runs = append(res.Runs, run)
		}
		res.Medians = append(res.Medians, summarize(n, res.Runs))
	}
	res.printTable(o.Out)
	if o.JSON != "" {
		if err := writeJSON(o.JSON, res); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// describingCluster notes shoal's connection type once it has converged.
type describingCluster struct {
	*shoalCluster
	res *MembersResult
}

func (c *describingCluster) converged() bool {
	ok := c.shoalCluster.converged()
	if ok && c.res.ShoalTransport == "" {
		c.res.ShoalTransport = c.describe()
	}
	return ok
}

func ratioText(r float64) string {
	if r == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", r)
}

func secondsText(s float64) string {
	if s < 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fs", s)
}

func (r SystemRun) summary() string {
	s := fmt.Sprintf("converged %s; steady %.1fs: %.0f B/node/s", secondsText(r.ConvergeSeconds), r.SteadySeconds, r.BytesPerNodeSec)
	if r.SocketBytesPerNodeSec != r.BytesPerNodeSec {
		s += fmt.Sprintf(" (%.0f on the socket)", r.SocketBytesPerNodeSec)
	}
	s += fmt.Sprintf(", %d false positives, %d refutations (%d in the steady window); crash: first suspect %s, first dead %s, ",
		r.FalsePositives, r.Refutations, r.SteadyRefutations, secondsText(r.FirstSuspectSeconds), secondsText(r.FirstDeadSeconds))
	if r.Detected {
		s += "all dead " + secondsText(r.AllDeadSeconds)
	} else {
		s += fmt.Sprintf("only %d agreed within the limit", r.Agreed)
	}
	if r.SpuriousDead > 0 {
		s += fmt.Sprintf(", %d dead verdicts about running members", r.SpuriousDead)
	}
	return s + "\n             by part: " + partsText(r.PartsPerNodeSec)
}

// partsText lists the parts of the bytes sent, largest first.
func partsText(parts map[string]float64) string {
	keys := slices.SortedFunc(maps.Keys(parts), func(a, b string) int {
		return cmp.Or(cmp.Compare(parts[b], parts[a]), strings.Compare(a, b))
	})
	var total float64
	for _, v := range parts {
		total += v
	}
	var out []string
	for _, k := range keys {
		out = append(out, fmt.Sprintf("%s %.0f (%.0f%%)", k, parts[k], 100*parts[k]/total))
	}
	if len(out) == 0 {
		return "nothing"
	}
	return strings.Join(out, ", ")
}

// summarize takes the medians of the runs at size n.
func summarize(n int, runs []MembersRun) MembersMedian {
	md := MembersMedian{N: n}
	var ad, by, so []float64
	var sh, ml []SystemRun
	for _, r := range runs {
		if r.N != n {
			continue
		}
		sh, ml = append(sh, r.Shoal), append(ml, r.Memberlist)
		if r.AllDeadRatio > 0 {
			ad = append(ad, r.AllDeadRatio)
		}
		by, so = append(by, r.BytesRatio), append(so, r.SocketBytesRatio)
	}
	md.Shoal, md.Memberlist = systemMedian(sh), systemMedian(ml)
	md.AllDeadRatio, md.BytesRatio, md.SocketBytesRatio = median(ad), median(by), median(so)
	lo, hi := spread(ad)
	md.AllDeadRange = [2]float64{lo, hi}
	lo, hi = spread(by)
	md.BytesRange = [2]float64{lo, hi}
	lo, hi = spread(so)
	md.SocketBytesRange = [2]float64{lo, hi}
	return md
}

func systemMedian(runs []SystemRun) SystemMedian {
	m := SystemMedian{PartsPerNodeSec: make(map[string]float64)}
	pick := func(f func(SystemRun) float64, skip func(SystemRun) bool) float64 {
		var xs []float64
		for _, r := range runs {
			if skip == nil || !skip(r) {
				xs = append(xs, f(r))
			}
		}
		if len(xs) == 0 {
			return -1
		}
		return median(xs)
	}
	noSuspect := func(r SystemRun) bool { return r.FirstSuspectSeconds < 0 }
	noDead := func(r SystemRun) bool { return r.FirstDeadSeconds < 0 }
	undetected := func(r SystemRun) bool { return !r.Detected }
	m.ConvergeSeconds = pick(func(r SystemRun) float64 { return r.ConvergeSeconds }, nil)
	m.FirstSuspectSeconds = pick(func(r SystemRun) float64 { return r.FirstSuspectSeconds }, noSuspect)
	m.FirstDeadSeconds = pick(func(r SystemRun) float64 { return r.FirstDeadSeconds }, noDead)
	m.AllDeadSeconds = pick(func(r SystemRun) float64 { return r.AllDeadSeconds }, undetected)
	m.BytesPerNodeSec = pick(func(r SystemRun) float64 { return r.BytesPerNodeSec }, nil)
	m.SocketBytesPerNodeSec = pick(func(r SystemRun) float64 { return r.SocketBytesPerNodeSec }, nil)
	m.PacketsPerNodeSec = pick(func(r SystemRun) float64 { return r.PacketsPerNodeSec }, nil)
	for _, r := range runs {
		m.FalsePositives += r.FalsePositives
		m.Refutations += r.Refutations
		m.SteadyRefutations += r.SteadyRefutations
		m.SpuriousDead += r.SpuriousDead
		if !r.Detected {
			m.Undetected++
		}
		// The parts are averaged, so that they add up.
		for k, v := range r.PartsPerNodeSec {
			m.PartsPerNodeSec[k] += v / float64(len(runs))
		}
	}
	return m
}

func (res *MembersResult) print(w io.Writer, o membersOptions) {
	res.Header.print(w)
	fmt.Fprintf(w, "benchmark: members; N members of each system in this process on 127.0.0.1, all joining through member 0\n")
	fmt.Fprintf(w, "  both:       probe interval %v, probe timeout %v, 3 indirect checks, suspicion mult 4 (max mult 6),\n", o.Interval, o.Timeout)
	fmt.Fprintf(w, "              push-pull (anti-entropy) every %v\n", o.Sync)
	fmt.Fprintln(w, "  shoal:      membership.New on a libp2p host (tcp, TLS 1.3, yamux) with gossipsub (StrictSign);")
	fmt.Fprintln(w, "              crash: the host closes, then the membership (its leave cannot go out)")
	fmt.Fprintln(w, "  memberlist: hashicorp/memberlist DefaultLANConfig on its UDP+TCP transport; crash: Shutdown without Leave")
	fmt.Fprintf(w, "  converge: from the joins to every member seeing N alive; then a probe round (N x %v) and %v to settle,\n", o.Interval, o.Settle)
	fmt.Fprintf(w, "            then %v of steady state\n", o.Steady)
	fmt.Fprintln(w, "  bytes: sent per member per second in the steady window. shoal: libp2p stream payload (bandwidth counter),")
	fmt.Fprintln(w, "         and on the socket: TLS records with yamux frames; memberlist: UDP payloads + TCP bytes")
	fmt.Fprintln(w, "  false positives: dead verdicts about running members from convergence to the crash")
	fmt.Fprintln(w, "  crash: a random member other than member 0; times from the crash to the first suspicion (memberlist:")
	fmt.Fprintln(w, "         as its log says), the first dead verdict, and the last of the N-1 others' dead verdicts")
	fmt.Fprintf(w, "runs: %d at each N, sizes %v\n\n", o.Runs, o.Ns)
}

func (res *MembersResult) printTable(w io.Writer) {
	fmt.Fprintln(w)
	if res.ShoalTransport != "" {
		fmt.Fprintf(w, "shoal connections: %s\n", res.ShoalTransport)
	}
	fmt.Fprintln(w, "medians over the runs (false positives and refutations: totals over the runs, in the quiet period;")
	fmt.Fprintln(w, "in brackets, refutations in the steady window)")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "N\tsystem\tconverge\tfirst suspect\tfirst dead\tall dead\tB/node/s\ton socket B/node/s\tfalse positives\trefutations\t")
	for _, md := range res.Medians {
		for _, s := range []struct {
			name string
			m    SystemMedian
		}{{sysShoal, md.Shoal}, {sysMemberlist, md.Memberlist}} {
			allDead := secondsText(s.m.AllDeadSeconds)
			if s.m.Undetected > 0 {
				allDead += fmt.Sprintf(" (%d undetected)", s.m.Undetected)
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%.0f\t%.0f\t%d\t%d (%d)\t\n", md.N, s.name,
				secondsText(s.m.ConvergeSeconds), secondsText(s.m.FirstSuspectSeconds), secondsText(s.m.FirstDeadSeconds),
				allDead, s.m.BytesPerNodeSec, s.m.SocketBytesPerNodeSec, s.m.FalsePositives, s.m.Refutations, s.m.SteadyRefutations)
		}
	}
	tw.Flush()
	fmt.Fprintln(w, "\nshoal/memberlist (medians of the per-run ratios, range over runs)")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "N\tall dead\tB/node/s\ton socket B/node/s\t")
	for _, md := range res.Medians {
		fmt.Fprintf(tw, "%d\t%s (%.2f to %.2f)\t%.2f (%.2f to %.2f)\t%.2f (%.2f to %.2f)\t\n", md.N,
			ratioText(md.AllDeadRatio), md.AllDeadRange[0], md.AllDeadRange[1],
			md.BytesRatio, md.BytesRange[0], md.BytesRange[1],
			md.SocketBytesRatio, md.SocketBytesRange[0], md.SocketBytesRange[1])
	}
	tw.Flush()
	fmt.Fprintln(w, "\nbytes per member per second by part (mean over the runs)")
	for _, md := range res.Medians {
		fmt.Fprintf(w, "  N=%d shoal:      %s\n", md.N, partsText(md.Shoal.PartsPerNodeSec))
		fmt.Fprintf(w, "  N=%d memberlist: %s (%.1f packets/node/s)\n", md.N, partsText(md.Memberlist.PartsPerNodeSec), md.Memberlist.PacketsPerNodeSec)
	}
	for _, s := range res.Incomplete {
		fmt.Fprintf(w, "incomplete: %s\n", s)
	}
}
