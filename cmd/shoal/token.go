package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/urfave/cli/v2"

	"github.com/shoalnet/shoal/node"
	"github.com/shoalnet/shoal/node/api"
	"github.com/shoalnet/shoal/node/auth"
)

func tokenCommand() *cli.Command {
	return &cli.Command{
		Name:  "token",
		Usage: "issue, install, show and revoke the tokens of a closed network",
		Description: "A network is closed when config.toml names admins (shoal init --admin makes\n" +
			"one). In a closed network a peer proves its role with a token signed by an\n" +
			"admin: reader (fetches the shares open to it), publisher (also announces\n" +
			"shares), admin (also issues and revokes tokens). Every peer checks every\n" +
			"token itself and refuses peers without a valid one.\n\n" +
			"  admin$  shoal token issue --role reader --peer 12D3KooW... --expires 720h\n" +
			"  peer$   shoal token add shoaltok1_...\n" +
			"  admin$  shoal token revoke shoaltok1_...",
		Subcommands: []*cli.Command{
			{
				Name:  "issue",
				Usage: "sign a token for a peer (run with an admin's home)",
				Description: "Prints the token, signed with this home's identity key, which must be one of\n" +
					"the admins in config.toml. Give it to the peer, which runs 'shoal token add'.",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "role", Required: true, Usage: "reader, publisher or admin"},
					&cli.StringFlag{Name: "peer", Required: true, Usage: "the peer ID the token is for (shoal id on that peer)"},
					&cli.DurationFlag{Name: "expires", Usage: "lifetime, such as 720h; 0 never expires"},
					jsonFlag,
				},
				Action: tokenIssue,
			},
			{
				Name:      "add",
				Usage:     "install this peer's token",
				ArgsUsage: "TOKEN",
				Description: "Checks that TOKEN names this peer and is valid in its network, keeps it in\n" +
					"<home>/token and, if the daemon runs, hands it over at once.",
				Action: tokenAdd,
			},
			{
				Name:        "show",
				Usage:       "decode a token (default: this peer's)",
				ArgsUsage:   "[TOKEN]",
				Description: "JSON: {\"id\", \"network\", \"role\", \"peer\", \"issuer\", \"issued\", \"expires\"}.",
				Flags:       []cli.Flag{jsonFlag},
				Action:      tokenShow,
			},
			{
				Name:      "revoke",
				Usage:     "revoke a token in the whole network (an admin's running daemon)",
				ArgsUsage: "TOKEN",
				Description: "The admin's daemon signs a revocation and publishes it; every peer keeps\n" +
					"it, cuts off the peer that held the token and refuses it from then on. Peers\n" +
					"that were away learn it when they next connect.",
				Action: tokenRevoke,
			},
		},
	}
}

func tokenIssue(c *cli.Context) error {
	home := c.String("home")
	fc, found, err := readConfig(home)
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("%s is not initialised (shoal init --admin makes a closed network)", home)
	}
	role, err := auth.ParseRole(c.String("role"))
	if err != nil {
		return err
	}
	p, err := peer.Decode(c.String("peer"))
	if err != nil {
		return fmt.Errorf("--peer %q is not a peer ID: %w", c.String("peer"), err)
	}
	if c.Duration("expires") < 0 {
		return errors.New("--expires must not be negative")
	}
	key, _, err := node.LoadOrCreateIdentity(home)
	if err != nil {
		return err
	}
	self, _ := peer.IDFromPrivateKey(key)
	if !slices.Contains(fc.Admins, self.String()) {
		return fmt.Errorf("this home's peer %s is not an admin of network %q (config.toml admins); tokens it signs would be refused", self, fc.Network)
	}
	t, err := auth.Issue(key, fc.Network, role, p, c.Duration("expires"), time.Now())
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, struct {
			api.TokenInfo
			Token string `json:"token"`
		}{api.NewTokenInfo(t), t.String()})
	}
	fmt.Fprintln(c.App.Writer, t.String())
	return nil
}

