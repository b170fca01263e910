package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/shoalnet/shoal/transfer"
	"github.com/shoalnet/shoal/transfer/manifest"
)

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// fetchReporter shows fetch progress: a bar on a terminal, a line every
// few seconds otherwise, nothing when quiet.
type fetchReporter struct {
	w     io.Writer
	quiet bool
	tty   bool
	bar   *progressbar.ProgressBar
	last  time.Time
	// lastProgress is the last report, for --explain.
	lastProgress transfer.Progress
}

func newFetchReporter(w io.Writer, quiet bool) *fetchReporter {
	return &fetchReporter{w: w, quiet: quiet, tty: isTerminal(w)}
}

func serving(p transfer.Progress) int {
	k := 0
	for _, pp := range p.Peers {
		if pp.Chunks > 0 && pp.Error == "" {
			k++
		}
	}
	return k
}

func (r *fetchReporter) update(p transfer.Progress) {
	r.lastProgress = p
	if r.quiet || p.Total == 0 {
		return
	}
	if r.tty {
		if r.bar == nil {
			r.bar = progressbar.NewOptions64(p.Total,
				progressbar.OptionSetWriter(r.w),
				progressbar.OptionShowBytes(true),
				progressbar.OptionSetWidth(30),
				progressbar.OptionThrottle(100*time.Millisecond),
				progressbar.OptionShowCount(),
				progressbar.OptionSetPredictTime(true),
				progressbar.OptionClearOnFinish(),
			)
		}
		r.bar.Describe(fmt.Sprintf("%s (%d peers)", p.Name, serving(p)))
		r.bar.Set64(p.Bytes)
		return
	}
	if time.Since(r.last) < 2*time.Second && p.Bytes < p.Total {
		return
	}
	r.last = time.Now()
	fmt.Fprintf(r.w, "fetch %s: %s / %s (%d%%), %s/s, %d peers\n", p.Name,
		size(p.Bytes), size(p.Total), 100*p.Bytes/max(p.Total, 1), size(int64(p.Rate)), serving(p))
}

func (r *fetchReporter) finish() {
	if r.bar != nil {
		r.bar.Finish()
	}
}

// indexReporter shows the progress of indexing a share on a terminal.
type indexReporter struct {
	w    io.Writer
	on   bool
	last time.Time
	t0   time.Time
}

func newIndexReporter(w io.Writer, quiet bool) *indexReporter {
	return &indexReporter{w: w, on: !quiet && isTerminal(w), t0: time.Now()}
}

func (r *indexReporter) update(p manifest.BuildProgress) {
	if !r.on || time.Since(r.last) < 100*time.Millisecond {
		return
	}
	r.last = time.Now()
	rate := float64(p.Bytes) / max(time.Since(r.t0).Seconds(), 1e-3)
	fmt.Fprintf(r.w, "\rindexing: %d/%d files, %s / %s, %s/s   ", p.Files, p.TotalFiles,
		size(p.Bytes), size(p.TotalBytes), size(int64(rate)))
}

func (r *indexReporter) finish() {
	if r.on && !r.last.IsZero() {
		fmt.Fprintln(r.w)
	}
}

func size(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
