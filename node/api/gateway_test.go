package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/shoalnet/shoal/transfer"
	"github.com/shoalnet/shoal/transfer/manifest"
)

// gatewayPair shares a directory on one daemon and serves the content
// gateway of another that does not hold it: every read there fetches.
func gatewayPair(t *testing.T) (b *daemon, gw *httptest.Server, root string, big, small []byte) {
	t.Helper()
	a := newDaemon(t)
	b = newDaemon(t)
	dir := filepath.Join(t.TempDir(), "set")
	if err := os.MkdirAll(filepath.Join(dir, "sub dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, big = writeRandom(t, 3*manifest.MinChunkSize+777)
	small = []byte("hello, gateway\n")
	if err := os.WriteFile(filepath.Join(dir, "sub dir", "big.bin"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a.txt"), small, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	done, err := a.c.Share(ctx, ShareRequest{Path: dir, ChunkSize: manifest.MinChunkSize}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.c.Connect(ctx, a.addr()); err != nil {
		t.Fatal(err)
	}
	// b learns who holds the root from a's catalog.
	if err := b.n.SyncCatalog(ctx, a.n.ID()); err != nil {
		t.Fatal(err)
	}
	gw = httptest.NewServer(NewServer(b.n, "test", nil))
	t.Cleanup(gw.Close)
	return b, gw, done.Root, big, small
}

func get(t *testing.T, url string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

// Range requests over the gateway return exactly the bytes asked for,
// across chunk boundaries and at the end, while the content is fetched
// from another peer; so do many readers at once. ETag, Content-Type,
// conditional requests and errors behave as HTTP clients expect.
func TestContentGateway(t *testing.T) {
	b, gw, root, big, small := gatewayPair(t)
	file := gw.URL + "/content/" + root + "/sub%20dir/big.bin"
	const cs = manifest.MinChunkSize
	n := int64(len(big))

	for _, c := range []struct {
		rng        string
		start, end int64 // inclusive
	}{
		{"bytes=0-0", 0, 0},
		{fmt.Sprintf("bytes=%d-%d", cs-5, cs+4), cs - 5, cs + 4},
		{fmt.Sprintf("bytes=%d-%d", cs, 3*cs-1), cs, 3*cs - 1},
		{fmt.Sprintf("bytes=%d-", n-10), n - 10, n - 1},
		{"bytes=-7", n - 7, n - 1},
		{fmt.Sprintf("bytes=%d-%d", n-3, n+100), n - 3, n - 1},
	} {
		resp, body := get(t, file, "Range", c.rng)
		want := fmt.Sprintf("bytes %d-%d/%d", c.start, c.end, n)
		if resp.StatusCode != http.StatusPartialContent || resp.Header.Get("Content-Range") != want ||
			!bytes.Equal(body, big[c.start:c.end+1]) {
			t.Errorf("%s: %s, Content-Range %q (want %q), %d bytes, equal %v", c.rng, resp.Status,
				resp.Header.Get("Content-Range"), want, len(body), bytes.Equal(body, big[c.start:min(c.end+1, c.start+int64(len(body)))]))
		}
	}
	resp, _ := get(t, file, "Range", fmt.Sprintf("bytes=%d-", n+1))
	if resp.StatusCode != http.StatusRequestedRangeNotSatisfiable {
		t.Errorf("a range past the end: %s", resp.Status)
	}
	// Two ranges: a multipart answer with both.
	resp, body := get(t, file, "Range", fmt.Sprintf("bytes=10-19,%d-%d", 2*cs-2, 2*cs+1))
	_, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if resp.StatusCode != http.StatusPartialContent || err != nil {
		t.Fatalf("two ranges: %s, %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	for _, want := range [][]byte{big[10:20], big[2*cs-2 : 2*cs+2]} {
		part, err := mr.NextPart()
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(part)
		if !bytes.Equal(got, want) {
			t.Errorf("part %s: %d bytes, not the range", part.Header.Get("Content-Range"), len(got))
		}
	}

	// The whole file, and its validators.
	resp, body = get(t, file)
	etag := resp.Header.Get("ETag")
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, big) || etag != `"`+root+`/sub%20dir/big.bin"` ||
		resp.Header.Get("Content-Type") != "application/octet-stream" || resp.Header.Get("Accept-Ranges") != "bytes" {
		t.Errorf("whole file: %s, %d bytes, ETag %s, type %q", resp.Status, len(body), etag, resp.Header.Get("Content-Type"))
	}
	if resp, _ := get(t, file, "If-None-Match", etag); resp.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match with the ETag: %s", resp.Status)
	}
	resp, body = get(t, gw.URL+"/content/"+root+"/a.txt")
	if !bytes.Equal(body, small) || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Errorf("a.txt: %q, type %q", body, resp.Header.Get("Content-Type"))
	}

	// Many readers at once, each its own ranges.
	var wg sync.WaitGroup
	for k := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := int64(k) * (n / 8)
			end := min(start+cs+100, n) - 1
			req, _ := http.NewRequest(http.MethodGet, file, nil)
			req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", start, end))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			got, err := io.ReadAll(resp.Body)
			if err != nil || !bytes.Equal(got, big[start:end+1]) {
				t.Errorf("reader %d: %d bytes, %v", k, len(got), err)
			}
		}()
	}
	wg.Wait()

	// Errors.
	for url, want := range map[string]int{
		gw.URL + "/content/not-a-cid/x":                  http.StatusBadRequest,
		gw.URL + "/content/" + root + "/nope.txt":        http.StatusNotFound,
		gw.URL + "/content/" + root + "/a.txt/more":      http.StatusNotFound,
		gw.URL + "/content/" + rawCID(t) + "/x":          http.StatusBadRequest,
		gw.URL + "/content/" + root + "/../../etc/hosts": http.StatusNotFound,
	} {
		if resp, body := get(t, url); resp.StatusCode != want {
			t.Errorf("GET %s: %s (%s), want %d", url, resp.Status, body, want)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, file, nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %v %v", resp.Status, err)
	} else {
		resp.Body.Close()
	}

	// The CLI's client reads the same bytes over the socket.
	rd, err := b.c.Cat(context.Background(), root, "sub dir/big.bin", "")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rd)
	rd.Close()
	if err != nil || !bytes.Equal(got, big) {
		t.Errorf("Cat: %d bytes, %v", len(got), err)
	}
	if _, err := b.c.Cat(context.Background(), root, "sub dir", ""); !errors.Is(err, transfer.ErrIsDir) || !strings.Contains(err.Error(), "big.bin") {
		t.Errorf("Cat of a directory: %v", err)
	}
}

