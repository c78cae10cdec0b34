package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/umbranet/umbra/third_party/quic-go"

	"github.com/umbranet/umbra/internal/grant"
	"github.com/umbranet/umbra/internal/wire"
)

// Hosting states, as `umbra-agent status` shows them.
const (
	hostBound   = "bound"
	hostBinding = "binding"
)

// hostDialTimeout bounds connecting to the local service a circuit is delivered to.
const hostDialTimeout = 5 * time.Second

// hostState is the binding of one service this agent hosts; the service's listener
// (a.listeners) says where its circuits go.
type hostState struct {
	service  string
	state    string
	circuits int
	err      string
	conn     *quic.Conn // the link the binding is held on
	stop     context.CancelFunc
	target   string // "reachable" or "unreachable: ERROR", "" until known
}

// Hosted target states, as `umbra-agent status` shows them.
const (
	targetReachable   = "reachable"
	targetUnreachable = "unreachable"
)

// targetCheckTimeout bounds the check of a TCP service's local address when its binding
// comes up.
const targetCheckTimeout = 2 * time.Second

// checkTarget connects to a bound TCP service's local address once, so that status says
// at once whether circuits will find it; UDP has no connection to try.
// A program's listener has no address to check.
func (a *Agent) checkTarget(ctx context.Context, service string) {
	a.mu.Lock()
	l := a.listeners[service]
	var addr string
	if l != nil && l.proto == ProtoTCP {
		addr = l.addr
	}
	a.mu.Unlock()
	if addr == "" {
		return
	}
	d := net.Dialer{Timeout: targetCheckTimeout}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err == nil {
		c.Close()
	}
	a.noteTarget(service, err)
}

// noteTarget records whether service's host address took a connection.
func (a *Agent) noteTarget(service string, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	h := a.hosting[service]
	if h == nil {
		return
	}
	if err != nil {
		h.target = targetUnreachable + ": " + err.Error()
		return
	}
	h.target = targetReachable
}

// startHosting binds service at the router on conn, unless it is bound there already.
// The binding is held by a stream for as long as the link lasts, or until stopHosting.
func (a *Agent) startHosting(ctx context.Context, wg *sync.WaitGroup, conn *quic.Conn, service string) {
	a.mu.Lock()
	h, ok := a.hosting[service]
	if ok && h.conn == conn {
		a.mu.Unlock()
		return
	}
	hctx, stop := context.WithCancel(ctx)
	h = &hostState{service: service, state: hostBinding, conn: conn, stop: stop}
	a.hosting[service] = h
	a.mu.Unlock()
	wg.Go(func() {
		defer stop()
		a.holdBinding(hctx, conn, h)
	})
}

// stopHosting ends the binding of a service this agent may no longer host; circuits
// already delivered run on until they end or the controller ends them.
func (a *Agent) stopHosting(service string) {
	a.mu.Lock()
	h := a.hosting[service]
	delete(a.hosting, service)
	a.mu.Unlock()
	if h != nil {
		h.stop()
		a.log.Info("hosting stopped", "service", service)
	}
}

// holdBinding binds h's service and keeps the binding, rebinding with backoff when the
// router drops it while the link stays up.
func (a *Agent) holdBinding(ctx context.Context, conn *quic.Conn, h *hostState) {
	b := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(linkBackoffInitial),
		backoff.WithMaxInterval(serviceRefresh),
		backoff.WithMaxElapsedTime(0),
	)
	for ctx.Err() == nil {
		err := a.bindOnce(ctx, conn, h)
		a.mu.Lock()
		h.state = hostBinding
		if err != nil {
			h.err = err.Error()
		}
		a.wakeHostingLocked()
		a.mu.Unlock()
		if err != nil {
			a.log.Warn("binding ended", "service", h.service, "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(b.NextBackOff()):
		}
	}
	a.mu.Lock()
	if a.hosting[h.service] == h {
		delete(a.hosting, h.service)
	}
	a.mu.Unlock()
}

