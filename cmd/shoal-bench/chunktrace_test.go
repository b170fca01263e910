package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Three hosts: the seed S, A fetching chunk 0 from S, B fetching it from
// A 0.5 s after A verified it (asked at 3 s - 1 s - 0.5 s = 1.5 s).
func TestChunkTrace(t *testing.T) {
	dir := t.TempDir()
	logs := map[string]string{
		"seed-daemon.log": `time=2026-12-02T09:00:00.000Z level=INFO msg="daemon started" peer=S network=public api=/x
`,
		"p1-daemon.log": `time=2026-12-02T09:00:00.000Z level=INFO msg="daemon started" peer=A network=public api=/x
time=2026-12-02T09:00:01.000Z level=DEBUG msg="chunk verified" root=bafy chunk=0 peer=S wait=200ms transfer=700ms
time=2026-12-02T09:00:01.500Z level=DEBUG msg="serve stream ended" peer=B err="a b"
`,
		"p2-daemon.log": `time=2026-12-02T09:00:00.000Z level=INFO msg="daemon started" peer=B network=public api=/x
time=2026-12-02T09:00:03.000Z level=DEBUG msg="chunk verified" root=bafy chunk=0 peer=A wait=500ms transfer=1s
`,
	}
	for name, text := range logs {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	if err := run(t.Context(), []string{"chunktrace", dir}, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"3 hosts, 2 of them fetching; 2 chunks verified",
		"asked     median 500ms", // only B's record: A fetched chunk 0 too
		"spread    median 2s",
		"transfer  median 700ms", // of 700ms and 1s, the lower middle
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestChunkTraceNeedsDebugLogs(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "p1-daemon.log"), []byte("time=2026-12-02T09:00:00.000Z level=WARN msg=x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := run(t.Context(), []string{"chunktrace", dir}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "--log-level debug") {
		t.Fatalf("err = %v, want a hint to run the daemons with --log-level debug", err)
	}
}

func TestParseLogLine(t *testing.T) {
	kv := parseLogLine(`time=2026-12-02T09:00:01.5Z level=DEBUG msg="chunk verified" err="said \"no\"" n=3`)
	if kv["msg"] != "chunk verified" || kv["err"] != `said "no"` || kv["n"] != "3" || kv["level"] != "DEBUG" {
		t.Fatalf("%q", kv)
	}
	if _, err := time.Parse(time.RFC3339Nano, kv["time"]); err != nil {
		t.Fatal(err)
	}
}