func rawCID(t *testing.T) string {
	t.Helper()
	c, err := cid.Prefix{Version: 1, Codec: cid.Raw, MhType: 0x12, MhLength: -1}.Sum([]byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	return c.String()
}

// Directories are listed as JSON or HTML, and a directory without its
// trailing slash is redirected to it (its query kept).
func TestContentListing(t *testing.T) {
	_, gw, root, big, small := gatewayPair(t)
	resp, body := get(t, gw.URL+"/content/"+root+"?format=json")
	var l Listing
	if err := json.Unmarshal(body, &l); err != nil || resp.Header.Get(KindHeader) != "directory" {
		t.Fatalf("%s %q: %v", resp.Status, body, err)
	}
	want := []ListingEntry{{Name: "sub dir", Path: "sub dir", Dir: true}, {Name: "a.txt", Path: "a.txt", Size: int64(len(small))}}
	if l.Root != root || l.Name != "set" || l.Path != "" || fmt.Sprint(l.Entries) != fmt.Sprint(want) {
		t.Errorf("top listing %+v", l)
	}
	_, body = get(t, gw.URL+"/content/"+root+"/sub%20dir/", "Accept", "application/json")
	l = Listing{}
	if err := json.Unmarshal(body, &l); err != nil || len(l.Entries) != 1 || l.Entries[0].Size != int64(len(big)) || l.Path != "sub dir" {
		t.Errorf("sub listing %+v %v", l, err)
	}
	resp, body = get(t, gw.URL+"/content/"+root+"/sub%20dir/")
	page := string(body)
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(page, `href="big.bin"`) ||
		!strings.Contains(page, `href="../"`) {
		t.Errorf("HTML listing: %q\n%s", resp.Header.Get("Content-Type"), page)
	}
	// Relative links work from the redirected URL.
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(gw.URL + "/content/" + root + "/sub%20dir?format=json")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusMovedPermanently || loc != "/content/"+root+"/sub%20dir/?format=json" {
		t.Errorf("no trailing slash: %s to %q", resp.Status, loc)
	}
}

// Past the limit of content requests at once, the gateway answers 503
// with Retry-After instead of queueing without bound.
func TestContentLimit(t *testing.T) {
	d := newDaemon(t)
	s := NewServer(d.n, "test", nil)
	s.SetContentLimit(2)
	gw := httptest.NewServer(s)
	defer gw.Close()
	src, data := writeRandom(t, 1000)
	done, err := d.c.Share(context.Background(), ShareRequest{Path: src}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	url := gw.URL + "/content/" + done.Root
	s.contentSlots <- struct{}{}
	s.contentSlots <- struct{}{}
	resp, _ := get(t, url)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("over the limit: %s, Retry-After %q", resp.Status, resp.Header.Get("Retry-After"))
	}
	<-s.contentSlots
	if resp, body := get(t, url); resp.StatusCode != http.StatusOK || !bytes.Equal(body, data) {
		t.Errorf("under the limit: %s, %d bytes", resp.Status, len(body))
	}
}

// A share that records times serves Last-Modified (and answers
// If-Modified-Since) and lists each entry's time; one without has none.
func TestContentTimes(t *testing.T) {
	d := newDaemon(t)
	gw := httptest.NewServer(NewServer(d.n, "test", nil))
	defer gw.Close()
	dir := filepath.Join(t.TempDir(), "dated")
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(dir, "sub", "f.txt")
	if err := os.WriteFile(f, []byte("dated\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tm := time.Date(2011, 11, 11, 11, 11, 11, 0, time.UTC)
	for _, p := range []string{f, filepath.Dir(f)} {
		if err := os.Chtimes(p, tm, tm); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	dated, err := d.c.Share(ctx, ShareRequest{Path: dir, Times: true}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := d.c.Share(ctx, ShareRequest{Path: dir}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if dated.Root == plain.Root {
		t.Fatal("the share with times has the root of the one without")
	}
	resp, body := get(t, gw.URL+"/content/"+dated.Root+"/sub/f.txt")
	if got := resp.Header.Get("Last-Modified"); got != tm.Format(http.TimeFormat) || string(body) != "dated\n" {
		t.Errorf("Last-Modified %q, body %q", got, body)
	}
	if resp, _ := get(t, gw.URL+"/content/"+dated.Root+"/sub/f.txt", "If-Modified-Since", tm.Format(http.TimeFormat)); resp.StatusCode != http.StatusNotModified {
		t.Errorf("If-Modified-Since its time: %s", resp.Status)
	}
	_, body = get(t, gw.URL+"/content/"+dated.Root+"?format=json")
	var l Listing
	if err := json.Unmarshal(body, &l); err != nil || len(l.Entries) != 1 || l.Entries[0].ModTime == nil || !l.Entries[0].ModTime.Equal(tm) {
		t.Errorf("listing %s: %v", body, err)
	}
	resp, _ = get(t, gw.URL+"/content/"+plain.Root+"/sub/f.txt")
	if got := resp.Header.Get("Last-Modified"); got != "" {
		t.Errorf("Last-Modified %q from a share without times", got)
	}
	_, body = get(t, gw.URL+"/content/"+plain.Root+"?format=json")
	if strings.Contains(string(body), "mtime") {
		t.Errorf("listing of a share without times: %s", body)
	}
}
