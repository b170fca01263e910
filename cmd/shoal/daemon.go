package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/shoalnet/shoal/node"
	"github.com/shoalnet/shoal/node/api"
)

func daemonCommand() *cli.Command {
	return &cli.Command{
		Name:  "daemon",
		Usage: "run a peer until interrupted",
		Description: "Runs a shoal peer: it joins the network through the bootstrap peers,\n" +
			"serves the shares recorded in its home, and answers the CLI on the unix\n" +
			"socket <home>/api.sock. Settings come from <home>/config.toml (see\n" +
			"`shoal init`); these flags override them. A home that was never\n" +
			"initialised is initialised first.\n\n" +
			"It listens on TCP and QUIC port 4110 on all interfaces by default;\n" +
			"--listen /ip4/127.0.0.1/tcp/0 picks a free loopback port, so several\n" +
			"daemons can run on one machine. SIGINT or SIGTERM leaves the network,\n" +
			"checkpoints fetches in progress and exits; a second signal exits at once.\n\n" +
			"Behind a NAT, give it relays (--relay, public peers started with\n" +
			"--relay-service): it holds a slot on them, peers reach it through them,\n" +
			"and hole punching turns those connections direct where the NATs allow.\n" +
			"`shoal status` shows its reachability and its direct and relayed\n" +
			"connections. --dht-prefix /ipfs --bootstrap ipfs joins the public IPFS\n" +
			"DHT (private networks stay off it by default).\n\n" +
			tracingHelp,
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "listen", Usage: "multiaddr to listen on (repeatable; config: listen)"},
			&cli.StringSliceFlag{Name: "bootstrap", Usage: "multiaddr with /p2p/<id> of a peer to join through (repeatable; config: bootstrap)"},
			&cli.StringFlag{Name: "network", Usage: "network name: gossip topics and DHT prefix (config: network, default \"default\")"},
			&cli.StringFlag{Name: "dht-prefix", Usage: "DHT protocol prefix (config: dht_prefix; default /shoal/<network>; /ipfs joins the IPFS DHT)"},
			&cli.BoolFlag{Name: "mdns", Usage: "find peers on the LAN by multicast DNS (config: mdns)"},
			&cli.StringFlag{Name: "log-level", Usage: "debug, info, warn or error (config: log_level, default info)"},
			&cli.Int64Flag{Name: "upload-rate", Usage: "bytes per second sent to all peers together, 0 unlimited (config: upload_rate)"},
			&cli.BoolFlag{Name: "storer", Usage: "keep replicas for the network (config: storer)"},
			&cli.StringFlag{Name: "store-quota", Usage: "most the store may hold, such as 500GiB; 0 no quota but the disk (config: store_quota)"},
			&cli.StringSliceFlag{Name: "relay", Usage: "multiaddr with /p2p/<id> of a circuit relay to hold a slot on when behind a NAT (repeatable; config: relays)"},
			&cli.BoolFlag{Name: "relay-service", Usage: "relay for peers behind NATs; the node is taken to be public unless --reachability says otherwise (config: relay_service)"},
			&cli.StringFlag{Name: "relay-max-data", Usage: "bound the data of each connection relayed for others, such as 128KiB; 0 none (config: relay_max_data)"},
			&cli.BoolFlag{Name: "nat-portmap", Usage: "ask the router for a port mapping by UPnP or NAT-PMP; multicasts on the LAN (config: nat_portmap)"},
			&cli.StringFlag{Name: "reachability", Usage: "public or private, to say so instead of finding out (config: reachability)"},
			&cli.StringFlag{Name: "api-listen", Usage: "also serve the API and the content gateway over HTTP on host:port; " +
				"requests must carry \"Authorization: Bearer <token>\" with the token in <home>/api.token (full control), " +
				"or the one in <home>/api.read.token (GET only: status, members, content held here) (config: api_listen)"},
		},
		Action: runDaemon,
	}
}

