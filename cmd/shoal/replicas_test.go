package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoalnet/shoal/node"
	"github.com/shoalnet/shoal/node/api"
)

// setConfig rewrites settings of home's config.toml (made by init).
func setConfig(t *testing.T, home string, kv map[string]string) {
	t.Helper()
	p := filepath.Join(home, configName)
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	for i, l := range lines {
		for k, v := range kv {
			if strings.HasPrefix(l, k+" ") {
				lines[i] = k + " = " + v
			}
		}
	}
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
}

func replicasOf(t *testing.T, home, root string) node.ReplicaStatus {
	t.Helper()
	var st node.ReplicaStatus
	out, _, err := shoal(t, home, "replicas", "--json", root)
	if err == nil {
		err = json.Unmarshal([]byte(out), &st)
	}
	if err != nil {
		t.Logf("replicas: %v", err)
	}
	return st
}

// Real daemons: a publisher shares with --replicas 2 and three storers
// keep two copies; a holder is killed (-9) and the third storer takes its
// place; after unpin the storers release their copies.
func TestReplicasCLI(t *testing.T) {
	homes := make([]string, 4)
	for i := range homes {
		homes[i] = t.TempDir()
		mustShoal(t, homes[i], "init")
		kv := map[string]string{"probe_interval": `"200ms"`, "replica_grace": `"1s"`, "catalog_sync": `"1s"`}
		if i > 0 {
			kv["storer"] = "true"
		}
		setConfig(t, homes[i], kv)
	}
	_, addr := startDaemon(t, homes[0])
	daemons := map[string]*os.Process{}
	ids := map[string]string{}
	for _, h := range homes[1:] {
		cmd, a := startDaemon(t, h, "--bootstrap", addr)
		daemons[h] = cmd.Process
		ids[a[strings.LastIndex(a, "/")+1:]] = h
	}
	src := randomFile(t, 5<<20+11)
	root := lastLine(mustShoal(t, homes[0], "share", "--quiet", "--replicas", "2", src))

	var st node.ReplicaStatus
	eventuallyWithin(t, time.Minute, "two live copies", func() bool {
		st = replicasOf(t, homes[0], root)
		return st.Wanted == 2 && st.Live == 2 && len(st.Repairing) == 0
	}, nil)
	out := mustShoal(t, homes[0], "replicas", root)
	if !strings.Contains(out, "2 copies, 2 live on storers (ok)") || !strings.Contains(out, "holds it") {
		t.Fatalf("replicas:\n%s", out)
	}

	// Kill a placed holder without a word.
	victim := ids[st.Placed[0].ID.String()]
	daemons[victim].Kill()
	eventuallyWithin(t, time.Minute, "two live copies without the killed holder", func() bool {
		st = replicasOf(t, homes[0], root)
		holders := make([]string, 0)
		for _, h := range st.Placed {
			if h.Holds {
				holders = append(holders, ids[h.ID.String()])
			}
		}
		return st.Live == 2 && len(holders) == 2 && !slices.Contains(holders, victim)
	}, func() { t.Log(mustShoal(t, homes[0], "replicas", root)) })
	var status api.Status
	if err := json.Unmarshal([]byte(mustShoal(t, homes[0], "status", "--json")), &status); err != nil || len(status.UnderReplicated) != 0 {
		t.Fatalf("status after the repair: %+v %v", status.UnderReplicated, err)
	}

	// Unpin: the storers release their copies after the grace period.
	mustShoal(t, homes[0], "unpin", root)
	for _, h := range homes[1:] {
		if h == victim {
			continue
		}
		eventuallyWithin(t, time.Minute, "the replica released", func() bool {
			var s api.Status
			out, _, err := shoal(t, h, "status", "--json")
			return err == nil && json.Unmarshal([]byte(out), &s) == nil && s.Store.Replicas == 0 && s.Store.Used == 0
		}, nil)
	}
	if _, err := os.Stat(src); err != nil {
		t.Fatalf("the publisher's file is gone: %v", err)
	}
	if _, errOut, err := shoal(t, homes[0], "unpin", root); err == nil || !strings.Contains(errOut, "not pinned") {
		t.Fatalf("unpin twice: %v %s", err, errOut)
	}
	if _, errOut, err := shoal(t, homes[0], "pin", "bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"); err == nil ||
		!strings.Contains(errOut, "no peer announced") {
		t.Fatalf("pin of an unknown root: %v %s", err, errOut)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "1048576": 1 << 20, "500GiB": 500 << 30, "2TB": 2e12, " 3 mib ": 3 << 20, "7B": 7, "1kb": 1000,
	} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "GiB", "-1", "1.5GiB", "10XB", "9223372036854775807KiB", "99999999999999999999"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) accepted", in)
		}
	}
	c := defaultFileConfig("x")
	c.StoreQuota = "lots"
	if _, err := c.nodeConfig(t.TempDir()); err == nil || !strings.Contains(err.Error(), "store_quota") {
		t.Errorf("bad quota: %v", err)
	}
	c = defaultFileConfig("x")
	c.ProbeInterval = "1ns"
	if _, err := c.nodeConfig(t.TempDir()); err == nil || !strings.Contains(err.Error(), "probe_interval") {
		t.Errorf("bad probe interval: %v", err)
	}
}

