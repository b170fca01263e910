package main

// The HTTP baseline of the testbed: a plain net/http file server on the
// seed host, and one plain GET per peer. Both are hidden subcommands of
// shoal-bench, re-executed inside the namespaces:
//
//	shoal-bench http-serve ADDR FILE   serve FILE at http://ADDR/file until SIGTERM
//	shoal-bench http-get URL OUT       GET URL into OUT, fsync, print {"bytes","seconds"}

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

const httpPort = 8080

// selfEnv marks a re-executed shoal-bench, so a test binary knows to run
// the hidden subcommand instead of the tests.
const selfEnv = "SHOAL_BENCH_CHILD=1"

func httpServeCmd(ctx context.Context, args []string, out io.Writer) error {
	if len(args) != 2 {
		return fmt.Errorf("%w: http-serve ADDR FILE", errUsage)
	}
	addr, path := args[0], args[1]
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/file", func(w http.ResponseWriter, r *http.Request) {
		// ServeFile uses sendfile(2): the cheapest server there is.
		http.ServeFile(w, r, path)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(out, "listening on %s\n", l.Addr())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	select {
	case <-ctx.Done():
		return srv.Close()
	case err := <-served:
		return err
	}
}

// httpGetResult is what http-get prints.
type httpGetResult struct {
	Bytes   int64   `json:"bytes"`
	Seconds float64 `json:"seconds"`
}

func httpGetCmd(ctx context.Context, args []string, out io.Writer) (err error) {
	if len(args) != 2 {
		return fmt.Errorf("%w: http-get URL OUT", errUsage)
	}
	url, path := args[0], args[1]
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	// 1 MiB writes, like a fetch's chunk writes.
	bw := bufio.NewWriterSize(f, 1<<20)
	n, err := io.Copy(bw, resp.Body)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return fmt.Errorf("GET %s: %d bytes of %d", url, n, resp.ContentLength)
	}
	if err := errors.Join(bw.Flush(), f.Sync()); err != nil {
		return err
	}
	return json.NewEncoder(out).Encode(httpGetResult{Bytes: n, Seconds: time.Since(start).Seconds()})
}
