// Package router is umbra's data plane: one UDP port where agents (ALPN umbra-edge/1) and
// other routers (umbra-link/1) connect over QUIC with mutual TLS. It refuses every peer
// without a certificate from the controller's CA at the handshake, relays its agents'
// control requests to the controller, and carries circuits the controller granted: TCP
// as spliced QUIC streams, UDP as QUIC datagrams. It sees only end-to-end ciphertext.
package router

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"github.com/umbranet/umbra/third_party/quic-go"

	"github.com/umbranet/umbra/internal/identity"
	"github.com/umbranet/umbra/internal/pki"
	"github.com/umbranet/umbra/internal/transport"
	"github.com/umbranet/umbra/internal/wire"
)

// Config is what a router needs to run.
type Config struct {
	// Identity is the router's enrolled identity file.
	Identity *identity.File
	// DataDir is where the router keeps what must outlive a restart: the revocation
	// list (RevokedFile). Empty keeps it in memory only, until the controller repeats it.
	DataDir string
	// Listen is the UDP HOST:PORT that agents and routers connect to; port 0 picks one.
	Listen string
	// Advertise is the HOST:PORT given to others; empty means the bound Listen address.
	Advertise string
	// LinkTo lists HOST:PORT of routers to keep links to.
	LinkTo []string
	// Profile is the QUIC profile of the listener and of links; zero means transport.LAN.
	Profile transport.Profile
	// Logger receives the router's logs; nil discards them.
	Logger *slog.Logger
}

// QUIC application error codes the router closes connections with.
const (
	errCodeShutdown quic.ApplicationErrorCode = 0x100
	errCodeRefused  quic.ApplicationErrorCode = 0x101
	errCodeRevoked  quic.ApplicationErrorCode = wire.ConnCertRevoked
	errCodeReplaced quic.ApplicationErrorCode = wire.ConnReplaced
	errCodeGone     quic.ApplicationErrorCode = wire.ConnAgentGone
)

// Router is a listening router.
type Router struct {
	cfg       Config
	log       *slog.Logger
	metrics   *routerMetrics
	cert      tls.Certificate
	roots     *x509.CertPool
	signer    *ecdsa.PublicKey
	transport *quic.Transport
	// quicConf is the profile's QUIC configuration for connections on transport's
	// socket (transport.Profile.Socket); quic hands out copies.
	quicConf *quic.Config
	listener *quic.Listener
	closeKey func() error
	icmp     *transport.UnreachableConn // the listener's socket, nil where ICMP errors are not read

	saveMu sync.Mutex // serializes writes of the revocation list

	mu             sync.Mutex
	ctrls          map[string]*quic.Conn // the control links that are up, by controller URL
	ctrlUp         chan struct{}         // closed and replaced whenever a control link comes up
	membersChanged chan struct{}         // the controller list changed
	changed        chan struct{}         // a controller said records changed
	revoked        map[string]bool       // certificate serials to refuse
	controllers    []string              // the controller cluster's management URLs, never empty
	sessions       map[*quic.Conn]*session
	terminators    map[terminatorKey]*session
	links          map[*link]struct{}
	linkEvents     chan struct{} // a link came up or went down
}

// terminatorKey names a binding: a service hosted by an identity.
type terminatorKey struct{ service, identity string }

