package main

import (
	"fmt"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// plot draws the scenario's figure into a PNG:
//
//	scale:   the last completion (median over runs) vs N, with the bound
//	         and the HTTP baseline's last completion
//	swarm:   peers done vs time (log scale) for each run's shoal and HTTP
//	         phases, with the bound
//	ksource: the fetch's verified bytes vs time, with the sum of the caps
//	memory:  the fetching daemon's RSS vs time, with the 200 MiB target
func (res *TestbedResult) plot(path string, o testbedOptions) error {
	p := plot.New()
	p.Legend.Top = true
	p.Legend.Left = true
	var args []any
	switch o.Scenario {
	case scScale:
		p.Title.Text = fmt.Sprintf("shoal swarm, %s file, every host %s up / %s down", formatSize(res.Size), res.PeerUp, res.PeerDown)
		p.X.Label.Text = "N (peers fetching)"
		p.Y.Label.Text = "time until the last peer completes (s)"
		var shoal, med, bound, http plotter.XYs
		for _, m := range res.Medians {
			if m.ShoalLast == 0 {
				continue // every run at this N failed
			}
			n := float64(m.N)
			shoal = append(shoal, plotter.XY{X: n, Y: m.ShoalLast})
			med = append(med, plotter.XY{X: n, Y: m.ShoalMedian})
			bound = append(bound, plotter.XY{X: n, Y: m.BoundSeconds})
			if m.HTTPLast > 0 {
				http = append(http, plotter.XY{X: n, Y: m.HTTPLast})
			}
		}
		args = append(args, "shoal, last peer", shoal, "shoal, median peer", med, "bound", bound)
		if len(http) > 0 {
			args = append(args, "HTTP from the seed, last peer", http)
		}
	case scSwarm:
		p.Title.Text = fmt.Sprintf("%d peers fetching %s, every host %s up / %s down", res.Medians[0].N, formatSize(res.Size), res.PeerUp, res.PeerDown)
		p.X.Label.Text = "time since the start (s)"
		p.Y.Label.Text = "peers done"
		p.Legend.Top, p.Legend.Left = false, false
		// The HTTP baseline takes about N times the bound: a log scale
		// keeps shoal's curves readable beside it.
		var tmax float64
		for _, r := range res.Runs {
			if r.Shoal == nil {
				continue
			}
			tmax = max(tmax, r.Shoal.LastSeconds)
			if r.HTTP != nil {
				tmax = max(tmax, r.HTTP.LastSeconds)
			}
		}
		if b := res.Medians[0].BoundSeconds; b > 0 && tmax/b > 10 {
			p.X.Label.Text = "time since the start (s, log scale)"
			p.X.Scale = plot.LogScale{}
			p.X.Tick.Marker = plot.LogTicks{Prec: -1}
		}
		for _, r := range res.Runs {
			if r.Shoal == nil {
				continue
			}
			args = append(args, fmt.Sprintf("shoal, run %d", r.Run), doneCurve(r.Shoal))
			if r.HTTP != nil {
				args = append(args, fmt.Sprintf("HTTP, run %d", r.Run), doneCurve(r.HTTP))
			}
		}
		b := res.Medians[0].BoundSeconds
		args = append(args, "bound", plotter.XYs{{X: b, Y: 0.5}, {X: b, Y: float64(res.Medians[0].N)}})
	case scKSource:
		p.Title.Text = fmt.Sprintf("one peer fetching %s from %d seeders capped at %s up", formatSize(res.Size), res.Seeders, res.SeedUp)
		p.X.Label.Text = "time since the start (s)"
		p.Y.Label.Text = "verified MB"
		var end float64
		for _, r := range res.Runs {
			var xy plotter.XYs
			for _, t := range r.Shoal.Completions[0].Timeline {
				xy = append(xy, plotter.XY{X: t.T, Y: float64(t.Bytes) / 1e6})
			}
			end = max(end, r.Shoal.LastSeconds)
			args = append(args, fmt.Sprintf("run %d", r.Run), xy)
		}
		if caps := sumRates(seedUps(res, o)); caps > 0 {
			args = append(args, "sum of the seeders' caps", plotter.XYs{{X: 0, Y: 0}, {X: end, Y: end * caps / 8 / 1e6}})
		}
	case scMemory:
		p.Title.Text = fmt.Sprintf("RSS of the daemon fetching %s from %d seeders", formatSize(res.Size), res.Seeders)
		p.X.Label.Text = "time since the start (s)"
		p.Y.Label.Text = "MiB"
		var end float64
		for _, r := range res.Runs {
			var rss, anon plotter.XYs
			for _, s := range r.MemSamples {
				rss = append(rss, plotter.XY{X: s.T, Y: float64(s.VmRSS) / (1 << 20)})
				anon = append(anon, plotter.XY{X: s.T, Y: float64(s.RssAnon) / (1 << 20)})
				end = max(end, s.T)
			}
			args = append(args, fmt.Sprintf("VmRSS, run %d", r.Run), rss, fmt.Sprintf("RssAnon, run %d", r.Run), anon)
		}
		args = append(args, "target", plotter.XYs{{X: 0, Y: 200}, {X: end, Y: 200}})
	}
	if err := plotutil.AddLinePoints(p, args...); err != nil {
		return err
	}
	if o.Scenario != scSwarm {
		p.Y.Min = 0
	}
	return p.Save(8*vg.Inch, 5*vg.Inch, path)
}

// doneCurve is the number of peers done against time; failed fetches are
// left out.
func doneCurve(pr *PhaseRun) plotter.XYs {
	var ts []float64
	for _, c := range pr.Completions {
		if c.Error != "" {
			continue
		}
		ts = append(ts, c.Seconds)
	}
	slices.Sort(ts)
	xy := make(plotter.XYs, len(ts))
	for i, t := range ts {
		xy[i] = plotter.XY{X: t, Y: float64(i + 1)}
	}
	return xy
}

func seedUps(res *TestbedResult, o testbedOptions) []int64 {
	out := make([]int64, res.Seeders)
	for i := range out {
		out[i] = o.SeedUp
	}
	return out
}
