package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/shoalnet/shoal/node/access"
	"github.com/shoalnet/shoal/node/auth"
)

// AuthProtocol is the exchange of tokens (and revocations) between the two
// ends of a new connection in a closed network.
const AuthProtocol = access.Protocol

// TokenFile is the file in the home that holds this peer's token.
const TokenFile = "token"

// ErrRefused: a peer of a closed network refused this one (no token, an
// invalid one, or one it does not accept).
var ErrRefused = access.ErrRefused

// ErrNotPublisher: this peer's role does not allow it to publish.
var ErrNotPublisher = errors.New("node: not a publisher in this network")

const (
	// authTimeout is how long a new connection has to complete the token
	// exchange before it is closed.
	authTimeout = 10 * time.Second
	// refuseFor is how long the gater refuses a peer after it failed the
	// exchange; it may come back with a valid token after that.
	refuseFor = time.Minute
	// sweepInterval is how often tokens of connected peers are checked
	// again for expiry.
	sweepInterval = 30 * time.Second
)

// keeper enforces a closed network: it exchanges tokens on every new
// connection, refuses peers without a valid one, spreads revocations, and
// answers who may do what. In an open network it admits everyone. The
// exchange itself, the table of admissions and the gater are in package
// access; keeper runs them on the host.
type keeper struct {
	n     *Node
	v     *auth.Verifier
	gater *access.Gater
	peers *access.Table

	mu    sync.Mutex
	token auth.Token
	// rawToken, if set, is presented instead of token (tests: forged or
	// malformed tokens).
	rawToken []byte
	// refusals are the latest refusals of this node by others.
	refusals map[peer.ID]refusal

	notify *network.NotifyBundle
	topic  *pubsub.Topic
	sub    *pubsub.Subscription
}

type refusal struct {
	err error
	at  time.Time
}

// refusedSince returns the refusals of this node by other peers since t.
func (a *keeper) refusedSince(t time.Time) []error {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []error
	for p, r := range a.refusals {
		if !r.at.Before(t) {
			out = append(out, fmt.Errorf("%s: %w", p, r.err))
		}
	}
	return out
}

// RevocationTopic returns the topic on which a network's revocations travel.
func RevocationTopic(network string) string { return "shoal/" + network + "/auth" }

// loadToken reads <home>/token; a missing file is no token.
func loadToken(home string) (auth.Token, error) {
	data, err := os.ReadFile(filepath.Join(home, TokenFile))
	if errors.Is(err, os.ErrNotExist) {
		return auth.Token{}, nil
	}
	if err != nil {
		return auth.Token{}, fmt.Errorf("node: read token: %w", err)
	}
	t, err := auth.ParseToken(string(data))
	if err != nil {
		return auth.Token{}, fmt.Errorf("node: %s: %w", filepath.Join(home, TokenFile), err)
	}
	return t, nil
}

// closed reports whether the network requires tokens.
func (a *keeper) closed() bool { return a.v.Closed() }

// selfRole is this node's own role, or an error saying why it has none.
func (a *keeper) selfRole() (auth.Role, error) {
	a.mu.Lock()
	t := a.token
	a.mu.Unlock()
	return a.v.Check(t, a.n.h.ID(), time.Now())
}

// tokenBytes returns this node's token (nil if none).
func (a *keeper) tokenBytes() []byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.token.Bytes()
}

// side is this node's end of the exchange.
func (a *keeper) side() access.Side {
	return access.Side{Verifier: a.v, Present: func() access.Msg {
		m := access.Message(a.tokenBytes(), a.v)
		a.mu.Lock()
		if a.rawToken != nil {
			m.Token = a.rawToken
		}
		a.mu.Unlock()
		return m
	}}
}