// Listen opens the router's UDP port and returns the router, not yet accepting.
func Listen(ctx context.Context, cfg Config) (*Router, error) {
	if cfg.Identity == nil {
		return nil, errors.New("router: no identity")
	}
	if cfg.Profile == (transport.Profile{}) {
		cfg.Profile = transport.LAN
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	// The revocations are in place before the listener can complete a handshake.
	revoked, err := loadRevoked(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	controllers, err := loadControllers(cfg.DataDir, cfg.Identity)
	if err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	cred, err := cfg.Identity.Open(ctx)
	if err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	key := cred.Key
	r := &Router{
		cfg: cfg, log: cfg.Logger, cert: cred.Cert, roots: cred.Roots, signer: cred.Signer, closeKey: key.Close,
		ctrls: map[string]*quic.Conn{}, ctrlUp: make(chan struct{}), membersChanged: make(chan struct{}, 1), changed: make(chan struct{}, 1), revoked: revoked, controllers: controllers,
		sessions: map[*quic.Conn]*session{}, terminators: map[terminatorKey]*session{},
		links: map[*link]struct{}{}, linkEvents: make(chan struct{}, 1),
	}
	r.metrics = newRouterMetrics(r)
	tlsConf := transport.ServerTLS(cred.Cert, cred.Roots, []string{transport.ALPNEdge, transport.ALPNLink}, r.checkPeer)
	pc, err := net.ListenPacket("udp", cfg.Listen)
	if err != nil {
		key.Close()
		return nil, fmt.Errorf("router: listen %s: %w", cfg.Listen, err)
	}
	// One UDP socket serves agents and routers and carries the router's own dials. It
	// reads the ICMP port unreachable an agent's host answers once the agent's process
	// is gone (watchUnreachable).
	var conn net.PacketConn = pc
	if uc, ok := pc.(*net.UDPConn); ok {
		if ic, err := transport.WatchUnreachable(uc); err != nil {
			r.log.Warn("ICMP errors not read: a dead agent is noticed at its connection's idle timeout", "err", err)
		} else {
			r.icmp, conn = ic, ic
		}
	}
	sock, conf := cfg.Profile.Socket(conn)
	r.quicConf = conf
	r.transport = &quic.Transport{Conn: sock, IgnoreICMPErrors: r.icmp != nil}
	ln, err := r.transport.Listen(tlsConf, r.quicConfig())
	if err != nil {
		pc.Close()
		key.Close()
		return nil, fmt.Errorf("router: listen %s: %w", cfg.Listen, err)
	}
	r.listener = ln
	if r.cfg.Advertise == "" {
		r.cfg.Advertise = ln.Addr().String()
	}
	return r, nil
}

// quicConfig returns a copy of the QUIC configuration of the router's listener and links.
func (r *Router) quicConfig() *quic.Config {
	c := *r.quicConf
	return &c
}

// Addr is the bound UDP address.
func (r *Router) Addr() net.Addr { return r.listener.Addr() }

// Advertise is the address others are told to use.
func (r *Router) Advertise() string { return r.cfg.Advertise }

// checkPeer lets agents in on the edge ALPN and routers on the link ALPN, nobody else,
// and nobody whose certificate the controller revoked.
func (r *Router) checkPeer(alpn string, peer pki.Subject, leaf *x509.Certificate) error {
	r.mu.Lock()
	revoked := r.revoked[pki.SerialString(leaf)]
	r.mu.Unlock()
	switch {
	case revoked:
		return fmt.Errorf("router: certificate of %s %q is revoked", peer.Kind, peer.Name)
	case alpn == transport.ALPNEdge && peer.Kind == pki.KindIdentity:
		return nil
	case alpn == transport.ALPNLink && peer.Kind == pki.KindRouter:
		return nil
	}
	return fmt.Errorf("router: %s %q may not use %s", peer.Kind, peer.Name, alpn)
}

// Serve accepts connections until ctx ends, then closes the router.
func (r *Router) Serve(ctx context.Context) error {
	defer r.closeKey()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		<-ctx.Done()
		r.listener.Close()
		r.transport.Close()
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { r.runControlLinks(ctx) })
	wg.Go(func() { r.coalesceChanged(ctx) })
	wg.Go(func() { r.reportLinks(ctx) })
	if r.icmp != nil {
		wg.Go(func() { r.icmp.Unreachable(ctx, icmpPoll, r.peerUnreachable) })
	}
	for _, addr := range r.cfg.LinkTo {
		wg.Go(func() { r.runLinkTo(ctx, addr) })
	}
	r.log.Info("router listening", "addr", r.listener.Addr().String(), "name", r.cfg.Identity.Name)
	for {
		conn, err := r.listener.Accept(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("router: accept: %w", err)
		}
		wg.Go(func() { r.handle(ctx, conn) })
	}
}

// handle serves a peer's connection until it or the router ends.
func (r *Router) handle(ctx context.Context, conn *quic.Conn) {
	cs := conn.ConnectionState().TLS
	leaf := cs.PeerCertificates[0]
	subj, err := pki.SubjectOf(leaf)
	if err != nil {
		conn.CloseWithError(errCodeRefused, "no subject")
		return
	}
	if cs.NegotiatedProtocol == transport.ALPNLink {
		r.serveLink(ctx, conn, subj, false)
		return
	}
	sess := newSession(r, conn, subj, leaf)
	r.mu.Lock()
	r.sessions[conn] = sess
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.sessions, conn)
		r.mu.Unlock()
	}()
	r.log.Info("agent connected", "identity", subj.Name, "remote", conn.RemoteAddr().String())
	sess.serve(ctx)
	r.log.Info("agent disconnected", "identity", subj.Name)
}

// revoke records serials as revoked, on disk too, and closes the connections that
// present them.
func (r *Router) revoke(serials []string) {
	r.mu.Lock()
	var drop []*session
	added := false
	for _, s := range serials {
		added = added || !r.revoked[s]
		r.revoked[s] = true
	}
	for _, sess := range r.sessions {
		if r.revoked[sess.serial] {
			drop = append(drop, sess)
		}
	}
	var cut []*link
	for l := range r.links {
		if r.revoked[l.serial] {
			cut = append(cut, l)
		}
	}
	r.mu.Unlock()
	if added {
		if err := r.saveRevoked(); err != nil {
			r.log.Error("revocations not saved: a restart forgets them until the controller repeats them", "err", err)
		}
	}
	for _, l := range cut {
		r.log.Info("closing link to revoked router", "router", l.peer.Name)
		l.conn.CloseWithError(errCodeRevoked, "certificate revoked")
	}
	for _, sess := range drop {
		r.log.Info("closing revoked identity", "identity", sess.peer.Name)
		sess.conn.CloseWithError(errCodeRevoked, "certificate revoked")
	}
}
