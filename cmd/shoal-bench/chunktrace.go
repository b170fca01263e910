package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

const chunktraceAbout = `Reads the daemon logs of one testbed run, kept with --log-level debug and
--keep-logs DIR (one file per host, DIR/n<N>-run<R>/<host>-daemon.log), and
says where the chunks' time went, from each fetch's "chunk verified" records:

  wait      from asking a provider for a chunk to its first byte (the
            provider's queue and the round trip)
  transfer  from the first byte to verified (the chunk's own transfer,
            shared with whatever else the two links carry)
  asked     from the provider verifying the chunk itself to this peer
            asking it for it (how fast peers learn who holds what; only
            for chunks from a peer that fetched them too)
  spread    per chunk, from the first peer verifying it to the last

Example:
  shoal-bench swarm --runs 1 --log-level debug --keep-logs /tmp/logs
  shoal-bench chunktrace /tmp/logs/n15-run1
`

func chunktraceCmd(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("chunktrace", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: shoal-bench chunktrace DIR\n\n%s", chunktraceAbout)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return errUsage
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errUsage
	}
	paths, err := filepath.Glob(filepath.Join(fs.Arg(0), "*.log"))
	if err != nil {
		return err
	}
	if len(paths) == 0 {
		return fmt.Errorf("no *.log files in %s", fs.Arg(0))
	}
	var hosts []hostTrace
	for _, p := range paths {
		h, err := readHostTrace(p)
		if err != nil {
			return err
		}
		hosts = append(hosts, h)
	}
	sum, err := summariseTraces(hosts)
	if err != nil {
		return err
	}
	sum.print(out)
	return nil
}

// chunkRecord is one "chunk verified" record of a host's log.
type chunkRecord struct {
	at       time.Time // verified
	chunk    int64
	from     string // the provider's peer ID
	wait     time.Duration
	transfer time.Duration
}

type hostTrace struct {
	name   string
	peer   string // from "daemon started"
	chunks []chunkRecord
}

func readHostTrace(path string) (hostTrace, error) {
	h := hostTrace{name: strings.TrimSuffix(filepath.Base(path), "-daemon.log")}
	f, err := os.Open(path)
	if err != nil {
		return h, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for line := 1; sc.Scan(); line++ {
		kv := parseLogLine(sc.Text())
		switch kv["msg"] {
		case "daemon started":
			h.peer = kv["peer"]
		case "chunk verified":
			r, err := chunkRecordOf(kv)
			if err != nil {
				return h, fmt.Errorf("%s:%d: %w", path, line, err)
			}
			h.chunks = append(h.chunks, r)
		}
	}
	return h, sc.Err()
}

func chunkRecordOf(kv map[string]string) (r chunkRecord, err error) {
	if r.at, err = time.Parse(time.RFC3339Nano, kv["time"]); err != nil {
		return r, err
	}
	if r.chunk, err = strconv.ParseInt(kv["chunk"], 10, 64); err != nil {
		return r, err
	}
	if r.wait, err = time.ParseDuration(kv["wait"]); err != nil {
		return r, err
	}
	if r.transfer, err = time.ParseDuration(kv["transfer"]); err != nil {
		return r, err
	}
	r.from = kv["peer"]
	if r.from == "" {
		return r, errors.New("chunk verified: no peer")
	}
	return r, nil
}

// parseLogLine splits a log/slog text record into its keys and values
// (quoted values unquoted). Malformed parts are skipped.
func parseLogLine(s string) map[string]string {
	kv := make(map[string]string)
	for s != "" {
		s = strings.TrimLeft(s, " ")
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			break
		}
		key := s[:eq]
		s = s[eq+1:]
		var val string
		if strings.HasPrefix(s, `"`) {
			q, err := strconv.QuotedPrefix(s)
			if err != nil {
				break
			}
			val, _ = strconv.Unquote(q)
			s = s[len(q):]
		} else if sp := strings.IndexByte(s, ' '); sp >= 0 {
			val, s = s[:sp], s[sp:]
		} else {
			val, s = s, ""
		}
		kv[key] = val
	}
	return kv
}

type traceSummary struct {
	hosts, fetchers, records int
	wait, transfer, asked    []time.Duration
	spread                   []time.Duration
}

func summariseTraces(hosts []hostTrace) (*traceSummary, error) {
	s := &traceSummary{hosts: len(hosts)}
	// When each peer verified each chunk.
	verified := make(map[string]map[int64]time.Time)
	first := make(map[int64]time.Time)
	last := make(map[int64]time.Time)
	count := make(map[int64]int)
	for _, h := range hosts {
		if len(h.chunks) == 0 {
			continue
		}
		s.fetchers++
		if h.peer == "" {
			return nil, fmt.Errorf("%s: chunk records but no \"daemon started\" record (run the daemons with --log-level debug)", h.name)
		}
		v := make(map[int64]time.Time, len(h.chunks))
		for _, r := range h.chunks {
			v[r.chunk] = r.at
			if t, ok := first[r.chunk]; !ok || r.at.Before(t) {
				first[r.chunk] = r.at
			}
			if r.at.After(last[r.chunk]) {
				last[r.chunk] = r.at
			}
			count[r.chunk]++
		}
		verified[h.peer] = v
	}
	if s.fetchers == 0 {
		return nil, errors.New(`no "chunk verified" records: run the daemons with --log-level debug`)
	}
	for _, h := range hosts {
		for _, r := range h.chunks {
			s.records++
			s.wait = append(s.wait, r.wait)
			s.transfer = append(s.transfer, r.transfer)
			if held, ok := verified[r.from][r.chunk]; ok {
				askedAt := r.at.Add(-r.transfer - r.wait)
				s.asked = append(s.asked, askedAt.Sub(held))
			}
		}
	}
	for c, n := range count {
		if n == s.fetchers {
			s.spread = append(s.spread, last[c].Sub(first[c]))
		}
	}
	return s, nil
}

func (s *traceSummary) print(w io.Writer) {
	fmt.Fprintf(w, "%d hosts, %d of them fetching; %d chunks verified\n", s.hosts, s.fetchers, s.records)
	row := func(name string, d []time.Duration, note string) {
		if len(d) == 0 {
			fmt.Fprintf(w, "  %-9s no records%s\n", name, note)
			return
		}
		slices.Sort(d)
		q := func(p float64) time.Duration { return d[int(p*float64(len(d)-1))].Round(10 * time.Millisecond) }
		fmt.Fprintf(w, "  %-9s median %-8v p10 %-8v p90 %-8v (%d)%s\n", name, q(0.5), q(0.1), q(0.9), len(d), note)
	}
	row("wait", s.wait, "")
	row("transfer", s.transfer, "")
	row("asked", s.asked, "  (from a peer that fetched the chunk too)")
	row("spread", s.spread, "  (per chunk every fetcher verified)")
}
