package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/urfave/cli/v2"

	"github.com/shoalnet/shoal/node"
)

func initCommand() *cli.Command {
	return &cli.Command{
		Name:  "init",
		Usage: "create the home: identity key and config.toml",
		Description: "Creates the home directory (--home, $SHOAL_HOME or ~/.shoal) with a new\n" +
			"Ed25519 identity (identity.key, mode 0600) and a config.toml holding every\n" +
			"daemon setting with its default. An existing home is left as it is.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "network", Value: "default", Usage: "name of the network to join"},
			&cli.BoolFlag{Name: "swarm-key", Usage: "make a new private network: write a pre-shared key to <home>/swarm.key; " +
				"copy that file into the home of every peer allowed in (TCP only: QUIC cannot carry it)"},
			&cli.BoolFlag{Name: "admin", Usage: "make a closed network with this peer as its admin (writes admins = [<this peer>] to config.toml); " +
				"issue tokens with 'shoal token issue'"},
			&cli.StringSliceFlag{Name: "admins", Usage: "join a closed network: the peer ID of one of its admins (repeatable; config: admins)"},
		},
		Action: func(c *cli.Context) error {
			home := c.String("home")
			id, created, err := initHome(home, c.String("network"))
			if err != nil {
				return err
			}
			if c.Bool("swarm-key") {
				if err := node.NewSwarmKey(home); err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "private network key written to %s\n", filepath.Join(home, node.SwarmKeyFile))
				created = true
			}
			var admins []string
			if c.Bool("admin") {
				admins = append(admins, id.String())
			}
			admins = append(admins, c.StringSlice("admins")...)
			if len(admins) > 0 {
				if err := setAdmins(home, admins); err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "closed network: admins %s\n", strings.Join(admins, ", "))
				created = true
			}
			if !created {
				return fmt.Errorf("%s is already initialised (peer %s)", home, id)
			}
			fmt.Fprintf(c.App.Writer, "initialised %s\npeer %s\n", home, id)
			return nil
		},
	}
}

// setAdmins adds admins to home's config.toml, which makes the network
// closed.
func setAdmins(home string, admins []string) error {
	fc, _, err := readConfig(home)
	if err != nil {
		return err
	}
	for _, a := range admins {
		id, err := peer.Decode(a)
		if err != nil {
			return fmt.Errorf("admin %q is not a peer ID: %w", a, err)
		}
		if !slices.Contains(fc.Admins, id.String()) {
			fc.Admins = append(fc.Admins, id.String())
		}
	}
	return writeConfig(home, fc)
}

// initHome creates the identity and config.toml if missing.
func initHome(home, network string) (peer.ID, bool, error) {
	if err := os.MkdirAll(home, 0o700); err != nil {
		return "", false, fmt.Errorf("create home %s: %w", home, err)
	}
	key, created, err := node.LoadOrCreateIdentity(home)
	if err != nil {
		return "", false, err
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return "", false, err
	}
	if _, err := os.Stat(filepath.Join(home, configName)); os.IsNotExist(err) {
		if err := writeConfig(home, defaultFileConfig(network)); err != nil {
			return "", false, err
		}
		created = true
	}
	return id, created, nil
}
