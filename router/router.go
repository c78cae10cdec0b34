// Package router is umbra's data plane: one UDP port where agents (ALPN umbra-edge/1) and
// other routers (umbra-link/1) connect over QUIC with mutual TLS. It refuses every peer
// without a certificate from the controller's CA at the handshake, and serves nobody the
// controller has not authorized.
package router

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"umbra/internal/identity"
	"umbra/internal/pki"
	"umbra/internal/transport"
	"umbra/internal/wire"
)

// Config is what a router needs to run.
type Config struct {
	// Identity is the router's enrolled identity file.
	Identity *identity.File
	// Listen is the UDP HOST:PORT that agents and routers connect to; port 0 picks one.
	Listen string
	// Advertise is the HOST:PORT given to others; empty means the bound Listen address.
	Advertise string
	// Profile is the QUIC profile of the listener; zero means transport.LAN.
	Profile transport.Profile
	// Logger receives the router's logs; nil discards them.
	Logger *slog.Logger
}

// Router is a listening router.
type Router struct {
	cfg       Config
	log       *slog.Logger
	cert      tls.Certificate
	transport *quic.Transport
	listener  *quic.Listener
	closeKey  func() error

	mu    sync.Mutex
	conns map[*quic.Conn]pki.Subject
}

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
	cert, key, err := cfg.Identity.Certificate(ctx)
	if err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	roots, err := cfg.Identity.Roots()
	if err != nil {
		key.Close()
		return nil, fmt.Errorf("router: %w", err)
	}
	r := &Router{cfg: cfg, log: cfg.Logger, cert: cert, closeKey: key.Close, conns: map[*quic.Conn]pki.Subject{}}
	tlsConf := transport.ServerTLS(cert, roots, []string{transport.ALPNEdge, transport.ALPNLink}, r.checkPeer)
	pc, err := net.ListenPacket("udp", cfg.Listen)
	if err != nil {
		key.Close()
		return nil, fmt.Errorf("router: listen %s: %w", cfg.Listen, err)
	}
	// One UDP socket serves agents and routers and carries the router's own dials.
	r.transport = &quic.Transport{Conn: pc}
	ln, err := r.transport.Listen(tlsConf, cfg.Profile.QUIC())
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

// Addr is the bound UDP address.
func (r *Router) Addr() net.Addr { return r.listener.Addr() }

// Advertise is the address others are told to use.
func (r *Router) Advertise() string { return r.cfg.Advertise }

// checkPeer lets agents in on the edge ALPN and routers on the link ALPN, nobody else.
func (r *Router) checkPeer(alpn string, peer pki.Subject, _ *x509.Certificate) error {
	switch {
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
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.runControlLink(ctx)
	}()
	r.log.Info("router listening", "addr", r.listener.Addr().String(), "name", r.cfg.Identity.Name)
	for {
		conn, err := r.listener.Accept(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("router: accept: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.handle(ctx, conn)
		}()
	}
}

// handle keeps a peer's connection until it or the router ends.
func (r *Router) handle(ctx context.Context, conn *quic.Conn) {
	cs := conn.ConnectionState().TLS
	subj, err := pki.SubjectOf(cs.PeerCertificates[0])
	if err != nil {
		conn.CloseWithError(errCodeRefused, "no subject")
		return
	}
	r.mu.Lock()
	r.conns[conn] = subj
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.conns, conn)
		r.mu.Unlock()
	}()
	r.log.Info("peer connected", "kind", subj.Kind, "name", subj.Name, "alpn", cs.NegotiatedProtocol, "remote", conn.RemoteAddr().String())
	go r.acceptStreams(conn)
	select {
	case <-ctx.Done():
		conn.CloseWithError(errCodeShutdown, "router shutting down")
	case <-conn.Context().Done():
	}
}

// acceptStreams answers the control streams a peer opens.
func (r *Router) acceptStreams(conn *quic.Conn) {
	for {
		s, err := conn.AcceptStream(conn.Context())
		if err != nil {
			return
		}
		go r.serveControl(s)
	}
}

// serveControl answers a peer's Hello with the router's name.
func (r *Router) serveControl(s *quic.Stream) {
	defer s.Close()
	s.SetReadDeadline(time.Now().Add(helloTimeout))
	var hello wire.Hello
	if err := wire.Expect(s, wire.TypeHello, &hello); err != nil {
		wire.Write(s, wire.TypeError, wire.Error{Message: "expected hello: " + err.Error()})
		return
	}
	s.SetReadDeadline(time.Time{})
	wire.Write(s, wire.TypeHelloAck, wire.HelloAck{Version: wire.Version, Name: r.cfg.Identity.Name})
}

// helloTimeout bounds the wait for a peer's first control message.
const helloTimeout = 10 * time.Second

// QUIC application error codes the router closes connections with.
const (
	errCodeShutdown quic.ApplicationErrorCode = 0x100
	errCodeRefused  quic.ApplicationErrorCode = 0x101
)