func tokenAdd(c *cli.Context) error {
	if c.NArg() != 1 {
		return fmt.Errorf("token add takes one TOKEN (got %d arguments)", c.NArg())
	}
	home := c.String("home")
	t, err := auth.ParseToken(c.Args().First())
	if err != nil {
		return err
	}
	key, _, err := node.LoadOrCreateIdentity(home)
	if err != nil {
		return err
	}
	self, _ := peer.IDFromPrivateKey(key)
	if t.Peer != self {
		return fmt.Errorf("%w: it names %s; this home's peer is %s", auth.ErrWrongPeer, t.Peer, self)
	}
	fc, _, err := readConfig(home)
	if err != nil {
		return err
	}
	if t.Network != fc.Network {
		return fmt.Errorf("%w: the token is for network %q, this home is in %q", auth.ErrWrongNetwork, t.Network, fc.Network)
	}
	if !slices.Contains(fc.Admins, t.Issuer.String()) {
		return fmt.Errorf("%w: issued by %s, not among config.toml admins %v", auth.ErrUnknownIssuer, t.Issuer, fc.Admins)
	}
	if !t.Expires.IsZero() && !time.Now().Before(t.Expires) {
		return fmt.Errorf("%w at %s", auth.ErrExpired, t.Expires.Format(time.RFC3339))
	}
	cl := api.NewClient(home)
	defer cl.Close()
	if _, err := cl.AddToken(c.Context, t.String()); err == nil {
		fmt.Fprintf(c.App.Writer, "token installed: %s until %s (daemon updated)\n", t.Role, expiry(t))
		return nil
	} else if !errors.Is(err, api.ErrNoDaemon) {
		return err
	}
	if err := node.WriteToken(home, t); err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "token installed: %s until %s (in %s)\n", t.Role, expiry(t), filepath.Join(home, node.TokenFile))
	return nil
}

func expiry(t auth.Token) string {
	if t.Expires.IsZero() {
		return "revoked"
	}
	return t.Expires.Format(time.RFC3339)
}

func tokenShow(c *cli.Context) error {
	var text string
	switch c.NArg() {
	case 0:
		p := filepath.Join(c.String("home"), node.TokenFile)
		data, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("this peer has no token (%s); an admin issues one with 'shoal token issue'", p)
		}
		if err != nil {
			return err
		}
		text = string(data)
	case 1:
		text = c.Args().First()
	default:
		return fmt.Errorf("token show takes at most one TOKEN (got %d arguments)", c.NArg())
	}
	t, err := auth.ParseToken(text)
	if err != nil {
		return err
	}
	info := api.NewTokenInfo(t)
	if c.Bool("json") {
		return printJSON(c.App.Writer, info)
	}
	w := c.App.Writer
	fmt.Fprintf(w, "id:       %s\n", info.ID)
	fmt.Fprintf(w, "network:  %s\n", info.Network)
	fmt.Fprintf(w, "role:     %s\n", info.Role)
	fmt.Fprintf(w, "peer:     %s\n", info.Peer)
	fmt.Fprintf(w, "issuer:   %s (signature checked; whether it is an admin is each peer's call)\n", info.Issuer)
	fmt.Fprintf(w, "issued:   %s\n", info.Issued.Format(time.RFC3339))
	if t.Expires.IsZero() {
		fmt.Fprintf(w, "expires:  never\n")
	} else {
		fmt.Fprintf(w, "expires:  %s\n", t.Expires.Format(time.RFC3339))
	}
	return nil
}

func tokenRevoke(c *cli.Context) error {
	if c.NArg() != 1 {
		return fmt.Errorf("token revoke takes one TOKEN (got %d arguments)", c.NArg())
	}
	t, err := auth.ParseToken(c.Args().First())
	if err != nil {
		return err
	}
	cl, err := client(c)
	if err != nil {
		return err
	}
	defer cl.Close()
	info, err := cl.Revoke(c.Context, t.String())
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "revoked token %s (%s of %s)\n", info.ID, info.Role, info.Peer)
	return nil
}
