package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/ipfs/go-cid"
	"github.com/urfave/cli/v2"

	"github.com/shoalnet/shoal/node"
	"github.com/shoalnet/shoal/node/api"
	"github.com/shoalnet/shoal/transfer"
	"github.com/shoalnet/shoal/transfer/manifest"
	"github.com/shoalnet/shoal/transfer/seal"
)

func catCommand() *cli.Command {
	return &cli.Command{
		Name:      "cat",
		Usage:     "write a file of a share to standard output, while it arrives",
		ArgsUsage: "CID[/PATH][#KEY]",
		Description: "Writes the file PATH of the share CID (a single-file share needs no\n" +
			"PATH) to standard output. Bytes flow as soon as the chunks they are in\n" +
			"arrive and are verified: the fetch asks for the chunks next in line\n" +
			"first, so `shoal cat CID | tar x` or a media player starts at once.\n" +
			"A share not held here is fetched whole into <home>/store and then\n" +
			"served like any fetched share (`shoal unshare CID` deletes it).\n" +
			"An encrypted share is read through its link: CID/PATH#KEY.\n\n" +
			"Through the running daemon if there is one; otherwise with a node\n" +
			"started for this alone, bootstrapping from --bootstrap and config.toml.",
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "bootstrap", Usage: "multiaddr of a peer to join through, without a daemon (repeatable)"},
		},
		Action: runCat,
	}
}

func runCat(c *cli.Context) error {
	if c.NArg() != 1 {
		return fmt.Errorf("cat takes one CID[/PATH] (got %d arguments)", c.NArg())
	}
	arg, keyText, hasKey := strings.Cut(strings.TrimSpace(c.Args().First()), "#")
	rootArg, name, _ := strings.Cut(arg, "/")
	root, err := parseRoot(rootArg)
	if err != nil {
		return err
	}
	var key *seal.Key
	if hasKey {
		if _, key, err = seal.ParseLink(rootArg + "#" + keyText); err != nil {
			return err
		}
	}
	cl, err := client(c)
	if err != nil {
		return err
	}
	defer cl.Close()
	keyArg := ""
	if key != nil {
		keyArg = key.String()
	}
	rd, err := cl.Cat(c.Context, root.String(), name, keyArg)
	if errors.Is(err, api.ErrNoDaemon) {
		return catInProcess(c, root, name, key)
	}
	if err != nil {
		return catError(err)
	}
	return copyOut(c, rd)
}

// copyOut writes rd to standard output and closes it.
func copyOut(c *cli.Context, rd io.ReadCloser) error {
	defer rd.Close()
	if _, err := io.Copy(c.App.Writer, rd); err != nil {
		return fmt.Errorf("cat %s: %w", c.Args().First(), err)
	}
	return nil
}

func catError(err error) error {
	if errors.Is(err, transfer.ErrNoProviders) {
		return fmt.Errorf("%w\n(check the connections with `shoal peers`)", err)
	}
	if errors.Is(err, node.ErrSealed) {
		return fmt.Errorf("%w\n(read it through its link: CID/PATH#KEY)", err)
	}
	return err
}

// catInProcess reads with a node of its own on the home, for when no
// daemon runs.
func catInProcess(c *cli.Context, root cid.Cid, name string, key *seal.Key) error {
	n, done, err := inProcessNode(c)
	if err != nil {
		return err
	}
	defer done()
	var rd io.ReadCloser
	if key != nil {
		rd, err = n.OpenDecrypted(c.Context, root, *key, name)
	} else {
		rd, err = n.Open(c.Context, root, name)
	}
	if err != nil {
		if errors.Is(err, transfer.ErrIsDir) {
			if m, merr := n.Content(c.Context, root); merr == nil {
				return fmt.Errorf("%w; its files: %s", err, strings.Join(filesOf(m.Entries), " "))
			}
		}
		return catError(err)
	}
	return copyOut(c, rd)
}

func filesOf(entries []manifest.Entry) []string {
	var out []string
	for _, e := range entries {
		if !e.Dir {
			out = append(out, e.Path)
		}
	}
	return out
}
