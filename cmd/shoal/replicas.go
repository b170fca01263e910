package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/shoalnet/shoal/node"
	"github.com/shoalnet/shoal/node/api"
	"github.com/shoalnet/shoal/node/catalog"
)

func pinCommand() *cli.Command {
	return &cli.Command{
		Name:      "pin",
		Usage:     "ask the network to keep N copies of a share",
		ArgsUsage: "CID",
		Description: "Asks the network's storers (daemons run with --storer) to keep\n" +
			"--replicas copies of a share that some peer announced; this node need\n" +
			"not hold it. Every node computes the same placement (rendezvous hashing\n" +
			"over the live storers with room); the placed ones fetch the share into\n" +
			"their store, and when one fails the next one in the order fetches it.\n" +
			"Pinning again changes the count; `shoal unpin` withdraws the request.",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "replicas", Aliases: []string{"n"}, Value: 3, Usage: fmt.Sprintf("copies to keep, 1 to %d", catalog.MaxReplicas)},
			jsonFlag,
		},
		Action: withClient(func(c *cli.Context, cl *api.Client) error {
			root, err := oneRoot(c, "pin")
			if err != nil {
				return err
			}
			st, err := cl.Pin(c.Context, root, c.Int("replicas"))
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(c.App.Writer, st)
			}
			fmt.Fprintf(c.App.Writer, "pinned %s: %d copies wanted\n", root, st.Wanted)
			printReplicas(c.App.Writer, st)
			return nil
		}),
	}
}

func unpinCommand() *cli.Command {
	return &cli.Command{
		Name:      "unpin",
		Usage:     "withdraw this node's request for copies of a share",
		ArgsUsage: "CID",
		Description: "Withdraws the replica request this node made (share --replicas or\n" +
			"pin). Unless another peer asks for copies, the storers release theirs\n" +
			"after their grace period (replica_grace). Files shared in place are\n" +
			"never deleted.",
		Action: withClient(func(c *cli.Context, cl *api.Client) error {
			root, err := oneRoot(c, "unpin")
			if err != nil {
				return err
			}
			if err := cl.Unpin(c.Context, root); err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "unpinned %s\n", root)
			return nil
		}),
	}
}

func replicasCommand() *cli.Command {
	return &cli.Command{
		Name:      "replicas",
		Usage:     "show the copies of a share: wanted, live, placed, being repaired",
		ArgsUsage: "CID",
		Description: "Shows, as this node sees the network: how many copies are wanted,\n" +
			"which members should hold them (best first) and whether each does, the\n" +
			"live members holding one, and the repairs under way. JSON: {\"root\",\n" +
			"\"name\", \"size\", \"wanted\", \"pinned_here\", \"live_copies\", \"holders\",\n" +
			"\"placed\": [{\"id\", \"name\", \"state\", \"holds\"}], \"repairing\",\n" +
			"\"repair_here_since\"}.",
		Flags: []cli.Flag{jsonFlag},
		Action: withClient(func(c *cli.Context, cl *api.Client) error {
			root, err := oneRoot(c, "replicas")
			if err != nil {
				return err
			}
			st, err := cl.Replicas(c.Context, root)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(c.App.Writer, st)
			}
			printReplicas(c.App.Writer, st)
			return nil
		}),
	}
}

func gcCommand() *cli.Command {
	return &cli.Command{
		Name:  "gc",
		Usage: "delete store content kept only for reading",
		Description: "Deletes from <home>/store the shares fetched there for reading (shoal\n" +
			"cat, the gateway) that are neither replicas placed on this node nor\n" +
			"pinned by it. Files shared in place and fetches to your own paths are\n" +
			"never touched. A full store does this by itself before it refuses a\n" +
			"replica.",
		Flags: []cli.Flag{jsonFlag},
		Action: withClient(func(c *cli.Context, cl *api.Client) error {
			out, err := cl.CollectGarbage(c.Context)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(c.App.Writer, out)
			}
			fmt.Fprintf(c.App.Writer, "collected %d shares, %s\n", len(out.Roots), size(out.Bytes))
			return nil
		}),
	}
}

// oneRoot returns the command's one CID argument, checked.
func oneRoot(c *cli.Context, cmd string) (string, error) {
	if c.NArg() != 1 {
		return "", fmt.Errorf("%s takes one CID (got %d arguments)", cmd, c.NArg())
	}
	root, err := parseRoot(c.Args().First())
	if err != nil {
		return "", err
	}
	return root.String(), nil
}

func printReplicas(w io.Writer, st node.ReplicaStatus) {
	name := st.Name
	if name == "" {
		name = "(unknown)"
	}
	fmt.Fprintf(w, "root:     %s %s %s\n", st.Root, name, size(st.Size))
	if st.Wanted == 0 {
		fmt.Fprintf(w, "wanted:   no copies asked for (shoal pin CID --replicas N)\n")
	} else {
		verdict := "ok"
		if st.Live < st.Wanted {
			verdict = fmt.Sprintf("%d missing", st.Wanted-st.Live)
		}
		fmt.Fprintf(w, "wanted:   %d copies, %d live on storers (%s)\n", st.Wanted, st.Live, verdict)
	}
	if st.Pinned > 0 {
		fmt.Fprintf(w, "pinned:   by this node, %d copies\n", st.Pinned)
	}
	for i, h := range st.Placed {
		what := "holds it"
		if !h.Holds {
			what = "fetching it (repair)"
		}
		fmt.Fprintf(w, "placed %d: %s %-10s %-8s %s\n", i+1, h.ID, orDefault(h.Name, "-"), h.State, what)
	}
	var others []string
	for _, id := range st.Holders {
		placed := false
		for _, h := range st.Placed {
			placed = placed || h.ID == id
		}
		if !placed {
			others = append(others, id.String())
		}
	}
	if len(others) > 0 {
		fmt.Fprintf(w, "also held by: %s\n", strings.Join(others, ", "))
	}
	if st.RepairHere != nil {
		fmt.Fprintf(w, "this node fetches it since %s\n", st.RepairHere.Format("15:04:05"))
	}
}
