package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

func (res *TestbedResult) print(w io.Writer, o testbedOptions) {
	res.Header.print(w)
	ns := make([]string, len(o.Ns))
	for i, n := range o.Ns {
		ns[i] = fmt.Sprint(n)
	}
	fmt.Fprintf(w, "benchmark: %s; %s file; %d seeder(s), upload %s, download %s; N = %s peer(s), upload %s, download %s\n",
		res.Benchmark, formatSize(res.Size), res.Seeders, res.SeedUp, res.SeedDown, strings.Join(ns, ","), res.PeerUp, res.PeerDown)
	fmt.Fprintf(w, "topology:  network namespaces %s-*, one bridge, %s; shaping: %s\n", o.Prefix, res.Subnet, res.Shaping)
	if o.FetchCLI {
		fmt.Fprintln(w, "shoal:     every peer runs 'shoal fetch ROOT -o PATH --quiet' in its namespace, all at once")
	} else {
		fmt.Fprintln(w, "shoal:     every peer's daemon is asked to fetch over its API socket (the request 'shoal fetch -o PATH' makes), all at once")
	}
	if o.HTTP {
		fmt.Fprintln(w, "HTTP:      net/http file server (sendfile) on the first seeder; every peer GETs the file into a file, fsyncs, all at once")
	}
	fmt.Fprintln(w, "clock:     from the common start to each copy in place (shoal: the fetch's done event; HTTP: the GET's exit after fsync)")
	fmt.Fprintf(w, "runs:      %d per N, after %d warm-up run(s), printed but not counted\n", o.Runs, o.Warmup)
}