// share --encrypt prints a link; fetch LINK decrypts; fetch CID without
// the key says the share is encrypted; the daemon's store holds no
// plaintext.
func TestEncryptCLI(t *testing.T) {
	home := t.TempDir()
	_, addr := startDaemon(t, home)
	src := filepath.Join(t.TempDir(), "secret.txt")
	plain := strings.Repeat("SHOAL-PLAINTEXT-MARKER\n", 100_000)
	if err := os.WriteFile(src, []byte(plain), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, err := shoal(t, home, "share", "--encrypt", src)
	if err != nil || !strings.Contains(errOut, "keep the link") {
		t.Fatalf("share --encrypt: %v\n%s", err, errOut)
	}
	link := lastLine(out)
	root, key, ok := strings.Cut(link, "#")
	if !ok || !strings.HasPrefix(root, "bafy") || len(key) != 43 {
		t.Fatalf("link %q", link)
	}
	if strings.Count(out+errOut, key) != 1 {
		t.Fatalf("the key is printed %d times, want once (the link):\n%s%s", strings.Count(out+errOut, key), out, errOut)
	}
	store := filepath.Join(home, node.StoreDir)
	filepath.WalkDir(store, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if data, _ := os.ReadFile(p); strings.Contains(string(data), "SHOAL-PLAINTEXT-MARKER") {
				t.Errorf("plaintext in the store: %s", p)
			}
		}
		return nil
	})
	dst := filepath.Join(t.TempDir(), "plain.txt")
	if _, errOut, err := shoal(t, t.TempDir(), "fetch", root, "--peer", addr, "-o", dst); err == nil || !strings.Contains(errOut, "encrypted") {
		t.Fatalf("fetch without the key: %v\n%s", err, errOut)
	}
	mustShoal(t, t.TempDir(), "fetch", link, "--peer", addr, "-o", dst, "--quiet")
	got, err := os.ReadFile(dst)
	if err != nil || string(got) != plain {
		t.Fatalf("decrypted copy differs (%v)", err)
	}
	if _, errOut, err := shoal(t, t.TempDir(), "fetch", root+"#notakey", "--peer", addr); err == nil || strings.Contains(errOut, "notakey") {
		t.Fatalf("a malformed key: %v\n%s", err, errOut)
	}
	// cat through the daemon: with the link, without, with another key.
	if got := mustShoal(t, home, "cat", link); got != plain {
		t.Fatalf("cat LINK: %d bytes, want the plaintext", len(got))
	}
	if _, errOut, err := shoal(t, home, "cat", root); err == nil || !strings.Contains(errOut, "encrypted") {
		t.Fatalf("cat without the key: %v\n%s", err, errOut)
	}
	zero := strings.Repeat("A", 43)
	if out, errOut, err := shoal(t, home, "cat", root+"#"+zero); err == nil || !strings.Contains(errOut, "key") || out != "" {
		t.Fatalf("cat with another key: %v, %d bytes out\n%s", err, len(out), errOut)
	}
}
