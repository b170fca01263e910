package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/shoalnet/shoal/node/api"
	"github.com/shoalnet/shoal/node/membership"
)

func membersCommand() *cli.Command {
	return &cli.Command{
		Name:  "members",
		Usage: "list the network's members: state, incarnation, last change, addresses",
		Description: "The membership view of this node: every member it knows, alive, suspect,\n" +
			"dead (failed) or left (gracefully), with its incarnation number, when its\n" +
			"state last changed, and what it says about itself.\n" +
			"--watch prints changes as they happen, until interrupted.\n" +
			"JSON: an array of {\"id\", \"state\", \"incarnation\", \"changed\", \"meta\": {\"name\",\n" +
			"\"network\", \"roles\", \"addrs\", \"version\", \"free_storage\", \"shares\"}}; with\n" +
			"--watch, one {\"member\", \"prev\"} event per line.",
		Flags: []cli.Flag{jsonFlag, &cli.BoolFlag{Name: "watch", Aliases: []string{"w"}, Usage: "print changes as they happen"}},
		Action: withClient(func(c *cli.Context, cl *api.Client) error {
			if c.Bool("watch") {
				return cl.WatchMembers(c.Context, func(e membership.Event) {
					if c.Bool("json") {
						printJSONLine(c, e)
						return
					}
					m := e.Member
					fmt.Fprintf(c.App.Writer, "%s  %-20s %s -> %s (incarnation %d)\n",
						time.Now().Format(time.TimeOnly), nameOf(m), stateName(e.Prev), m.State, m.Incarnation)
				})
			}
			members, err := cl.Members(c.Context)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(c.App.Writer, members)
			}
			tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PEER\tNAME\tSTATE\tINC\tCHANGED\tSHARES\tFREE\tADDRESS")
			for _, m := range members {
				addr := ""
				if len(m.Meta.Addrs) > 0 {
					addr = m.Meta.Addrs[0]
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d\t%s\t%s\n", shortID(m.ID.String()), m.Meta.Name, m.State,
					m.Incarnation, m.Changed.Local().Format(time.DateTime), m.Meta.Shares,
					size(int64(m.Meta.FreeStorage)), addr)
			}
			return tw.Flush()
		}),
	}
}

func nameOf(m membership.Member) string {
	if m.Meta.Name != "" {
		return m.Meta.Name + " " + shortID(m.ID.String())
	}
	return shortID(m.ID.String())
}

func stateName(s membership.State) string {
	if s == 0 {
		return "new"
	}
	return s.String()
}

func printJSONLine(c *cli.Context, v any) {
	var b strings.Builder
	if err := printJSONCompact(&b, v); err == nil {
		fmt.Fprint(c.App.Writer, b.String())
	}
}