// bindOnce sends Bind and holds the stream until the router ends it.
func (a *Agent) bindOnce(ctx context.Context, conn *quic.Conn, h *hostState) error {
	s, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	s.SetDeadline(time.Now().Add(requestTimeout))
	if err := wire.Write(s, wire.TypeBind, wire.Bind{Service: h.service}); err != nil {
		return err
	}
	var ack wire.BindAck
	if err := wire.Expect(s, wire.TypeBindAck, &ack); err != nil {
		return err
	}
	s.SetDeadline(time.Time{})
	a.mu.Lock()
	h.state, h.err = hostBound, ""
	a.wakeHostingLocked()
	a.mu.Unlock()
	a.log.Info("hosting", "service", h.service)
	go a.checkTarget(ctx, h.service)
	stop := context.AfterFunc(ctx, func() { s.CancelRead(0) })
	defer stop()
	// The router says nothing more unless it revokes the binding.
	typ, body, err := wire.Read(s)
	if err != nil {
		return err
	}
	if typ == wire.TypeError {
		var e wire.Error
		wire.Unmarshal(body, &e)
		return errors.New(e.Message)
	}
	return fmt.Errorf("unexpected message %d on binding", typ)
}

// acceptCircuits takes the circuits the router hands this agent until the link ends.
func (a *Agent) acceptCircuits(ctx context.Context, conn *quic.Conn) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		s, err := conn.AcceptStream(ctx)
		if err != nil {
			return
		}
		wg.Go(func() {
			if err := a.hostCircuit(ctx, conn, s); err != nil {
				a.log.Warn("circuit", "err", err)
			}
		})
	}
}

// hostCircuit checks a circuit's grant, runs the end-to-end handshake with the dialer it
// names and delivers the circuit to the local service.
func (a *Agent) hostCircuit(ctx context.Context, conn *quic.Conn, s *quic.Stream) error {
	s.SetDeadline(time.Now().Add(dialSetupTimeout))
	refuse := func(code wire.ErrorCode, msg string) error {
		wire.Write(s, wire.TypeError, wire.Error{Message: msg, Code: code})
		s.Close()
		s.CancelRead(0)
		return errors.New(msg)
	}
	typ, body, err := wire.Read(s)
	if typ == wire.TypeChanged && err == nil {
		// Not a circuit: the router passing on that records changed.
		s.Close()
		a.servicesChanged()
		return nil
	}
	var c wire.Circuit
	if err == nil && typ != wire.TypeCircuit {
		err = fmt.Errorf("%w: got type %d, want a circuit", wire.ErrUnexpected, typ)
	}
	if err == nil {
		err = wire.Unmarshal(body, &c)
	}
	if err != nil {
		s.CancelRead(0)
		s.CancelWrite(0)
		return err
	}
	g, err := grant.Verify(c.Grant, a.signer, time.Now())
	if err != nil {
		return refuse(wire.CodeNotAuthorized, err.Error())
	}
	a.mu.Lock()
	h := a.hosting[g.ServiceName]
	l := a.listeners[g.ServiceName]
	a.mu.Unlock()
	if g.Host != a.id.ID || h == nil || l == nil || l.proto != g.Proto {
		return refuse(wire.CodeNotAuthorized, "this agent does not host "+g.ServiceName)
	}
	if len(c.Resume) > 0 {
		return a.hostResumable(conn, s, c, g, h, l, refuse)
	}
	if err := wire.Write(s, wire.TypeCircuitAck, wire.CircuitAck{}); err != nil {
		return err
	}
	tc := tlsServer(streamConn{Stream: s, conn: conn}, a.hostTLS(g.Dialer))
	if err := handshakeHost(ctx, tc, g.ServiceName); err != nil {
		tc.Close()
		return err
	}
	s.SetDeadline(time.Time{})
	switch g.Proto {
	case ProtoTCP:
		a.deliverConn(ctx, tc, h, l)
		return nil
	case ProtoUDP:
		defer tc.Close()
		a.hostResult(h, 1)
		defer a.hostResult(h, -1)
		return a.hostPacket(ctx, conn, c.Circuit, tc, l)
	}
	tc.Close()
	return fmt.Errorf("unknown protocol %q", g.Proto)
}

