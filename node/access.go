package node

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/fxamacker/cbor/v2"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/shoalnet/shoal/node/auth"
	"github.com/shoalnet/shoal/node/internal/strictcbor"
)

// AuthProtocol is the exchange of tokens (and revocations) between the two
// ends of a new connection in a closed network.
const AuthProtocol = "/shoal/auth/1.0.0"

// TokenFile is the file in the home that holds this peer's token.
const TokenFile = "token"

// ErrRefused: a peer of a closed network refused this one (no token, an
// invalid one, or one it does not accept).
var ErrRefused = errors.New("node: refused by peer")

// ErrNotPublisher: this peer's role does not allow it to publish.
var ErrNotPublisher = errors.New("node: not a publisher in this network")

const (
	// authTimeout is how long a new connection has to complete the token
	// exchange before it is closed.
	authTimeout = 10 * time.Second
	// refuseFor is how long the gater refuses a peer after it failed the
	// exchange; it may come back with a valid token after that.
	refuseFor = time.Minute
	// maxAuthMsg caps one message of the exchange.
	maxAuthMsg = 1 << 20
	// maxAuthRevocations caps the revocations sent in one exchange (the
	// newest are sent; gossip carries the rest).
	maxAuthRevocations = 1024
	// sweepInterval is how often tokens of connected peers are checked
	// again for expiry.
	sweepInterval = 30 * time.Second
)

// authMsg is one message of the exchange: the sender's token, the
// revocations it knows, and (in an answer) why the asker was refused.
type authMsg struct {
	Token []byte   `cbor:"tok,omitempty"`
	Revs  [][]byte `cbor:"revs,omitempty"`
	Err   string   `cbor:"err,omitempty"`
}

var authDecMode = strictcbor.Dec(4, maxAuthRevocations)

// decodeAuthMsg parses one message of the exchange.
func decodeAuthMsg(data []byte) (authMsg, error) {
	var m authMsg
	if len(data) > maxAuthMsg {
		return m, fmt.Errorf("auth message of %d bytes exceeds %d", len(data), maxAuthMsg)
	}
	if err := authDecMode.Unmarshal(data, &m); err != nil {
		return m, fmt.Errorf("auth message: %w", err)
	}
	if len(m.Token) > auth.MaxTokenSize || len(m.Err) > 1024 {
		return m, errors.New("auth message: field too long")
	}
	for _, r := range m.Revs {
		if len(r) > auth.MaxRevocationSize {
			return m, errors.New("auth message: revocation too long")
		}
	}
	return m, nil
}

func readAuthMsg(r *bufio.Reader) (authMsg, error) {
	l, err := binary.ReadUvarint(r)
	if err != nil {
		return authMsg{}, err
	}
	if l > maxAuthMsg {
		return authMsg{}, fmt.Errorf("auth message of %d bytes exceeds %d", l, maxAuthMsg)
	}
	buf := make([]byte, l)
	if _, err := io.ReadFull(r, buf); err != nil {
		return authMsg{}, err
	}
	return decodeAuthMsg(buf)
}

func writeAuthMsg(w io.Writer, m authMsg) error {
	data, err := cbor.Marshal(m)
	if err != nil {
		return err
	}
	var lb [binary.MaxVarintLen64]byte
	buf := append(lb[:binary.PutUvarint(lb[:], uint64(len(data)))], data...)
	_, err = w.Write(buf)
	return err
}

// gater refuses, at dial and at the handshake, peers that recently failed
// the token exchange or whose token was revoked.
type gater struct {
	mu      sync.Mutex
	refused map[peer.ID]time.Time // until
}

func newGater() *gater { return &gater{refused: make(map[peer.ID]time.Time)} }

func (g *gater) refuse(p peer.ID, d time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	until := time.Now().Add(d)
	if until.After(g.refused[p]) {
		g.refused[p] = until
	}
}

func (g *gater) isRefused(p peer.ID) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	until, ok := g.refused[p]
	if !ok {
		return false
	}
	if time.Now().After(until) {
		delete(g.refused, p)
		return false
	}
	return true
}

func (g *gater) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.refused)
}

func (g *gater) InterceptPeerDial(p peer.ID) bool                                { return !g.isRefused(p) }
func (g *gater) InterceptAddrDial(peer.ID, ma.Multiaddr) bool                    { return true }
func (g *gater) InterceptAccept(network.ConnMultiaddrs) bool                     { return true }
func (g *gater) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) { return true, 0 }
func (g *gater) InterceptSecured(_ network.Direction, p peer.ID, _ network.ConnMultiaddrs) bool {
	return !g.isRefused(p)
}