// printLine prints one run's figures.
func (r *TestbedRun) printLine(w io.Writer, o testbedOptions) {
	s := r.Shoal
	untimed := fmt.Sprintf("[share %.1fs, peers ready %.1fs, untimed]", r.ShareSeconds, r.ReadySeconds)
	switch o.Scenario {
	case scKSource, scMemory:
		line := fmt.Sprintf("%s: fetch %.2fs, %.1f Mbit/s", runLabel(r.Run), s.LastSeconds, r.ThroughputBps/1e6)
		if r.CapRatio > 0 {
			line += fmt.Sprintf(", over the seeders' caps %.3f", r.CapRatio)
		}
		if r.BoundSeconds > 0 {
			line += fmt.Sprintf(" (bound %.2fs)", r.BoundSeconds)
		}
		fmt.Fprintln(w, line, untimed)
		c := s.Completions[0]
		if len(c.BySource) > 0 {
			var parts []string
			for _, k := range sortedKeys(c.BySource) {
				parts = append(parts, fmt.Sprintf("%s %.1f%%", k, 100*float64(c.BySource[k])/float64(o.Size)))
			}
			fmt.Fprintf(w, "  bytes by source: %s; %d duplicate chunk(s)\n", strings.Join(parts, ", "), c.Duplicates)
		}
		for k, e := range c.Dropped {
			fmt.Fprintf(w, "  dropped source %s: %s\n", k, e)
		}
		if o.Scenario == scMemory {
			fmt.Fprintf(w, "  fetching daemon: VmHWM %s at the end (%s idle before the fetch)", mib(r.PeakHWM), mib(r.IdleHWM))
			if n := len(r.MemSamples); n > 0 {
				last := r.MemSamples[n-1]
				fmt.Fprintf(w, "; at the end VmRSS %s = anon %s + file %s", mib(last.VmRSS), mib(last.RssAnon), mib(last.RssFile))
			}
			fmt.Fprintln(w)
		}
		return
	}
	line := fmt.Sprintf("N=%d %s (%s): bound %.2fs; shoal first %.2fs, median %.2fs, last %.2fs = %.3f x bound",
		r.N, runLabel(r.Run), r.Order, r.BoundSeconds, s.FirstSeconds, s.MedianSeconds, s.LastSeconds, r.LastOverBound)
	if r.HTTP != nil {
		line += fmt.Sprintf("; HTTP last %.1fs = %.2f x bound, speed-up %.2f", r.HTTP.LastSeconds, r.HTTPOverBound, r.SpeedUp)
	}
	fmt.Fprintln(w, line, untimed)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := "  peer\tshoal s\tfrom seed MB\tfrom peers MB\tsources\tdup chunks\t"
	if r.HTTP != nil {
		head += "HTTP s\t"
	}
	fmt.Fprintln(tw, head)
	for i, c := range s.Completions {
		line := fmt.Sprintf("  %s\t%.2f\t%.1f\t%.1f\t%d\t%d\t", c.Host, c.Seconds, float64(c.FromSeeders)/1e6, float64(c.FromPeers)/1e6, len(c.BySource), c.Duplicates)
		if r.HTTP != nil {
			line += fmt.Sprintf("%.2f\t", r.HTTP.Completions[i].Seconds)
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
}

// printFailed prints a run whose fetches partly failed.
func (r *TestbedRun) printFailed(w io.Writer) {
	fmt.Fprintf(w, "N=%d %s: FAILED (not counted): %s\n", r.N, runLabel(r.Run), r.Error)
	if r.HTTP != nil {
		fmt.Fprintf(w, "  HTTP baseline: first %.1fs, median %.1fs, last %.1fs\n", r.HTTP.FirstSeconds, r.HTTP.MedianSeconds, r.HTTP.LastSeconds)
	}
	if r.Shoal == nil {
		return
	}
	for _, c := range r.Shoal.Completions {
		if c.Error != "" {
			fmt.Fprintf(w, "  %s failed after %.1fs: %s\n", c.Host, c.Seconds, c.Error)
		} else {
			fmt.Fprintf(w, "  %s completed at %.1fs (%.1f MB from the seed, %.1f MB from peers)\n", c.Host, c.Seconds, float64(c.FromSeeders)/1e6, float64(c.FromPeers)/1e6)
		}
	}
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func (res *TestbedResult) printTable(w io.Writer, o testbedOptions) {
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	switch o.Scenario {
	case scKSource:
		fmt.Fprintln(tw, "run\tfetch s\tMbit/s\tcaps Mbit/s\tthroughput/caps\t")
		for _, r := range res.Runs {
			fmt.Fprintf(tw, "%d\t%.2f\t%.1f\t%.0f\t%.3f\t\n", r.Run, r.Shoal.LastSeconds, r.ThroughputBps/1e6, r.ThroughputBps/r.CapRatio/1e6, r.CapRatio)
		}
		m := res.Medians[0]
		fmt.Fprintf(tw, "median\t%.2f\t%.1f\t\t%.3f\t\n", m.ShoalLast, m.ThroughputBps/1e6, m.CapRatio)
		tw.Flush()
		fmt.Fprintf(w, "throughput/caps per run: %.3f to %.3f (target >= 0.9)\n", m.CapRatioRange[0], m.CapRatioRange[1])
	case scMemory:
		fmt.Fprintln(tw, "run\tfetch s\tMbit/s\tidle VmHWM\tpeak VmHWM\t")
		for _, r := range res.Runs {
			fmt.Fprintf(tw, "%d\t%.2f\t%.1f\t%s\t%s\t\n", r.Run, r.Shoal.LastSeconds, r.ThroughputBps/1e6, mib(r.IdleHWM), mib(r.PeakHWM))
		}
		m := res.Medians[0]
		fmt.Fprintf(tw, "median\t%.2f\t%.1f\t\t%s\t\n", m.ShoalLast, m.ThroughputBps/1e6, mib(m.PeakHWM))
		tw.Flush()
		fmt.Fprintln(w, "(target: peak VmHWM < 200 MiB)")
	default:
		head := "N\tbound s\tshoal median s\tshoal last s\tlast/bound\trange\tfrom peers\t"
		if o.HTTP {
			head += "HTTP last s\tspeed-up\trange\t"
		}
		fmt.Fprintln(tw, head)
		for _, m := range res.Medians {
			if m.ShoalLast == 0 {
				fmt.Fprintf(tw, "%d\t%.2f\tevery run had failed fetches\t\n", m.N, m.BoundSeconds)
				continue
			}
			line := fmt.Sprintf("%d\t%.2f\t%.2f\t%.2f\t%.3f\t%.3f to %.3f\t%.0f%%\t", m.N, m.BoundSeconds, m.ShoalMedian, m.ShoalLast,
				m.LastOverBound, m.LastOverRange[0], m.LastOverRange[1], 100*m.FromPeersShare)
			if o.HTTP {
				line += fmt.Sprintf("%.1f\t%.2f\t%.2f to %.2f\t", m.HTTPLast, m.SpeedUp, m.SpeedUpRange[0], m.SpeedUpRange[1])
			}
			fmt.Fprintln(tw, line)
		}
		tw.Flush()
		fmt.Fprintln(w, "(seconds are medians over the runs; ratios are medians of the per-run ratios; target last/bound <= 1.25;")
		fmt.Fprintln(w, " 'from peers' is the share of the bytes the peers received that came from other peers, not the seed)")
		for _, m := range res.Medians {
			if m.FailedRuns > 0 {
				fmt.Fprintf(w, "N=%d: %d run(s) had failed fetches and are not counted (see above and the JSON)\n", m.N, m.FailedRuns)
			}
		}
	}
}
