package controller

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/umbranet/umbra/third_party/quic-go"

	"github.com/umbranet/umbra/controller/events"
	"github.com/umbranet/umbra/controller/store"
	"github.com/umbranet/umbra/internal/heartbeat"
	"github.com/umbranet/umbra/internal/pki"
	"github.com/umbranet/umbra/internal/transport"
	"github.com/umbranet/umbra/internal/wire"
)

// routerDeadAfter is how long the controller waits on a silent router's control link
// before it takes the router offline. It cannot know the router's link profile, and a
// relay on a mast reaches it over a radio, where a second of silence is a lost ping
// behind a full modem queue (the bench's relay lost its control link every few seconds
// at 200 ms and 5 % loss, and every dial through it was refused). The router, which
// pings, drops a dead link in its own profile's interval and dials again.
const routerDeadAfter = 5 * time.Second

// Bounds of the control plane.
const (
	// ctrlHelloTimeout bounds the wait for a router's Hello on a new control link.
	ctrlHelloTimeout = 10 * time.Second
	// listenPairAttempts bounds the search for a port free on both TCP and UDP.
	listenPairAttempts = 20
)

// QUIC application error codes of the control plane.
const (
	ctrlCodeShutdown quic.ApplicationErrorCode = 0x200
	ctrlCodeRefused  quic.ApplicationErrorCode = 0x201
	// ctrlCodeDead closes the control link of a router whose heartbeats stopped.
	ctrlCodeDead quic.ApplicationErrorCode = 0x202
)

// ListenPair opens the management API's TCP port and the control plane's UDP port on
// the same address; with port 0 it finds a port free for both.
func ListenPair(addr string) (net.Listener, net.PacketConn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("controller: listen %q: %w", addr, err)
	}
	for range listenPairAttempts {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("controller: listen: %w", err)
		}
		_, bound, _ := net.SplitHostPort(ln.Addr().String())
		pc, err := net.ListenPacket("udp", net.JoinHostPort(host, bound))
		if err == nil {
			return ln, pc, nil
		}
		ln.Close()
		if port != "0" {
			return nil, nil, fmt.Errorf("controller: listen udp: %w", err)
		}
	}
	return nil, nil, errors.New("controller: no port free on both TCP and UDP")
}

// serveControl accepts routers' control links on pc until ctx ends.
func (c *Controller) serveControl(ctx context.Context, pc net.PacketConn) error {
	chain, key := c.ca.ServerChain()
	cert := tls.Certificate{Certificate: chain[:2], PrivateKey: key, Leaf: c.ca.Server}
	tlsConf := transport.ServerTLS(cert, c.ca.Roots(), []string{transport.ALPNCtrl}, c.checkRouter)
	resetKey, err := controlResetKey(key)
	if err != nil {
		return fmt.Errorf("controller: control plane: %w", err)
	}
	// A restarted controller answers a router's packets on the link it had before the
	// restart with a stateless reset, so the router redials at once.
	tr := &quic.Transport{Conn: pc, StatelessResetKey: resetKey}
	ln, err := tr.Listen(tlsConf, transport.LAN.QUIC())
	if err != nil {
		return fmt.Errorf("controller: control plane: %w", err)
	}
	go func() {
		<-ctx.Done()
		ln.Close()
		tr.Close()
	}()
	c.log.Info("control plane listening", "addr", pc.LocalAddr().String())
	for {
		conn, err := ln.Accept(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("controller: control plane: %w", err)
		}
		go c.serveRouter(ctx, conn)
	}
}

// controlResetKey derives the control plane's stateless reset key from the controller's
// long-term server key, so that it is the same after a restart.
func controlResetKey(key *ecdsa.PrivateKey) (*quic.StatelessResetKey, error) {
	secret, err := key.Bytes()
	if err != nil {
		return nil, fmt.Errorf("stateless reset key: %w", err)
	}
	return transport.StatelessResetKey(secret)
}

