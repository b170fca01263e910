package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/shoalnet/shoal/node"
	"github.com/shoalnet/shoal/node/api"
	"github.com/shoalnet/shoal/node/membership"
)

func graphCommand() *cli.Command {
	return &cli.Command{
		Name:  "graph",
		Usage: "print the network's topology: members and who is connected to whom",
		Description: "Asks every live member which members it is connected to and prints\n" +
			"the graph: Graphviz dot (default; `shoal graph | dot -Tsvg > net.svg`),\n" +
			"Mermaid (for Markdown docs) or JSON ({\"nodes\": [{\"id\", \"name\",\n" +
			"\"state\", \"unknown\"}], \"edges\": [[id, id]]}). Members are colored\n" +
			"by state; one that did not answer is dashed, and shows only the\n" +
			"edges others gave.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "format", Value: "dot", Usage: "dot, mermaid or json"},
		},
		Action: withClient(func(c *cli.Context, cl *api.Client) error {
			format := c.String("format")
			if format != "dot" && format != "mermaid" && format != "json" {
				return fmt.Errorf("--format %q: want dot, mermaid or json", format)
			}
			g, err := cl.Graph(c.Context)
			if err != nil {
				return err
			}
			switch format {
			case "json":
				return printJSON(c.App.Writer, g)
			case "mermaid":
				writeMermaid(c.App.Writer, g)
			default:
				writeDot(c.App.Writer, g)
			}
			return nil
		}),
	}
}

// stateColor is each state's color in the drawings.
var stateColor = map[membership.State]string{
	membership.Alive: "#2e9d4f", membership.Suspect: "#e8a33d", membership.Dead: "#c8352b", membership.Left: "#8a8a8a",
}

func nodeLabel(n node.GraphNode) string {
	id := shortID(n.ID.String())
	if n.Name == "" {
		return id
	}
	return n.Name + " " + id
}

func writeDot(w io.Writer, g node.Graph) {
	fmt.Fprintln(w, "graph shoal {")
	fmt.Fprintln(w, "  node [shape=box, style=\"rounded,filled\", fontcolor=white];")
	for _, n := range g.Nodes {
		style := "rounded,filled"
		if n.Unknown {
			style += ",dashed"
		}
		fmt.Fprintf(w, "  %q [label=%q, fillcolor=%q, style=%q, tooltip=%q];\n",
			n.ID.String(), nodeLabel(n)+"\n"+n.State.String(), stateColor[n.State], style, n.ID.String())
	}
	for _, e := range g.Edges {
		fmt.Fprintf(w, "  %q -- %q;\n", e[0].String(), e[1].String())
	}
	fmt.Fprintln(w, "}")
}

func writeMermaid(w io.Writer, g node.Graph) {
	fmt.Fprintln(w, "graph LR")
	idx := make(map[string]string)
	for i, n := range g.Nodes {
		k := fmt.Sprintf("n%d", i)
		idx[n.ID.String()] = k
		label := strings.ReplaceAll(nodeLabel(n), `"`, "'")
		fmt.Fprintf(w, "  %s[\"%s<br/>%s\"]:::%s\n", k, label, n.State, n.State)
	}
	for _, e := range g.Edges {
		fmt.Fprintf(w, "  %s --- %s\n", idx[e[0].String()], idx[e[1].String()])
	}
	for _, s := range []membership.State{membership.Alive, membership.Suspect, membership.Dead, membership.Left} {
		fmt.Fprintf(w, "  classDef %s fill:%s,color:#fff\n", s, stateColor[s])
	}
}