// start hooks the exchange into the host and joins the revocation topic.
// Only a closed network does anything.
func (a *keeper) start() error {
	if !a.closed() {
		return nil
	}
	n := a.n
	if _, err := a.selfRole(); err != nil {
		n.log.Warn("this peer has no valid token for the closed network; other peers will refuse it",
			"network", n.cfg.Network, "peer", n.h.ID(), "err", err,
			"fix", "ask an admin to run: shoal token issue --role reader --peer "+n.h.ID().String()+", then: shoal token add TOKEN")
	}
	n.h.SetStreamHandler(AuthProtocol, a.handle)
	name := RevocationTopic(n.cfg.Network)
	if err := n.ps.RegisterTopicValidator(name, func(_ context.Context, _ peer.ID, msg *pubsub.Message) bool {
		_, err := a.v.VerifyRevocation(msg.Data)
		return err == nil
	}); err != nil {
		return err
	}
	t, err := n.ps.Join(name)
	if err != nil {
		return err
	}
	sub, err := t.Subscribe()
	if err != nil {
		t.Close()
		return err
	}
	a.topic, a.sub = t, sub
	a.notify = &network.NotifyBundle{
		ConnectedF: func(_ network.Network, c network.Conn) {
			a.track(c.RemotePeer(), c.Stat().Direction == network.DirOutbound)
		},
		DisconnectedF: func(nw network.Network, c network.Conn) {
			if p := c.RemotePeer(); nw.Connectedness(p) != network.Connected {
				a.peers.Forget(p)
			}
		},
	}
	n.h.Network().Notify(a.notify)
	for _, c := range n.h.Network().Conns() {
		a.track(c.RemotePeer(), c.Stat().Direction == network.DirOutbound)
	}
	n.wg.Add(2)
	go func() {
		defer n.wg.Done()
		a.receiveRevocations()
	}()
	go func() {
		defer n.wg.Done()
		a.sweepLoop()
	}()
	return nil
}

// stop undoes start.
func (a *keeper) stop() {
	if a.notify == nil {
		return
	}
	a.n.h.Network().StopNotify(a.notify)
	a.n.h.RemoveStreamHandler(AuthProtocol)
	a.sub.Cancel()
	a.topic.Close()
	a.n.ps.UnregisterTopicValidator(RevocationTopic(a.n.cfg.Network))
}

// track starts the exchange with a newly connected peer: the dialling side
// asks, the other waits for the question and closes the connection if it
// does not come in time. It returns the peer's admission.
func (a *keeper) track(p peer.ID, outbound bool) *access.Admission {
	pa, isNew := a.peers.Track(p)
	if !isNew {
		return pa
	}
	n := a.n
	if n.ctx.Err() != nil {
		pa.Finish("", auth.Token{}, errors.New("node closing"))
		return pa
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if outbound {
			a.ask(p, pa)
			return
		}
		t := time.NewTimer(authTimeout)
		defer t.Stop()
		select {
		case <-pa.Done():
		case <-t.C:
			a.reject(p, pa, auth.Token{}, fmt.Errorf("no token presented within %v", authTimeout))
		case <-n.ctx.Done():
			pa.Finish("", auth.Token{}, errors.New("node closing"))
		}
	}()
	return pa
}

// ask runs the exchange as the dialling side.
func (a *keeper) ask(p peer.ID, pa *access.Admission) {
	n := a.n
	ctx, cancel := context.WithTimeout(n.ctx, authTimeout)
	defer cancel()
	s, err := n.h.NewStream(network.WithAllowLimitedConn(ctx, "auth"), p, AuthProtocol)
	if err != nil {
		a.reject(p, pa, auth.Token{}, fmt.Errorf("token exchange: %w", err))
		return
	}
	s.SetDeadline(time.Now().Add(authTimeout))
	out, err := a.side().Ask(s, p, time.Now())
	a.revoked(out.Revoked)
	switch {
	case errors.Is(err, access.ErrRefused):
		s.Close()
		a.mu.Lock()
		if a.refusals == nil || len(a.refusals) > 1024 {
			a.refusals = make(map[peer.ID]refusal)
		}
		a.refusals[p] = refusal{err: err, at: time.Now()}
		a.mu.Unlock()
		if pa.Finish("", auth.Token{}, err) {
			n.log.Warn("refused by peer", "peer", p, "err", err)
		}
		n.h.Network().ClosePeer(p)
	case err != nil:
		s.Reset()
		a.reject(p, pa, out.Token, err)
	default:
		s.Close()
		if pa.Finish(out.Role, out.Token, nil) {
			n.log.Debug("peer admitted", "peer", p, "role", out.Role)
		}
	}
}

