package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/urfave/cli/v2"

	"github.com/shoalnet/shoal/node"
	"github.com/shoalnet/shoal/node/api"
)

var jsonFlag = &cli.BoolFlag{Name: "json", Usage: "print JSON (stable, for scripts)"}

func client(c *cli.Context) (*api.Client, error) {
	home, err := filepath.Abs(c.String("home"))
	if err != nil {
		return nil, err
	}
	return api.NewClient(home), nil
}

func printJSONCompact(w io.Writer, v any) error { return json.NewEncoder(w).Encode(v) }

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// idInfo is the output of `shoal id --json`.
type idInfo struct {
	ID      string   `json:"id"`
	Addrs   []string `json:"addrs"`
	Running bool     `json:"running"`
}

func idCommand() *cli.Command {
	return &cli.Command{
		Name:  "id",
		Usage: "print the peer ID and full listen multiaddrs",
		Description: "Prints this node's peer ID and, when its daemon runs, the multiaddrs\n" +
			"(with /p2p/<id>) other peers use to reach it: give one to --bootstrap or\n" +
			"--peer elsewhere. JSON: {\"id\", \"addrs\", \"running\"}.",
		Flags: []cli.Flag{jsonFlag},
		Action: withClient(func(c *cli.Context, cl *api.Client) error {
			info := idInfo{Addrs: []string{}}
			st, err := cl.Status(c.Context)
			switch {
			case err == nil:
				info.ID, info.Addrs, info.Running = st.ID, st.Addrs, true
			case errors.Is(err, api.ErrNoDaemon):
				key, _, kerr := node.LoadOrCreateIdentity(c.String("home"))
				if kerr != nil {
					return kerr
				}
				id, kerr := peer.IDFromPrivateKey(key)
				if kerr != nil {
					return kerr
				}
				info.ID = id.String()
			default:
				return err
			}
			if c.Bool("json") {
				return printJSON(c.App.Writer, info)
			}
			fmt.Fprintln(c.App.Writer, info.ID)
			for _, a := range info.Addrs {
				fmt.Fprintln(c.App.Writer, a)
			}
			if !info.Running {
				fmt.Fprintln(c.App.ErrWriter, "(no daemon running: addresses are known once `shoal daemon` runs)")
			}
			return nil
		}),
	}
}

func shareCommand() *cli.Command {
	return &cli.Command{
		Name:      "share",
		Usage:     "index and announce a file or directory; print its root CID",
		ArgsUsage: "PATH",
		Description: "Indexes PATH (hashing every chunk once), serves it from where it lies\n" +
			"(no copy), announces it in the network's catalog and provides it in the\n" +
			"DHT. The root CID is the last line of stdout (the only one with --quiet);\n" +
			"with --encrypt, the link CID#KEY instead.\n" +
			"progress goes to stderr on a terminal. Needs a running daemon. If a file\n" +
			"changes later, it is no longer served: share it again.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print only the root CID"},
			&cli.Int64Flag{Name: "chunk-size", Usage: "chunk size in bytes, a power of two from 256 KiB to 16 MiB (default 1 MiB)"},
			&cli.BoolFlag{Name: "sha256", Usage: "hash with SHA2-256 instead of BLAKE3"},
			&cli.StringSliceFlag{Name: "allow", Usage: "limit the share to a role (reader, publisher, admin: closed networks) or a peer ID; " +
				"repeatable; peers that fetch it keep the limits; others get \"denied\" and no byte of it"},
			&cli.BoolFlag{Name: "skip-special", Usage: "leave symbolic links, devices, sockets and named pipes out of a directory " +
				"(each is named on stderr) instead of refusing it"},
			&cli.IntFlag{Name: "replicas", Usage: "ask the network's storers to keep this many copies (see shoal pin)"},
			&cli.BoolFlag{Name: "encrypt", Usage: "encrypt with a new key into the store and share the ciphertext; " +
				"prints the link CID#KEY, the only copy of the key: peers without it store and serve the share but cannot read it " +
				"(file names and sizes stay visible)"},
			&cli.BoolFlag{Name: "preserve-times", Usage: "record modification times of files and directories so that fetches restore them; " +
				"the root then differs from the same content shared without them"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return fmt.Errorf("share takes one PATH (got %d arguments)", c.NArg())
			}
			cl, err := client(c)
			if err != nil {
				return err
			}
			defer cl.Close()
			rep := newIndexReporter(c.App.ErrWriter, c.Bool("quiet"))
			skipped := 0
			done, err := cl.Share(c.Context, api.ShareRequest{
				Path: c.Args().First(), ChunkSize: c.Int64("chunk-size"), SHA256: c.Bool("sha256"),
				Allow: c.StringSlice("allow"), SkipSpecial: c.Bool("skip-special"),
				Times: c.Bool("preserve-times"), Replicas: c.Int("replicas"), Encrypt: c.Bool("encrypt"),
			}, rep.update, func(path, kind string) {
				skipped++
				fmt.Fprintf(c.App.ErrWriter, "left out: %s (%s)\n", path, kind)
			})
			rep.finish()
			if err != nil {
				return err
			}
			if !c.Bool("quiet") {
				fmt.Fprintf(c.App.Writer, "shared %s\n", done.Path)
				if skipped > 0 {
					fmt.Fprintf(c.App.Writer, "%d entries that are neither files nor directories left out\n", skipped)
				}
			}
			if done.Link != "" {
				if !c.Bool("quiet") {
					fmt.Fprintln(c.App.ErrWriter, "encrypted: keep the link below, it holds the key (shoal does not keep it); fetch with: shoal fetch LINK")
				}
				fmt.Fprintln(c.App.Writer, done.Link)
				return nil
			}
			fmt.Fprintln(c.App.Writer, done.Root)
			return nil
		},
	}
}

