package main

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/shoalnet/shoal/node/api"
)

func dashboardCommand() *cli.Command {
	return &cli.Command{
		Name:  "dashboard",
		Usage: "print the address of the daemon's web dashboard, with a token to open it",
		Description: "The daemon serves a live dashboard on its TCP listener (--api-listen, or\n" +
			"api_listen in config.toml): members and their states, a topology diagram\n" +
			"of who is connected to whom, fetches with their progress, and the shares\n" +
			"in the catalog with their copies. It updates itself every second.\n\n" +
			"This prints its address with the read-only token in the fragment\n" +
			"(#token=...; browsers do not send it to the server; the page keeps it\n" +
			"for the tab). Anyone with the link can read the daemon's status until\n" +
			"api.read.token is replaced. --full-token gives the full token instead.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "full-token", Usage: "put the full-control token in the link (the dashboard only reads)"},
		},
		Action: withClient(func(c *cli.Context, cl *api.Client) error {
			st, err := cl.Status(c.Context)
			if err != nil {
				return err
			}
			if st.APIListen == "" {
				return errors.New("the daemon has no TCP listener for the dashboard: start it with --api-listen 127.0.0.1:4111 (or set api_listen in config.toml)")
			}
			home, err := filepath.Abs(c.String("home"))
			if err != nil {
				return err
			}
			load := api.LoadOrCreateReadBearer
			if c.Bool("full-token") {
				load = api.LoadOrCreateBearer
			}
			token, err := load(home)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "%s#token=%s\n", api.DashboardURL(st.APIListen), url.QueryEscape(token))
			return nil
		}),
	}
}
