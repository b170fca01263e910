package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromium finds the browser the dashboard test drives (.ci/run installs
// Debian's chromium).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no Chromium to drive the dashboard: install Debian's chromium package (.ci/run does)")
	return ""
}

// browser starts headless Chromium with nothing of its own on the
// network: no background requests, no component updates.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1280, 1100),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	return ctx
}

// The dashboard in a real browser: three daemons; the page shows the
// three members and a topology of three connected nodes, and a fetch's
// progress is seen to advance.
func TestDashboard(t *testing.T) {
	homeA, homeB, homeC := t.TempDir(), t.TempDir(), t.TempDir()
	// The seed sends 8 MiB/s: a 40 MiB fetch takes about five seconds.
	_, addrA := startDaemon(t, homeA, "--upload-rate", strconv.Itoa(8<<20))
	startDaemon(t, homeB, "--bootstrap", addrA, "--api-listen", "127.0.0.1:0")
	startDaemon(t, homeC, "--bootstrap", addrA)
	link := lastLine(mustShoal(t, homeB, "dashboard"))
	base, token, ok := strings.Cut(link, "#token=")
	if !ok || !strings.HasPrefix(base, "http://127.0.0.1:") || !strings.HasSuffix(base, "/ui/") || token == "" {
		t.Fatalf("shoal dashboard printed %q", link)
	}
	// The page itself needs no token; the API it reads does.
	for path, want := range map[string]int{"": http.StatusOK, "app.js": http.StatusOK, "../v1/status": http.StatusUnauthorized} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %s, want %d", base+path, resp.Status, want)
		}
	}

	ctx := browser(t)
	poll := func(what, expr string) {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(time.Minute), chromedp.WithPollingInterval(100*time.Millisecond))); err != nil {
			page, _ := chromedp.Run(ctx, chromedp.OuterHTML("body"))
			t.Fatalf("%s: %v\npage:\n%s", what, err, page)
		}
	}
	if _, err := chromedp.Run(ctx, chromedp.Navigate(link)); err != nil {
		t.Fatal(err)
	}
	poll("three members, alive", `document.querySelectorAll("#members tbody tr").length === 3 &&
		document.querySelectorAll("#members .state.alive").length === 3`)
	poll("the node's reachability and connections", `document.querySelector("#summary").textContent.includes("reachability") &&
		document.querySelector("#summary").textContent.includes("relayed connections")`)
	poll("a topology of three nodes, each connected to the two others",
		`document.querySelectorAll("#topology g.member[data-state=alive]").length === 3 &&
		 document.querySelectorAll("#topology line").length === 3`)
	if hash, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.hash`)); err != nil || hash != "" {
		t.Errorf("the token stayed in the address bar: %q (%v)", hash, err)
	}

	root := lastLine(mustShoal(t, homeA, "share", "--quiet", randomFile(t, 40<<20)))
	fetched := make(chan error, 1)
	go func() {
		_, errOut, err := shoal(t, homeB, "fetch", root, "--peer", addrA, "-o", filepath.Join(t.TempDir(), "big"))
		if err != nil {
			err = fmt.Errorf("%w: %s", err, errOut)
		}
		fetched <- err
	}()
	poll("the fetch appears with some progress", `(() => {
		const p = document.querySelector("#transfers progress");
		return p !== null && p.value > 0 && p.value < p.max;
	})()`)
	first, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`document.querySelector("#transfers progress").value`))
	if err != nil {
		t.Fatal(err)
	}
	poll("the fetch's progress advances", `(() => {
		const p = document.querySelector("#transfers progress");
		return p === null || p.value > `+strconv.FormatFloat(first, 'f', -1, 64)+`;
	})()`)
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(t.ArtifactDir(), "dashboard.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes; go test -artifacts keeps it)", shot, len(png))
	if err := <-fetched; err != nil {
		t.Fatalf("fetch: %v", err)
	}
	poll("the finished fetch leaves the transfers", `document.querySelector("#transfers progress") === null`)
}
