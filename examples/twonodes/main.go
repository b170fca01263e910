// Command twonodes starts two shoal nodes in one process, shares a file on
// one and fetches it on the other, printing the progress.
//
//	go run ./examples/twonodes [-size BYTES]
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/shoalnet/shoal/node"
	"github.com/shoalnet/shoal/transfer"
)

func main() {
	size := flag.Int64("size", 64<<20, "size of the random file to share, bytes")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *size, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "twonodes:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, size int64, out io.Writer) error {
	dir, err := os.MkdirTemp("", "shoal-twonodes-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	start := func(name string) (*node.Node, error) {
		cfg := node.DefaultConfig()
		cfg.Home = filepath.Join(dir, name)
		cfg.ListenAddrs = []string{"/ip4/127.0.0.1/tcp/0"}
		return node.New(ctx, cfg)
	}
	seed, err := start("seed")
	if err != nil {
		return err
	}
	defer seed.Close()
	leech, err := start("leech")
	if err != nil {
		return err
	}
	defer leech.Close()

	// Something to share.
	src := filepath.Join(dir, "data.bin")
	data := make([]byte, size)
	if _, err := rand.Read(data); err != nil {
		return err
	}
	if err := os.WriteFile(src, data, 0o644); err != nil {
		return err
	}
	root, err := seed.Share(ctx, src, node.ShareOptions{})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "shared %s as %s\n", filepath.Base(src), root)

	dst := filepath.Join(dir, "copy.bin")
	res, err := leech.Fetch(ctx, root, dst, node.FetchOptions{
		Peers: []peer.AddrInfo{seed.AddrInfo()},
		Progress: func(p transfer.Progress) {
			fmt.Fprintf(out, "%-9s %d/%d chunks\n", p.Phase, p.Chunks, p.TotalChunks)
		},
	})
	if err != nil {
		return err
	}
	got, err := os.ReadFile(res.Path)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, data) {
		return fmt.Errorf("fetched copy differs from the original")
	}
	fmt.Fprintf(out, "fetched %d bytes in %v, verified\n", res.Progress.Bytes, res.Progress.Elapsed.Round(1e6))
	return nil
}
