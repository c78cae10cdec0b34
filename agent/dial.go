package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/umbranet/umbra/third_party/quic-go"

	"github.com/umbranet/umbra/internal/grant"
	"github.com/umbranet/umbra/internal/wire"
)

// dialSetupTimeout bounds setting up one circuit: the grant, the host's answer and the
// end-to-end handshake.
const dialSetupTimeout = 30 * time.Second

// copyBuffer is the size of each direction's copy buffer between a local socket and a
// circuit.
const copyBuffer = 64 << 10

// dialState is one local listener that reaches a service.
type dialState struct {
	spec     DialSpec
	circuits int
	lastErr  string
	// intercept marks a listener the agent opened for a service's intercept address,
	// rather than for a --dial: it closes when the service is no longer dialable.
	intercept bool
	closer    io.Closer // the listener
	bindErr   string    // why the intercept listener could not open, "" while it is
}

// Dial listener states, as `umbra-agent status` shows them.
const (
	dialListening  = "listening"
	dialBindFailed = "bind failed"
)

// startDial listens on d.Listen for the agent's lifetime; each local connection becomes
// a circuit. A listener already open on the address is kept.
func (a *Agent) startDial(d DialSpec) error { return a.listenDial(d, false) }

// startIntercept listens on a dialable service's intercept address until the service is
// no longer dialable (stopIntercept) or the agent stops.
func (a *Agent) startIntercept(d DialSpec) error { return a.listenDial(d, true) }

// listenDial opens the listener of d. An intercept that cannot listen stays in the
// status as "bind failed" and is tried again at the next service refresh; a --dial that
// cannot is an error.
func (a *Agent) listenDial(d DialSpec, intercept bool) error {
	a.mu.Lock()
	if old, ok := a.dialing[d.Listen]; ok && old.bindErr == "" {
		a.mu.Unlock()
		return nil
	}
	st := &dialState{spec: d, intercept: intercept}
	a.dialing[d.Listen] = st
	a.mu.Unlock()
	var err error
	switch d.Proto {
	case ProtoTCP:
		var ln net.Listener
		if ln, err = net.Listen("tcp", d.Listen); err == nil {
			a.setCloser(st, ln)
			a.run.Go(func() { a.serveTCPDial(ln, st) })
		}
	case ProtoUDP:
		var pc net.PacketConn
		if pc, err = net.ListenPacket("udp", d.Listen); err == nil {
			a.setCloser(st, pc)
			a.run.Go(func() { a.serveUDPDial(pc, st) })
		}
	}
	if err != nil {
		if intercept {
			a.mu.Lock()
			st.bindErr = err.Error()
			a.mu.Unlock()
		} else {
			a.forgetDial(d.Listen)
		}
		return fmt.Errorf("agent: dial listener %s: %w", d, err)
	}
	a.log.Info("dial listener", "service", d.Service, "host", d.Host, "listen", d.Proto+":"+d.Listen)
	return nil
}

func (a *Agent) setCloser(st *dialState, c io.Closer) {
	a.mu.Lock()
	st.closer = c
	a.mu.Unlock()
}

// stopIntercepts closes the intercept listeners that keep reports should not stay: those
// of services no longer dialable, or whose intercept address moved.
func (a *Agent) stopIntercepts(keep func(DialSpec) bool) {
	a.mu.Lock()
	var gone []*dialState
	for listen, st := range a.dialing {
		if st.intercept && !keep(st.spec) {
			delete(a.dialing, listen)
			gone = append(gone, st)
		}
	}
	a.mu.Unlock()
	for _, st := range gone {
		if st.closer != nil {
			st.closer.Close()
		}
		a.log.Info("intercept closed", "service", st.spec.Service, "listen", st.spec.Proto+":"+st.spec.Listen)
	}
}

func (a *Agent) forgetDial(listen string) {
	a.mu.Lock()
	delete(a.dialing, listen)
	a.mu.Unlock()
}

func (a *Agent) dialResult(st *dialState, err error, delta int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	st.circuits += delta
	if err != nil {
		st.lastErr = err.Error()
	}
}

// serveTCPDial turns each local TCP connection into a circuit.
func (a *Agent) serveTCPDial(ln net.Listener, st *dialState) {
	go func() {
		<-a.runCtx.Done()
		ln.Close()
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		local, err := ln.Accept()
		if err != nil {
			return
		}
		wg.Go(func() {
			defer local.Close()
			if err := a.tcpCircuit(a.runCtx, local.(*net.TCPConn), st); err != nil {
				a.log.Warn("dial", "service", st.spec.Service, "err", err)
			}
		})
	}
}

