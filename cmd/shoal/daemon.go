package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/urfave/cli/v2"

	"github.com/shoalnet/shoal/node"
)

func daemonCommand() *cli.Command {
	return &cli.Command{
		Name:  "daemon",
		Usage: "run a peer until interrupted",
		Description: "Runs a shoal peer: it joins the network through the bootstrap peers,\n" +
			"serves the shares recorded in its home, and leaves on SIGINT/SIGTERM.\n" +
			"It listens on TCP and QUIC port 4110 on all interfaces by default;\n" +
			"--listen /ip4/127.0.0.1/tcp/0 picks a free loopback port, so several\n" +
			"daemons can run on one machine.",
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "listen", Usage: "multiaddr to listen on (repeatable)"},
			&cli.StringSliceFlag{Name: "bootstrap", Usage: "multiaddr with /p2p/<id> of a peer to join through (repeatable)"},
			&cli.StringFlag{Name: "network", Value: "default", Usage: "network name: gossip topics and DHT prefix"},
			&cli.StringFlag{Name: "dht-prefix", Usage: "DHT protocol prefix (default /shoal/<network>; /ipfs joins the IPFS DHT)"},
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error"},
		},
		Action: func(c *cli.Context) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			cfg := node.DefaultConfig()
			cfg.Home = c.String("home")
			cfg.Network = c.String("network")
			cfg.DHTPrefix = c.String("dht-prefix")
			cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			if l := c.StringSlice("listen"); len(l) > 0 {
				cfg.ListenAddrs = l
			}
			for _, s := range c.StringSlice("bootstrap") {
				ai, err := peer.AddrInfoFromString(s)
				if err != nil {
					return fmt.Errorf("--bootstrap %q: %w (want a multiaddr ending in /p2p/<peer id>)", s, err)
				}
				cfg.BootstrapPeers = append(cfg.BootstrapPeers, *ai)
			}
			n, err := node.New(c.Context, cfg)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "peer %s\n", n.ID())
			for _, a := range n.Addrs() {
				fmt.Fprintf(c.App.Writer, "listening on %s\n", a)
			}
			<-c.Context.Done()
			cfg.Logger.Info("leaving")
			return n.Close()
		},
	}
}