func runDaemon(c *cli.Context) error {
	home, err := filepath.Abs(c.String("home"))
	if err != nil {
		return err
	}
	network := c.String("network")
	if _, _, err := initHome(home, orDefault(network, "default")); err != nil {
		return err
	}
	fc, _, err := readConfig(home)
	if err != nil {
		return err
	}
	if c.IsSet("network") {
		fc.Network = network
	}
	if c.IsSet("listen") {
		fc.Listen = c.StringSlice("listen")
	}
	if c.IsSet("bootstrap") {
		fc.Bootstrap = c.StringSlice("bootstrap")
	}
	if c.IsSet("dht-prefix") {
		fc.DHTPrefix = c.String("dht-prefix")
	}
	if c.IsSet("mdns") {
		fc.MDNS = c.Bool("mdns")
	}
	if c.IsSet("log-level") {
		fc.LogLevel = c.String("log-level")
	}
	if c.IsSet("upload-rate") {
		fc.UploadRate = c.Int64("upload-rate")
	}
	if c.IsSet("api-listen") {
		fc.APIListen = c.String("api-listen")
	}
	if c.IsSet("storer") {
		fc.Storer = c.Bool("storer")
	}
	if c.IsSet("store-quota") {
		fc.StoreQuota = c.String("store-quota")
	}
	if c.IsSet("relay") {
		fc.Relays = c.StringSlice("relay")
	}
	if c.IsSet("relay-service") {
		fc.RelayService = c.Bool("relay-service")
	}
	if c.IsSet("relay-max-data") {
		fc.RelayMaxData = c.String("relay-max-data")
	}
	if c.IsSet("nat-portmap") {
		fc.NATPortMap = c.Bool("nat-portmap")
	}
	if c.IsSet("reachability") {
		fc.Reachability = c.String("reachability")
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(orDefault(fc.LogLevel, "info"))); err != nil {
		return fmt.Errorf("log level %q: want debug, info, warn or error", fc.LogLevel)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	cfg, err := fc.nodeConfig(home)
	if err != nil {
		return err
	}
	cfg.Logger = log
	flushTraces, err := setTracing(c.Context, &cfg, home, c.App.Writer, c.App.ErrWriter)
	if err != nil {
		return err
	}
	defer flushTraces()

	n, err := node.New(c.Context, cfg)
	if err != nil {
		if errors.Is(err, node.ErrHomeLocked) {
			return fmt.Errorf("another shoal daemon is running on %s", home)
		}
		return err
	}
	l, err := api.Listen(home)
	if err != nil {
		n.Close()
		return err
	}
	handler := api.NewServer(n, version, log)
	var tcpSrv *http.Server
	var tl net.Listener
	if fc.APIListen != "" {
		bearer, err := api.LoadOrCreateBearer(home)
		if err != nil {
			l.Close()
			n.Close()
			return err
		}
		readBearer, err := api.LoadOrCreateReadBearer(home)
		if err != nil {
			l.Close()
			n.Close()
			return err
		}
		if tl, err = net.Listen("tcp", fc.APIListen); err != nil {
			l.Close()
			n.Close()
			return fmt.Errorf("api_listen: %w", err)
		}
		handler.TCPAddr = tl.Addr().String()
		tcpSrv = &http.Server{Handler: api.RequireBearer(bearer, readBearer, handler), ReadHeaderTimeout: 10 * time.Second}
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 2)
	go func() { served <- srv.Serve(l) }()
	if tcpSrv != nil {
		go func() { served <- tcpSrv.Serve(tl) }()
		log.Info("API also on TCP; requests need a bearer token", "addr", tl.Addr().String(),
			"token_file", filepath.Join(home, api.TokenFileName), "read_only_token_file", filepath.Join(home, api.ReadTokenFileName))
	}

	log.Info("daemon started", "peer", n.ID(), "network", n.Network(), "api", filepath.Join(home, api.SocketName))
	fmt.Fprintf(c.App.Writer, "peer %s\n", n.ID())
	if tl != nil {
		fmt.Fprintf(c.App.Writer, "dashboard %s (shoal dashboard prints it with a token)\n", api.DashboardURL(handler.TCPAddr))
	}
	for _, a := range n.Addrs() {
		fmt.Fprintf(c.App.Writer, "listening on %s\n", a)
	}

	select {
	case <-c.Context.Done():
	case err := <-served:
		n.Close()
		return fmt.Errorf("api server: %w", err)
	}
	// A second signal now ends the process at once.
	stopSignals()
	log.Info("leaving: finishing requests, checkpointing fetches")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(ctx) // long fetch streams are cut by Close below
	srv.Close()
	if tcpSrv != nil {
		tcpSrv.Close()
	}
	err = n.Close()
	os.Remove(filepath.Join(home, api.SocketName))
	if err != nil {
		return fmt.Errorf("close: %w", err)
	}
	log.Info("stopped")
	return nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