// deliverConn hands a handshaken TCP circuit to its service's listener; it counts as
// one of h's circuits until closed.
func (a *Agent) deliverConn(ctx context.Context, tc *tls.Conn, h *hostState, l *serviceListener) {
	a.hostResult(h, 1)
	c := newConn(tc, l.service, a.id.Name, func() { a.hostResult(h, -1) })
	if !l.deliver(ctx, c) {
		c.Close()
		a.log.Warn("circuit not accepted", "service", l.service, "dialer", c.Identity())
	}
}

func (a *Agent) hostResult(h *hostState, delta int) {
	a.mu.Lock()
	h.circuits += delta
	a.mu.Unlock()
}

// hostResumable takes a resumable circuit: a new one is registered under its token and
// delivered to the local service for the agent's lifetime, not the link's; a known token
// moves its circuit to this stream.
func (a *Agent) hostResumable(conn *quic.Conn, s *quic.Stream, c wire.Circuit, g grant.Grant, h *hostState, l *serviceListener, refuse func(wire.ErrorCode, string) error) error {
	key := string(c.Resume)
	a.mu.Lock()
	hc := a.resumable[key]
	a.mu.Unlock()
	if c.Moving {
		if hc == nil || hc.dialer != g.Dialer || hc.service != g.ServiceName {
			return refuse(wire.CodeUnknownCircuit, errUnknownCircuit)
		}
		if err := wire.Write(s, wire.TypeCircuitAck, wire.CircuitAck{}); err != nil {
			cancelHop(s)
			return err
		}
		s.SetDeadline(time.Time{})
		hc.attach(s)
		return nil
	}
	if hc != nil || len(c.Resume) != tokenSize || g.Proto != ProtoTCP {
		return refuse(wire.CodeUnknownCircuit, errUnknownCircuit)
	}
	hc = &hostedCircuit{dialer: g.Dialer, service: g.ServiceName, rc: newResumable(conn), next: make(chan *quic.Stream, 1)}
	a.mu.Lock()
	if a.resumable[key] != nil { // the same token twice at once: refuse the second
		a.mu.Unlock()
		cancelHop(s)
		return refuse(wire.CodeUnknownCircuit, errUnknownCircuit)
	}
	a.resumable[key] = hc
	a.mu.Unlock()
	if err := wire.Write(s, wire.TypeCircuitAck, wire.CircuitAck{}); err != nil {
		cancelHop(s)
		hc.rc.Abort(err)
		a.forgetResumable(key, hc)
		return err
	}
	s.SetDeadline(time.Time{})
	a.run.Go(func() { a.keepHosted(key, hc, s) })
	a.run.Go(func() {
		ctx := a.runCtx
		tc := tls.Server(hc.rc, a.hostTLS(g.Dialer))
		if err := handshakeHost(ctx, tc, g.ServiceName); err != nil {
			tc.Close()
			hc.rc.Abort(err)
			a.log.Warn("circuit", "err", err)
			return
		}
		a.deliverConn(ctx, tc, h, l)
	})
	return nil
}

// handshakeHost runs the hosting end of a circuit's end-to-end handshake.
func handshakeHost(ctx context.Context, tc *tls.Conn, service string) error {
	ctx, cancel := context.WithTimeout(ctx, dialSetupTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("end-to-end handshake for %s: %w", service, err)
	}
	return nil
}

// deliverTCP carries a TCP circuit to the hosted service's local address until either
// side ends it; reached says whether the address took the connection.
func deliverTCP(ctx context.Context, tc halfCloser, service, addr string, reached func(error)) error {
	d := net.Dialer{Timeout: hostDialTimeout}
	local, err := d.DialContext(ctx, "tcp", addr)
	reached(err)
	if err != nil {
		return fmt.Errorf("deliver %s to %s: %w", service, addr, err)
	}
	defer local.Close()
	return splice(ctx, local.(*net.TCPConn), tc)
}

func (a *Agent) forgetResumable(key string, hc *hostedCircuit) {
	a.mu.Lock()
	if a.resumable[key] == hc {
		delete(a.resumable, key)
	}
	a.mu.Unlock()
}