func unshareCommand() *cli.Command {
	return &cli.Command{
		Name:      "unshare",
		Usage:     "stop serving a share (its files are left alone)",
		ArgsUsage: "CID",
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return fmt.Errorf("unshare takes one CID (got %d arguments)", c.NArg())
			}
			root, err := parseRoot(c.Args().First())
			if err != nil {
				return err
			}
			cl, err := client(c)
			if err != nil {
				return err
			}
			defer cl.Close()
			if err := cl.Unshare(c.Context, root.String()); err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "unshared %s\n", root)
			return nil
		},
	}
}

func parseRoot(s string) (cid.Cid, error) {
	root, err := cid.Decode(s)
	if err != nil {
		return cid.Undef, fmt.Errorf("malformed CID %q: %w", s, err)
	}
	if err := node.CheckRoot(root); err != nil {
		return cid.Undef, err
	}
	return root, nil
}

func lsCommand() *cli.Command {
	return &cli.Command{
		Name:  "ls",
		Usage: "list the shares known in the network (the catalog)",
		Description: "One line per (share, publisher), newest first. COPIES is the number\n" +
			"of replicas the publisher asks for (\"asks N\" when it holds no copy itself:\n" +
			"a pin). JSON: an array of {\"root\", \"name\", \"size\", \"files\",\n" +
			"\"publisher\", \"time\", \"replicas\", \"not_held\"}.",
		Flags: []cli.Flag{jsonFlag},
		Action: withClient(func(c *cli.Context, cl *api.Client) error {
			entries, err := cl.Catalog(c.Context)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(c.App.Writer, entries)
			}
			tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ROOT\tNAME\tSIZE\tFILES\tCOPIES\tPUBLISHER\tANNOUNCED")
			for _, e := range entries {
				copies := "-"
				switch {
				case e.NotHeld:
					copies = fmt.Sprintf("asks %d", e.Replicas)
				case e.Replicas > 0:
					copies = fmt.Sprint(e.Replicas)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", e.Root, e.Name, size(e.Size), e.Files, copies,
					shortID(e.Publisher.String()), e.Time.Local().Format(time.DateTime))
			}
			return tw.Flush()
		}),
	}
}

func shortID(id string) string {
	if len(id) > 16 {
		return id[:8] + "…" + id[len(id)-6:]
	}
	return id
}

