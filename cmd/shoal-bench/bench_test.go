package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The smoke tests run each benchmark once on a small file: they check that
// it completes, verifies its output, reports sane figures and leaves no
// file behind.

const smokeSize = 8 << 20

func smokeContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// checkEmpty fails if the benchmark left anything in dir.
func checkEmpty(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		t.Errorf("left behind: %s", e.Name())
	}
}

func TestHashSmoke(t *testing.T) {
	dir, out := t.TempDir(), t.TempDir()
	var buf bytes.Buffer
	jsonPath := filepath.Join(out, "hash.json")
	res, err := runHash(smokeContext(t), hashOptions{
		Size: smokeSize, Runs: 1, Warmup: 1, Dir: dir, JSON: jsonPath,
		Args: []string{"hash", "--size", "8MiB", "--runs", "1"}, Out: &buf,
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, buf.String())
	}
	t.Log(buf.String())
	if len(res.Runs) != 1 {
		t.Fatalf("%d runs, want 1", len(res.Runs))
	}
	m := res.Median
	if !(m.RawMBps > 0 && m.HotMBps > 0 && m.BuildMBps > 0 && m.Ratio > 0 && m.HotRatio > 0) {
		t.Errorf("median figures not positive: %+v", m)
	}
	for _, want := range []string{"command:  go run ./cmd/shoal-bench hash --size 8MiB --runs 1", "machine:", "date:", "page cache", "median"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	var back HashResult
	data, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if back.Median.Ratio != m.Ratio || back.Machine.NumCPU == 0 {
		t.Errorf("JSON results differ: %+v", back)
	}
	checkEmpty(t, dir)
}

func TestFetchSmoke(t *testing.T) {
	dir := t.TempDir()
	var buf bytes.Buffer
	res, err := runFetch(smokeContext(t), fetchOptions{
		Size: smokeSize, Runs: 1, Dir: dir, Discard: true,
		Args: []string{"fetch", "--size", "8MiB", "--runs", "1", "--discard"}, Out: &buf,
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, buf.String())
	}
	t.Log(buf.String())
	if len(res.Runs) != 1 {
		t.Fatalf("%d runs, want 1", len(res.Runs))
	}
	// runFetch fails unless both copies hash to the source's SHA-256.
	m := res.Median
	if !(m.TLSMBps > 0 && m.ShoalMBps > 0 && m.NoDiskMBps > 0 && m.Ratio > 0 && m.DiskRatio > 0) {
		t.Errorf("median figures not positive: %+v", m)
	}
	if r := res.Runs[0]; r.ShoalReceived < smokeSize {
		t.Errorf("shoal received %d bytes of %d", r.ShoalReceived, smokeSize)
	}
	for _, want := range []string{"/tls/1.0.0", "/yamux/1.0.0", "tcp", "TLS 1.3"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	checkEmpty(t, dir)
}

func TestCancelCleansUp(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := runFetch(ctx, fetchOptions{Size: smokeSize, Runs: 1, Dir: dir, Out: &bytes.Buffer{}})
	if err == nil {
		t.Fatal("no error from a cancelled run")
	}
	checkEmpty(t, dir)
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"1GiB": 1 << 30, "8MiB": 8 << 20, "512kib": 512 << 10, "1048576": 1 << 20,
		"1GB": 1e9, "1.5GiB": 3 << 29, "100b": 100,
	} {
		got, err := parseSize(in)
		if err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0", "-1MiB", "MiB", "1XB", "1e300"} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q) succeeded", bad)
		}
	}
	if got := formatSize(1 << 30); got != "1GiB" {
		t.Errorf("formatSize(1GiB) = %q", got)
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}