// tcpCircuit opens a circuit for one local connection, as any program would (Dial), and
// copies bytes both ways.
func (a *Agent) tcpCircuit(ctx context.Context, local *net.TCPConn, st *dialState) error {
	sctx, cancel := context.WithTimeout(ctx, dialSetupTimeout)
	tc, err := a.dial(sctx, st.spec)
	cancel()
	if err != nil {
		a.dialResult(st, err, 0)
		return err
	}
	defer tc.Close()
	a.dialResult(st, nil, 1)
	defer a.dialResult(st, nil, -1)
	return splice(ctx, local, tc)
}

// openCircuit asks the router for a circuit to spec's service and runs the end-to-end
// handshake with the host the grant names. It returns the circuit's datagram id too. A
// TCP circuit is resumable: its TLS session runs over a stream that moves to a new path
// when the old one breaks.
func (a *Agent) openCircuit(ctx context.Context, spec DialSpec) (*tls.Conn, uint64, error) {
	conn, err := a.waitConn(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("dial: %w", err)
	}
	s, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("dial: %w", linkLost(conn, err))
	}
	// The error names no service: an unauthorized dial and a dial of a service that does
	// not exist must read the same.
	fail := func(err error) (*tls.Conn, uint64, error) {
		s.CancelRead(0)
		s.CancelWrite(0)
		return nil, 0, fmt.Errorf("dial: %w", linkLost(conn, err))
	}
	var token []byte
	if spec.Proto == ProtoTCP {
		token = newToken()
	}
	deadline, _ := ctx.Deadline()
	s.SetDeadline(deadline)
	dial := wire.Dial{Service: spec.Service, Host: spec.Host, Proto: spec.Proto, Resume: token}
	if err := wire.Write(s, wire.TypeDial, dial); err != nil {
		return fail(err)
	}
	var ack wire.DialAck
	if err := wire.Expect(s, wire.TypeDialAck, &ack); err != nil {
		return fail(err)
	}
	g, err := grant.Verify(ack.Grant, a.signer, time.Now())
	if err != nil {
		return fail(err)
	}
	if g.Dialer != a.id.ID || g.ServiceName != spec.Service {
		return fail(errors.New("grant names another dialer or service"))
	}
	if token == nil {
		tc := tlsClient(streamConn{Stream: s, conn: conn}, a.dialerTLS(g.Host))
		if err := tc.HandshakeContext(ctx); err != nil {
			return fail(fmt.Errorf("end-to-end handshake: %w", err))
		}
		s.SetDeadline(time.Time{})
		return tc, ack.Circuit, nil
	}
	s.SetDeadline(time.Time{})
	rc := newResumable(conn)
	go a.keepDialed(rc, s, spec, g, token)
	tc := tls.Client(rc, a.dialerTLS(g.Host))
	if err := tc.HandshakeContext(ctx); err != nil {
		rc.Abort(err)
		return nil, 0, fmt.Errorf("dial: end-to-end handshake: %w", err)
	}
	return tc, ack.Circuit, nil
}

// errLinkLost marks a circuit setup cut short by the end of the router link it ran on
// (a stalled link replaced by a fresh connection, say): nothing has flowed yet, so the
// dial may be tried again on the next link.
var errLinkLost = errors.New("router link lost during setup")

// linkLost marks err with errLinkLost when conn has ended.
func linkLost(conn *quic.Conn, err error) error {
	if conn.Context().Err() != nil {
		return fmt.Errorf("%w: %w", errLinkLost, err)
	}
	return err
}

// openRetrying is openCircuit tried again on the next link for as long as ctx lasts
// when the link it ran on ended during the setup.
func (a *Agent) openRetrying(ctx context.Context, spec DialSpec) (*tls.Conn, uint64, error) {
	for {
		tc, cid, err := a.openCircuit(ctx, spec)
		if err == nil || !errors.Is(err, errLinkLost) || ctx.Err() != nil {
			return tc, cid, err
		}
		a.log.Info("dial: the router link ended during setup; again on the next", "service", spec.Service, "err", err)
	}
}

// halfCloser is a connection whose sending side can be closed alone.
type halfCloser interface {
	net.Conn
	CloseWrite() error
}

// splice copies a to b and b to a until both directions end. The end of one direction
// is passed on as a half-close, so request/response protocols work through circuits.
func splice(ctx context.Context, a, b halfCloser) error {
	errc := make(chan error, 2)
	cp := func(dst, src halfCloser) {
		buf := make([]byte, copyBuffer)
		_, err := io.CopyBuffer(dst, src, buf)
		if err == nil {
			err = dst.CloseWrite()
		}
		errc <- err
	}
	go cp(a, b)
	go cp(b, a)
	var first error
	for range 2 {
		select {
		case err := <-errc:
			if err != nil && first == nil {
				first = err
				// A failed direction ends the circuit: unblock the other one.
				a.Close()
				b.Close()
			}
		case <-ctx.Done():
			a.Close()
			b.Close()
			return ctx.Err()
		}
	}
	return first
}
