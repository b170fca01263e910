package main

import (
	"context"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func run(ctx context.Context, args []string) error {
	app := &cli.App{
		Name:  "shoal",
		Usage: "peer-to-peer file distribution",
		Description: "shoal moves big files to many machines: every peer that holds part of a\n" +
			"file serves it to the others, and every byte is verified.",
		Flags: []cli.Flag{
			&cli.StringFlag{
				Name:    "home",
				Usage:   "the node's home directory (identity, state)",
				EnvVars: []string{"SHOAL_HOME"},
				Value:   defaultHome(),
			},
		},
		Commands: []*cli.Command{
			initCommand(),
			daemonCommand(),
			idCommand(),
			shareCommand(),
			fetchCommand(),
			catCommand(),
			unshareCommand(),
			pinCommand(),
			unpinCommand(),
			replicasCommand(),
			gcCommand(),
			lsCommand(),
			peersCommand(),
			connectCommand(),
			membersCommand(),
			graphCommand(),
			dashboardCommand(),
			statusCommand(),
			tokenCommand(),
			versionCommand(),
		},
		HideHelpCommand: true,
	}
	return app.RunContext(ctx, interspersed(app, args))
}

func defaultHome() string {
	h, err := os.UserHomeDir()
	if err != nil {
		return ".shoal"
	}
	return filepath.Join(h, ".shoal")
}