// peerAuth is the outcome, once done is closed, of a peer's exchange.
type peerAuth struct {
	done    chan struct{}
	once    sync.Once
	err     error
	role    auth.Role
	token   auth.TokenID
	expires time.Time
}

func (pa *peerAuth) finish(role auth.Role, t auth.Token, err error) bool {
	first := false
	pa.once.Do(func() {
		first = true
		pa.role, pa.err = role, err
		if !t.IsZero() {
			pa.token, pa.expires = t.ID(), t.Expires
		}
		close(pa.done)
	})
	return first
}

// access enforces a closed network: it exchanges tokens on every new
// connection, refuses peers without a valid one, spreads revocations, and
// answers who may do what. In an open network it admits everyone.
type access struct {
	n     *Node
	v     *auth.Verifier
	gater *gater

	mu    sync.Mutex
	token auth.Token
	peers map[peer.ID]*peerAuth
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
func (a *access) refusedSince(t time.Time) []error {
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
func (a *access) closed() bool { return a.v.Closed() }

// selfRole is this node's own role, or an error saying why it has none.
func (a *access) selfRole() (auth.Role, error) {
	a.mu.Lock()
	t := a.token
	a.mu.Unlock()
	return a.v.Check(t, a.n.h.ID(), time.Now())
}

// tokenBytes returns this node's token (nil if none).
func (a *access) tokenBytes() []byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.token.Bytes()
}

// start hooks the exchange into the host and joins the revocation topic.
// Only a closed network does anything.
func (a *access) start() error {
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
			p := c.RemotePeer()
			if nw.Connectedness(p) != network.Connected {
				a.mu.Lock()
				delete(a.peers, p)
				a.mu.Unlock()
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
func (a *access) stop() {
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
// does not come in time. It returns the peer's record.
func (a *access) track(p peer.ID, outbound bool) *peerAuth {
	a.mu.Lock()
	pa := a.peers[p]
	if pa != nil {
		a.mu.Unlock()
		return pa
	}
	pa = &peerAuth{done: make(chan struct{})}
	a.peers[p] = pa
	a.mu.Unlock()
	n := a.n
	if n.ctx.Err() != nil {
		pa.finish("", auth.Token{}, errors.New("node closing"))
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
		case <-pa.done:
		case <-t.C:
			a.reject(p, pa, auth.Token{}, fmt.Errorf("no token presented within %v", authTimeout))
		case <-n.ctx.Done():
			pa.finish("", auth.Token{}, errors.New("node closing"))
		}
	}()
	return pa
}

// message is what this node presents: its token and the newest
// revocations it knows.
func (a *access) message() authMsg {
	m := authMsg{Token: a.tokenBytes()}
	a.mu.Lock()
	if a.rawToken != nil {
		m.Token = a.rawToken
	}
	a.mu.Unlock()
	revs := a.v.Revocations()
	if len(revs) > maxAuthRevocations {
		revs = revs[len(revs)-maxAuthRevocations:]
	}
	for _, r := range revs {
		m.Revs = append(m.Revs, r.Bytes())
	}
	return m
}

// ask runs the exchange as the dialling side.
func (a *access) ask(p peer.ID, pa *peerAuth) {
	n := a.n
	ctx, cancel := context.WithTimeout(n.ctx, authTimeout)
	defer cancel()
	s, err := n.h.NewStream(network.WithAllowLimitedConn(ctx, "auth"), p, AuthProtocol)
	if err != nil {
		a.reject(p, pa, auth.Token{}, fmt.Errorf("token exchange: %w", err))
		return
	}
	defer s.Close()
	s.SetDeadline(time.Now().Add(authTimeout))
	if err := writeAuthMsg(s, a.message()); err != nil {
		s.Reset()
		a.reject(p, pa, auth.Token{}, fmt.Errorf("token exchange: %w", err))
		return
	}
	ans, err := readAuthMsg(bufio.NewReader(s))
	if err != nil {
		s.Reset()
		a.reject(p, pa, auth.Token{}, fmt.Errorf("token exchange: %w", err))
		return
	}
	a.applyRevocations(ans.Revs)
	if ans.Err != "" {
		err := fmt.Errorf("%w: %s", ErrRefused, ans.Err)
		a.mu.Lock()
		if a.refusals == nil || len(a.refusals) > 1024 {
			a.refusals = make(map[peer.ID]refusal)
		}
		a.refusals[p] = refusal{err: err, at: time.Now()}
		a.mu.Unlock()
		if pa.finish("", auth.Token{}, err) {
			n.log.Warn("refused by peer", "peer", p, "reason", ans.Err)
		}
		n.h.Network().ClosePeer(p)
		return
	}
	t, role, err := a.v.CheckBytes(ans.Token, p, time.Now())
	if err != nil {
		a.reject(p, pa, t, err)
		return
	}
	if pa.finish(role, t, nil) {
		n.log.Debug("peer admitted", "peer", p, "role", role)
	}
}

// handle answers the exchange as the dialled side.
func (a *access) handle(s network.Stream) {
	p := s.Conn().RemotePeer()
	pa := a.track(p, false)
	s.SetDeadline(time.Now().Add(authTimeout))
	r := bufio.NewReader(s)
	m, err := readAuthMsg(r)
	if err != nil {
		s.Reset()
		a.reject(p, pa, auth.Token{}, fmt.Errorf("token exchange: %w", err))
		return
	}
	a.applyRevocations(m.Revs)
	t, role, cerr := a.v.CheckBytes(m.Token, p, time.Now())
	ans := a.message()
	if cerr != nil {
		ans = authMsg{Err: cerr.Error()}
	}
	if err := writeAuthMsg(s, ans); err != nil {
		s.Reset()
		if cerr == nil {
			cerr = err
		}
	}
	if cerr != nil {
		// Let the answer reach the peer before the connection goes.
		s.CloseWrite()
		io.Copy(io.Discard, io.LimitReader(r, 1))
		s.Close()
		a.reject(p, pa, t, cerr)
		return
	}
	s.Close()
	if pa.finish(role, t, nil) {
		a.n.log.Debug("peer admitted", "peer", p, "role", role)
	}
}

// reject records that p failed the exchange, refuses it for a while and
// closes its connections.
func (a *access) reject(p peer.ID, pa *peerAuth, t auth.Token, err error) {
	if a.n.ctx.Err() != nil {
		pa.finish("", t, err)
		return
	}
	if pa.finish("", t, err) {
		a.n.log.Info("peer refused", "peer", p, "err", err)
	}
	a.gater.refuse(p, refuseFor)
	a.n.h.Network().ClosePeer(p)
}

// waitPeer waits for p's exchange and returns its role. In an open
// network every peer is a publisher. A refusal by p since since is
// returned as such even if p has already closed the connection.
func (a *access) waitPeer(ctx context.Context, p peer.ID, since time.Time) (auth.Role, error) {
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
	pa := a.track(p, false)
	select {
	case <-pa.done:
		return pa.role, pa.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// admittedNow reports whether p completed the exchange (for gossipsub's
// peer filter, which must not block).
func (a *access) admittedNow(p peer.ID) bool {
	if !a.closed() {
		return true
	}
	a.mu.Lock()
	pa := a.peers[p]
	a.mu.Unlock()
	if pa == nil {
		return false
	}
	select {
	case <-pa.done:
		return pa.err == nil
	default:
		return false
	}
}

// applyRevocations keeps the valid revocations among revs and cuts off
// the peers whose tokens they revoke.
func (a *access) applyRevocations(revs [][]byte) {
	for _, data := range revs {
		r, isNew, err := a.v.AddRevocation(data)
		if err != nil || !isNew {
			continue
		}
		a.n.log.Info("token revoked", "token", r.Token, "peer", r.Peer, "by", r.Issuer)
		a.enforce()
	}
}

// enforce cuts off connected peers whose tokens expired or were revoked.
func (a *access) enforce() {
	now := time.Now()
	var out []peer.ID
	a.mu.Lock()
	for p, pa := range a.peers {
		select {
		case <-pa.done:
		default:
			continue
		}
		if pa.err != nil || pa.role == auth.RoleAdmin && a.v.IsAdmin(p) {
			continue
		}
		if a.v.Revoked(pa.token) || (!pa.expires.IsZero() && !now.Before(pa.expires)) {
			out = append(out, p)
		}
	}
	a.mu.Unlock()
	for _, p := range out {
		a.n.log.Info("peer cut off: token revoked or expired", "peer", p)
		a.gater.refuse(p, refuseFor)
		a.n.h.Network().ClosePeer(p)
	}
	if _, err := a.selfRole(); errors.Is(err, auth.ErrRevoked) || errors.Is(err, auth.ErrExpired) {
		a.n.log.Warn("this peer's own token is no longer valid; other peers will refuse it", "err", err)
	}
}

func (a *access) receiveRevocations() {
	for {
		msg, err := a.sub.Next(a.n.ctx)
		if err != nil {
			return
		}
		a.applyRevocations([][]byte{msg.Data})
	}
}

func (a *access) sweepLoop() {
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
