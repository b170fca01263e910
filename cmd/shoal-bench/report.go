package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"time"
)

// Machine describes where a benchmark ran.
type Machine struct {
	CPUModel   string `json:"cpu_model"`
	NumCPU     int    `json:"num_cpu"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	GoVersion  string `json:"go_version"`
	OS         string `json:"os"`
	Arch       string `json:"arch"`
	Revision   string `json:"revision,omitempty"` // VCS revision stamped in the binary, if any
}

func machine() Machine {
	m := Machine{
		CPUModel:   cpuModel(),
		NumCPU:     runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		GoVersion:  runtime.Version(),
		OS:         runtime.GOOS,
		Arch:       runtime.GOARCH,
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		var rev, modified string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value
			}
		}
		if rev != "" && modified == "true" {
			rev += " (modified)"
		}
		m.Revision = rev
	}
	return m
}

// cpuModel returns the first "model name" of /proc/cpuinfo, or "unknown".
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// Header is printed (and saved) before every benchmark's figures.
type Header struct {
	Command string    `json:"command"`
	Date    time.Time `json:"date"`
	Machine Machine   `json:"machine"`
}

func newHeader(args []string) Header {
	return Header{
		Command: "go run ./cmd/shoal-bench " + strings.Join(args, " "),
		Date:    time.Now().UTC().Truncate(time.Second),
		Machine: machine(),
	}
}

func (h Header) print(w io.Writer) {
	m := h.Machine
	fmt.Fprintf(w, "command:  %s\n", h.Command)
	fmt.Fprintf(w, "date:     %s\n", h.Date.Format(time.RFC3339))
	fmt.Fprintf(w, "machine:  %s; NumCPU %d, GOMAXPROCS %d; %s %s/%s\n",
		m.CPUModel, m.NumCPU, m.GOMAXPROCS, m.GoVersion, m.OS, m.Arch)
	if m.Revision != "" {
		fmt.Fprintf(w, "revision: %s\n", m.Revision)
	}
}

// median returns the median of xs (the mean of the middle two for an even
// count), 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// spread returns the smallest and largest of xs.
func spread(xs []float64) (lo, hi float64) {
	if len(xs) == 0 {
		return 0, 0
	}
	return slices.Min(xs), slices.Max(xs)
}

func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	return nil
}

// runLabel names run r; runs up to 0 are warm-ups.
func runLabel(r int) string {
	if r <= 0 {
		return "warm-up"
	}
	return fmt.Sprintf("run %d", r)
}

// runName is runLabel for file names.
func runName(r int) string {
	if r <= 0 {
		return fmt.Sprintf("warmup%d", 1-r)
	}
	return fmt.Sprintf("run%d", r)
}

// mod is the non-negative remainder of a/n.
func mod(a, n int) int { return ((a % n) + n) % n }