// checkRouter admits routers the store knows, with their current, unrevoked certificate.
func (c *Controller) checkRouter(alpn string, peer pki.Subject, leaf *x509.Certificate) error {
	if alpn != transport.ALPNCtrl || peer.Kind != pki.KindRouter {
		return fmt.Errorf("controller: %s %q may not open a control link", peer.Kind, peer.Name)
	}
	var r store.Router
	if err := c.store.GetByID(store.Routers, peer.ID, &r); err != nil {
		return fmt.Errorf("controller: router %q unknown or deleted", peer.Name)
	}
	serial := pki.SerialString(leaf)
	if revoked, _ := c.store.Revoked(serial); revoked || r.Cert == nil || r.Cert.Serial != serial {
		return fmt.Errorf("controller: router %q: certificate revoked or replaced", peer.Name)
	}
	return nil
}

// serveRouter marks a router online from its Hello until its control link ends, and
// answers the requests it relays for its agents.
func (c *Controller) serveRouter(ctx context.Context, conn *quic.Conn) {
	subj, err := pki.SubjectOf(conn.ConnectionState().TLS.PeerCertificates[0])
	if err != nil {
		conn.CloseWithError(ctrlCodeRefused, "no subject")
		return
	}
	s, err := conn.AcceptStream(ctx)
	if err != nil {
		return
	}
	s.SetReadDeadline(time.Now().Add(ctrlHelloTimeout))
	var hello wire.Hello
	if err := wire.Expect(s, wire.TypeHello, &hello); err != nil {
		conn.CloseWithError(ctrlCodeRefused, "expected hello")
		return
	}
	s.SetReadDeadline(time.Time{})
	revs, err := c.store.Revocations()
	if err != nil {
		conn.CloseWithError(ctrlCodeRefused, "store unavailable")
		return
	}
	ack := wire.HelloAck{Version: wire.Version, Name: "controller", Controllers: c.ControllerURLs()}
	for _, r := range revs {
		ack.Revoked = append(ack.Revoked, r.Serial)
	}
	if err := wire.Write(s, wire.TypeHelloAck, ack); err != nil {
		return
	}
	s.Close()
	c.setOnline(subj.ID, hello, conn)
	c.log.Info("router online", "name", subj.Name, "advertise", hello.Advertise)
	c.event(events.Event{Type: events.RouterOnline, Name: subj.Name})
	hb := heartbeat.NewDeadAfter(routerDeadAfter)
	go func() {
		for {
			rs, err := conn.AcceptStream(ctx)
			if err != nil {
				return
			}
			go c.serveRouterStream(ctx, subj, rs, hb)
		}
	}()
	c.watchRouter(ctx, conn, hb)
	c.setOffline(subj.ID, conn)
	c.log.Info("router offline", "name", subj.Name)
	c.event(events.Event{Type: events.RouterOffline, Name: subj.Name})
}

// watchRouter returns when the router's control link ends: closed by the router, by
// this controller's shutdown, or for the router's silence once it has sent heartbeats,
// so a crashed router goes offline (and out of new paths) within routerDeadAfter.
func (c *Controller) watchRouter(ctx context.Context, conn *quic.Conn, hb *heartbeat.Monitor) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(conn.Context(), cancel)()
	err := hb.Watch(wctx, true)
	switch {
	case err != nil:
		conn.CloseWithError(ctrlCodeDead, err.Error())
	case ctx.Err() != nil:
		conn.CloseWithError(ctrlCodeShutdown, "controller shutting down")
	}
}

// routerState is what the controller knows of a router's control link.
type routerState struct {
	since     time.Time
	advertise string
	software  string
	conn      *quic.Conn
}

func (c *Controller) setOnline(id string, hello wire.Hello, conn *quic.Conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.online[id]; ok {
		old.conn.CloseWithError(ctrlCodeShutdown, "replaced by a newer control link")
	}
	c.online[id] = routerState{since: c.cfg.Now(), advertise: hello.Advertise, software: hello.Software, conn: conn}
}

// setOffline forgets the router's control link, unless a newer one replaced it.
func (c *Controller) setOffline(id string, conn *quic.Conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := c.online[id]; ok && st.conn == conn {
		delete(c.online, id)
		delete(c.links, id)
	}
}

// RouterOnline reports whether the router with id has a control link up.
func (c *Controller) RouterOnline(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.online[id]
	return ok
}