// handle answers the exchange as the dialled side.
func (a *keeper) handle(s network.Stream) {
	p := s.Conn().RemotePeer()
	pa := a.track(p, false)
	s.SetDeadline(time.Now().Add(authTimeout))
	out, err := a.side().Answer(s, p, time.Now())
	a.revoked(out.Revoked)
	if err != nil {
		s.Reset() // a refusal has reached the asker by now
		a.reject(p, pa, out.Token, err)
		return
	}
	s.Close()
	if pa.Finish(out.Role, out.Token, nil) {
		a.n.log.Debug("peer admitted", "peer", p, "role", out.Role)
	}
}

// reject records that p failed the exchange, refuses it for a while and
// closes its connections.
func (a *keeper) reject(p peer.ID, pa *access.Admission, t auth.Token, err error) {
	if a.n.ctx.Err() != nil {
		pa.Finish("", t, err)
		return
	}
	if pa.Finish("", t, err) {
		a.n.log.Info("peer refused", "peer", p, "err", err)
	}
	a.gater.Refuse(p, refuseFor)
	a.n.h.Network().ClosePeer(p)
}

// waitPeer waits for p's exchange and returns its role. In an open
// network every peer is a publisher. A refusal by p since since is
// returned as such even if p has already closed the connection.
func (a *keeper) waitPeer(ctx context.Context, p peer.ID, since time.Time) (auth.Role, error) {
	if !a.closed() {
		return auth.RolePublisher, nil
	}
	if a.n.h.Network().Connectedness(p) != network.Connected {
		// A peer that refused this node closes the connection at once;
		// say why rather than that it is gone.
		a.mu.Lock()
		r, refused := a.refusals[p]
		a.mu.Unlock()
		if refused && !r.at.Before(since) {
			return "", r.err
		}
		return "", fmt.Errorf("%s is not connected", p)
	}
	return a.track(p, false).Wait(ctx)
}

// admittedNow reports whether p completed the exchange (for gossipsub's
// peer filter, which must not block).
func (a *keeper) admittedNow(p peer.ID) bool {
	return !a.closed() || a.peers.Admitted(p)
}

// applyRevocations keeps the valid revocations among revs and cuts off
// the peers whose tokens they revoke.
func (a *keeper) applyRevocations(revs [][]byte) {
	var added []auth.Revocation
	for _, data := range revs {
		if r, isNew, err := a.v.AddRevocation(data); err == nil && isNew {
			added = append(added, r)
		}
	}
	a.revoked(added)
}

// revoked logs revocations new here and cuts off the peers they name.
func (a *keeper) revoked(revs []auth.Revocation) {
	for _, r := range revs {
		a.n.log.Info("token revoked", "token", r.Token, "peer", r.Peer, "by", r.Issuer)
	}
	if len(revs) > 0 {
		a.enforce()
	}
}

// enforce cuts off connected peers whose tokens expired or were revoked.
func (a *keeper) enforce() {
	for _, p := range a.peers.Lapsed(a.v, time.Now()) {
		a.n.log.Info("peer cut off: token revoked or expired", "peer", p)
		a.gater.Refuse(p, refuseFor)
		a.n.h.Network().ClosePeer(p)
	}
	if _, err := a.selfRole(); errors.Is(err, auth.ErrRevoked) || errors.Is(err, auth.ErrExpired) {
		a.n.log.Warn("this peer's own token is no longer valid; other peers will refuse it", "err", err)
	}
}

func (a *keeper) receiveRevocations() {
	for {
		msg, err := a.sub.Next(a.n.ctx)
		if err != nil {
			return
		}
		a.applyRevocations([][]byte{msg.Data})
	}
}

func (a *keeper) sweepLoop() {
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-a.n.ctx.Done():
			return
		case <-t.C:
			a.enforce()
		}
	}
}
