package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMembersSmoke runs the members benchmark once with four members of
// each system and short periods: both must converge, count bytes and see
// the crash, and every member must be closed (TestMain checks for leaked
// goroutines).
func TestMembersSmoke(t *testing.T) {
	var buf bytes.Buffer
	jsonPath := filepath.Join(t.TempDir(), "members.json")
	args := []string{"members", "--n", "4", "--runs", "1"}
	res, err := runMembers(smokeContext(t), membersOptions{
		Ns: []int{4}, Runs: 1, Interval: 100 * time.Millisecond, Timeout: 50 * time.Millisecond,
		Settle: 100 * time.Millisecond, Steady: 500 * time.Millisecond, Sync: time.Second, Limit: 20 * time.Second,
		JSON: jsonPath, Args: args, Out: &buf,
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, buf.String())
	}
	t.Log(buf.String())
	if len(res.Runs) != 1 || len(res.Medians) != 1 {
		t.Fatalf("%d runs and %d medians, want 1 and 1", len(res.Runs), len(res.Medians))
	}
	r := res.Runs[0]
	if r.Victim < 1 || r.Victim > 3 {
		t.Errorf("crashed member %d, want 1 to 3", r.Victim)
	}
	for name, s := range map[string]SystemRun{"shoal": r.Shoal, "memberlist": r.Memberlist} {
		if !s.Detected || s.Agreed != 3 {
			t.Errorf("%s: %d of 3 members declared the crashed one dead", name, s.Agreed)
		}
		if !(s.ConvergeSeconds > 0 && s.BytesPerNodeSec > 0 && s.SocketBytesPerNodeSec >= s.BytesPerNodeSec) {
			t.Errorf("%s: figures not positive: %+v", name, s)
		}
		if !(s.FirstDeadSeconds > 0 && s.FirstDeadSeconds <= s.AllDeadSeconds) {
			t.Errorf("%s: first dead %.3fs, all dead %.3fs", name, s.FirstDeadSeconds, s.AllDeadSeconds)
		}
	}
	// Shoal counts its bytes on the streams and on the connections.
	if r.Shoal.SocketBytesPerNodeSec <= r.Shoal.BytesPerNodeSec {
		t.Errorf("shoal: %.0f B/node/s on the socket, not more than the %.0f of stream payload",
			r.Shoal.SocketBytesPerNodeSec, r.Shoal.BytesPerNodeSec)
	}
	if r.Shoal.PartsPerNodeSec["/shoal/swim/1.0.0"] <= 0 {
		t.Errorf("shoal: no probe traffic in the steady window: %v", r.Shoal.PartsPerNodeSec)
	}
	if !(r.AllDeadRatio > 0 && r.BytesRatio > 0) {
		t.Errorf("ratios not positive: %+v", r)
	}
	for _, want := range []string{"command:  go run ./cmd/shoal-bench members --n 4 --runs 1", "machine:", "date:",
		"shoal/memberlist", "memberlist", "/yamux/1.0.0", "median"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	var back MembersResult
	data, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if back.Medians[0].BytesRatio != res.Medians[0].BytesRatio || back.Machine.NumCPU == 0 || len(back.Runs) != 1 {
		t.Errorf("JSON results differ: %+v", back)
	}
}

func TestParseSizes(t *testing.T) {
	got, err := parseSizes("10, 25,50")
	if err != nil || len(got) != 3 || got[0] != 10 || got[1] != 25 || got[2] != 50 {
		t.Errorf("parseSizes(10, 25,50) = %v, %v", got, err)
	}
	for _, bad := range []string{"", "2", "10,x", "10,,25", "-5"} {
		if _, err := parseSizes(bad); err == nil {
			t.Errorf("parseSizes(%q) succeeded", bad)
		}
	}
}