func peersCommand() *cli.Command {
	return &cli.Command{
		Name:        "peers",
		Usage:       "list connected peers, with addresses and latency",
		Description: "JSON: an array of {\"id\", \"addrs\", \"latency_ns\"}.",
		Flags:       []cli.Flag{jsonFlag},
		Action: withClient(func(c *cli.Context, cl *api.Client) error {
			peers, err := cl.Peers(c.Context)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				if peers == nil {
					peers = []node.PeerInfo{}
				}
				return printJSON(c.App.Writer, peers)
			}
			tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PEER\tLATENCY\tADDRESS")
			for _, p := range peers {
				addr := ""
				if len(p.Addrs) > 0 {
					addr = p.Addrs[0]
				}
				lat := "-"
				if p.Latency > 0 {
					lat = p.Latency.Round(time.Microsecond).String()
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\n", p.ID, lat, addr)
			}
			return tw.Flush()
		}),
	}
}

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show this node: id, network, uptime, shares, transfers, reachability",
		Description: "JSON: {\"id\", \"network\", \"version\", \"addrs\", \"started\", \"uptime_ns\",\n" +
			"\"peers\", \"shares\", \"catalog\", \"fetches\", \"dht_peers\", \"members\" (count by\n" +
			"state), \"reachability\", \"nat\": {\"reachability\", \"public_addrs\", \"confirmed_addrs\",\n" +
			"\"relay_addrs\", \"direct_connections\", \"relayed_connections\", \"relay_service\"},\n" +
			"\"access\": {\"closed\", \"admins\", \"role\", \"role_error\",\n" +
			"\"token_expires\", \"revocations\", \"refused_peers\", \"denied_requests\",\n" +
			"\"rejected_announcements\"}}.",
		Flags: []cli.Flag{jsonFlag},
		Action: withClient(func(c *cli.Context, cl *api.Client) error {
			st, err := cl.Status(c.Context)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(c.App.Writer, st)
			}
			w := c.App.Writer
			fmt.Fprintf(w, "peer:         %s\n", st.ID)
			fmt.Fprintf(w, "network:      %s\n", st.Network)
			fmt.Fprintf(w, "version:      %s\n", st.Version)
			fmt.Fprintf(w, "uptime:       %s\n", st.Uptime.Round(time.Second))
			fmt.Fprintf(w, "peers:        %d connected, %d in the DHT routing table\n", st.Peers, st.DHTPeers)
			fmt.Fprintf(w, "shares:       %d served, %d in the catalog\n", st.Shares, st.Catalog)
			for _, sh := range st.Stale {
				fmt.Fprintf(w, "  not served: %s (%s): %s; share it again\n", sh.Name, sh.Root, sh.Stale)
			}
			fmt.Fprintf(w, "members:      %d alive, %d suspect, %d dead, %d left\n",
				st.Members["alive"], st.Members["suspect"], st.Members["dead"], st.Members["left"])
			nat := st.NAT
			relays := ""
			if nat.RelayService {
				relays = "; relays for others"
			}
			fmt.Fprintf(w, "reachability: %s; %d direct and %d relayed connections%s\n", nat.Reachability, nat.Direct, nat.Relayed, relays)
			for _, a := range nat.PublicAddrs {
				fmt.Fprintf(w, "public:       %s\n", a)
			}
			for _, a := range nat.RelayAddrs {
				fmt.Fprintf(w, "via relay:    %s\n", a)
			}
			if a := st.Access; a.Closed {
				role := a.Role
				if role == "" {
					role = "none (" + a.RoleError + ")"
				}
				if !a.TokenExpires.IsZero() {
					role += ", token expires " + a.TokenExpires.Format(time.RFC3339)
				}
				fmt.Fprintf(w, "access:       closed network, role %s\n", role)
				fmt.Fprintf(w, "refusals:     %d peers refused now, %d requests denied, %d announcements rejected, %d revocations\n",
					a.RefusedPeers, a.DeniedFetches, a.RejectedAnns, a.Revocations)
			} else {
				fmt.Fprintf(w, "access:       open network (every peer reads and publishes); %d requests denied\n", a.DeniedFetches)
			}
			for _, a := range st.Addrs {
				fmt.Fprintf(w, "address:      %s\n", a)
			}
			for _, f := range st.Fetches {
				fmt.Fprintf(w, "fetching:     %s %s %s / %s\n", f.Root, f.Name, size(f.Bytes), size(f.Total))
			}
			if s := st.Store; s.Storer || s.Used > 0 {
				quota := "no quota"
				if s.Quota > 0 {
					quota = "quota " + size(s.Quota)
				}
				role := "keeps replicas"
				if !s.Storer {
					role = "not a storer"
				}
				full := ""
				if s.Full {
					full = ", FULL: refuses new replicas"
				}
				fmt.Fprintf(w, "store:        %s used, %s, %s, %d replicas, %d being fetched%s\n",
					size(s.Used), quota, role, s.Replicas, len(s.Repairs), full)
			}
			for _, u := range st.UnderReplicated {
				fmt.Fprintf(w, "replicas:     %s %s: %d of %d live copies\n", u.Root, u.Name, u.Live, u.Wanted)
			}
			return nil
		}),
	}
}

// withClient runs fn with a client of the home's daemon.
func withClient(fn func(*cli.Context, *api.Client) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		cl, err := client(c)
		if err != nil {
			return err
		}
		defer cl.Close()
		return fn(c, cl)
	}
}

func connectCommand() *cli.Command {
	return &cli.Command{
		Name:      "connect",
		Usage:     "connect the daemon to a peer",
		ArgsUsage: "MULTIADDR",
		Description: "Dials the peer at MULTIADDR (ending in /p2p/<peer id>), such as\n" +
			"/ip4/203.0.113.7/tcp/4110/p2p/12D3KooW... or, for a peer behind a NAT,\n" +
			"its address through a relay: <relay address>/p2p-circuit/p2p/12D3KooW...\n" +
			"(`shoal status` on that peer lists it). Over a relay, hole punching then\n" +
			"tries to open a direct connection; `shoal peers` shows which it is.",
		Action: withClient(func(c *cli.Context, cl *api.Client) error {
			if c.NArg() != 1 {
				return errors.New("want one multiaddr, such as /ip4/203.0.113.7/tcp/4110/p2p/<peer id>")
			}
			if err := cl.Connect(c.Context, c.Args().First()); err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "connected to %s\n", c.Args().First())
			return nil
		}),
	}
}
