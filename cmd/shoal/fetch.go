package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/shoalnet/shoal/node"
	"github.com/shoalnet/shoal/node/api"
	"github.com/shoalnet/shoal/transfer"
	"github.com/shoalnet/shoal/transfer/seal"
)

func fetchCommand() *cli.Command {
	return &cli.Command{
		Name:      "fetch",
		Usage:     "download a share by its root CID (or link, for an encrypted one), verifying every byte",
		ArgsUsage: "CID|LINK",
		Description: "Fetches CID from every peer that holds it, in parallel, verifying each\n" +
			"chunk, into -o PATH (default: the share's name in the current directory).\n" +
			"A bar shows bytes, rate, ETA and serving peers on a terminal; plain lines\n" +
			"otherwise; nothing with --quiet. Exits 0 only when the content is complete,\n" +
			"verified and in place. An interrupted fetch resumes where it stopped when\n" +
			"run again with the same destination.\n\n" +
			"An encrypted share is fetched with its link, CID#KEY (from share --encrypt):\n" +
			"the ciphertext is fetched into the store (and served from there), then\n" +
			"decrypted to the destination.\n\n" +
			"Through the running daemon if there is one (which then serves the result);\n" +
			"otherwise with a node started for this fetch alone, bootstrapping from\n" +
			"--peer, --bootstrap and config.toml.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "destination path"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print nothing but errors"},
			&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "replace an existing destination"},
			&cli.StringSliceFlag{Name: "peer", Usage: "multiaddr with /p2p/<id> of a peer that holds the share (repeatable)"},
			&cli.StringSliceFlag{Name: "bootstrap", Usage: "multiaddr of a peer to join through, without a daemon (repeatable)"},
			&cli.BoolFlag{Name: "explain", Usage: "afterwards (or on failure), say how it went: providers, each peer's path, rate and chunks, and what limited the speed"},
		},
		Action: runFetch,
	}
}

func runFetch(c *cli.Context) error {
	if c.NArg() != 1 {
		return fmt.Errorf("fetch takes one CID or link (got %d arguments)", c.NArg())
	}
	arg := strings.TrimSpace(c.Args().First())
	rootText, _, hasKey := strings.Cut(arg, "#")
	root, err := parseRoot(rootText)
	if err != nil {
		return err
	}
	var key *seal.Key
	if hasKey {
		if _, key, err = seal.ParseLink(arg); err != nil {
			return err
		}
	}
	peers := c.StringSlice("peer")
	if _, err := parsePeers(peers, "--peer"); err != nil {
		return err
	}
	req := api.FetchRequest{Root: root.String(), Overwrite: c.Bool("force"), Peers: peers}
	if key != nil {
		req.Key = key.String()
	}
	if o := c.String("output"); o != "" {
		req.Dst, err = filepath.Abs(o)
	} else {
		req.Dst, err = os.Getwd()
		req.IntoDir = true
	}
	if err != nil {
		return err
	}
	rep := newFetchReporter(c.App.ErrWriter, c.Bool("quiet"))
	cl, err := client(c)
	if err != nil {
		return err
	}
	defer cl.Close()
	done, err := cl.Fetch(c.Context, req, rep.update)
	if errors.Is(err, api.ErrNoDaemon) {
		done, err = fetchInProcess(c, req, rep)
	}
	rep.finish()
	if c.Bool("explain") {
		last := rep.lastProgress
		if done.Fetch != nil {
			last = *done.Fetch
		}
		explain(c.App.Writer, last, err)
	}
	if err != nil {
		if errors.Is(err, transfer.ErrExists) {
			return fmt.Errorf("%w\n(use --force to replace it)", err)
		}
		if errors.Is(err, node.ErrSealed) {
			return fmt.Errorf("%w\n(the publisher's `shoal share --encrypt` printed the link)", err)
		}
		if errors.Is(err, seal.ErrWrongKey) {
			return fmt.Errorf("%w\n(check the link: its key is not this share's)", err)
		}
		if errors.Is(err, transfer.ErrNoProviders) {
			return fmt.Errorf("%w\n(give a peer that holds it with --peer, or check the connections with `shoal peers`)", err)
		}
		return err
	}
	if !c.Bool("quiet") {
		fmt.Fprintf(c.App.Writer, "fetched %s to %s\n", done.Root, done.Path)
		if p := done.Fetch; p != nil {
			fmt.Fprintf(c.App.Writer, "%s received from %d peer(s) in %s, %d chunk(s) resumed\n",
				size(p.Received), serving(*p), p.Elapsed.Round(time.Millisecond), p.Resumed)
		}
	}
	return nil
}

// fetchInProcess fetches with a node of its own on the home, for when no
// daemon runs.
func fetchInProcess(c *cli.Context, req api.FetchRequest, rep *fetchReporter) (api.Event, error) {
	n, done, err := inProcessNode(c)
	if err != nil {
		return api.Event{}, err
	}
	defer done()
	root, _ := parseRoot(req.Root)
	opts := node.FetchOptions{Overwrite: req.Overwrite, IntoDir: req.IntoDir, Progress: rep.update}
	opts.Peers, _ = parsePeers(req.Peers, "--peer")
	var res *transfer.Result
	if req.Key != "" {
		key, kerr := seal.ParseKey(req.Key)
		if kerr != nil {
			return api.Event{}, kerr
		}
		res, err = n.FetchDecrypted(c.Context, root, key, req.Dst, opts)
	} else {
		res, err = n.Fetch(c.Context, root, req.Dst, opts)
	}
	if err != nil {
		return api.Event{}, err
	}
	p := res.Progress
	return api.Event{Type: "done", Root: root.String(), Name: res.Manifest.Name, Path: res.Path, Fetch: &p}, nil
}

// inProcessNode starts a node on the home for one command, when no daemon
// runs: it listens on free ports, queries the DHT without serving it, and
// bootstraps from --bootstrap or config.toml.
func inProcessNode(c *cli.Context) (*node.Node, func(), error) {
	home, err := filepath.Abs(c.String("home"))
	if err != nil {
		return nil, nil, err
	}
	fc, _, err := readConfig(home)
	if err != nil {
		return nil, nil, err
	}
	if bs := c.StringSlice("bootstrap"); len(bs) > 0 {
		fc.Bootstrap = bs
	}
	cfg, err := fc.nodeConfig(home)
	if err != nil {
		return nil, nil, err
	}
	cfg.ListenAddrs = []string{"/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1"}
	cfg.DHTClientMode = true
	cfg.MDNS = false
	cfg.Logger = slog.New(slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: slog.LevelError}))
	flush, err := setTracing(c.Context, &cfg, home, c.App.ErrWriter, c.App.ErrWriter)
	if err != nil {
		return nil, nil, err
	}
	n, err := node.New(c.Context, cfg)
	if err != nil {
		flush()
		return nil, nil, err
	}
	return n, func() {
		n.Close()
		flush()
	}, nil
}
