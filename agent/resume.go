package agent

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/umbranet/umbra/third_party/quic-go"

	"github.com/umbranet/umbra/internal/grant"
	"github.com/umbranet/umbra/internal/resume"
	"github.com/umbranet/umbra/internal/wire"
)

// TCP circuits survive the loss of their path: a relay that dies, or a router link the
// agent replaces after a radio blackout. Between the two agents each circuit carries a
// resumable byte stream (internal/resume), with the end-to-end TLS session inside it.
// When the path breaks, the dialer asks for the same circuit again, naming it by a
// random token; the controller grants a new path to the same host, whose agent matches
// the token and moves the circuit to the new stream. Both ends replay what the other has
// not acknowledged, so no byte is lost, repeated or reordered.
const (
	// tokenSize is the length of a circuit's resumption token.
	tokenSize = 16
	// resumeTimeout is how long a broken circuit waits for a new path before it fails.
	resumeTimeout = time.Minute
	// redialTimeout bounds one attempt to set the circuit up on a new path.
	redialTimeout = 10 * time.Second
)

// Error codes a router ends a revoked circuit with: a reset of its stream, or the close
// of the connection of a peer whose certificate was revoked (this agent's own, say).
const (
	codeCircuitRevoked quic.StreamErrorCode      = wire.StreamCircuitRevoked
	codeCertRevoked    quic.ApplicationErrorCode = wire.ConnCertRevoked
	codeCircuitGone    quic.StreamErrorCode      = wire.StreamCircuitPeerGone
)

// errRevoked ends a circuit the controller revoked.
var errRevoked = errors.New("circuit revoked")

// errPeerGone ends a circuit whose agent at the far end is gone: it restarted, or its
// process died where its host still answers. It will resume nothing.
var errPeerGone = errors.New("circuit ended: the agent at the far end is gone (restarted or stopped)")

// instanceSize is the length of an agent process's instance id.
const instanceSize = 16

// newInstance draws the id this agent process gives routers in its Hello.
func newInstance() []byte {
	b := make([]byte, instanceSize)
	rand.Read(b)
	return b
}

// isPeerGone reports whether err is a router's reset of a circuit whose far agent is
// gone.
func isPeerGone(err error) bool {
	var se *quic.StreamError
	return errors.As(err, &se) && se.ErrorCode == codeCircuitGone
}

// newToken returns a fresh resumption token.
func newToken() []byte {
	t := make([]byte, tokenSize)
	rand.Read(t)
	return t
}

// isRevoked reports whether err is a router's reset of a revoked circuit, or its close
// of this agent's connection for a revoked certificate: waiting for a new path would
// not change either.
func isRevoked(err error) bool {
	var se *quic.StreamError
	if errors.As(err, &se) {
		return se.ErrorCode == codeCircuitRevoked
	}
	var ae *quic.ApplicationError
	return errors.As(err, &ae) && ae.Remote && ae.ErrorCode == codeCertRevoked
}

// newResumable makes the resumable stream of a circuit on conn.
func newResumable(conn *quic.Conn) *resume.Conn {
	// A closed circuit keeps trying to deliver its last bytes for as long as a broken one
	// waits for a new path: on a radio, the path may break just as the circuit ends.
	return resume.New(resume.Config{DetachTimeout: resumeTimeout, CloseLinger: resumeTimeout, LocalAddr: conn.LocalAddr(), RemoteAddr: conn.RemoteAddr()})
}

// keepDialed runs a dialed circuit's resumable stream over s and, each time its path
// breaks, over a new path to the same host, until the circuit ends.
func (a *Agent) keepDialed(rc *resume.Conn, s *quic.Stream, spec DialSpec, g grant.Grant, token []byte) {
	ctx := a.runCtx
	for {
		err := rc.Serve(ctx, s)
		if err == nil {
			cancelHop(s) // Serve closed our side; the peer's side is done with too
			return
		}
		cancelHop(s)
		if ctx.Err() != nil {
			rc.Abort(ctx.Err())
			return
		}
		if isRevoked(err) {
			rc.Abort(errRevoked)
			return
		}
		if isPeerGone(err) {
			a.log.Info("circuit ended: its host is gone", "service", spec.Service)
			rc.Abort(errPeerGone)
			return
		}
		a.log.Info("circuit path broken; resuming", "service", spec.Service, "err", err)
		began := time.Now()
		s, err = a.redial(ctx, spec, g, token)
		if err != nil {
			a.log.Warn("circuit not resumed", "service", spec.Service, "err", err)
			rc.Abort(fmt.Errorf("circuit not resumed: %w", err))
			return
		}
		a.log.Info("circuit resumed", "service", spec.Service, "after", time.Since(began).Round(time.Millisecond))
	}
}

// redial asks for the circuit again on whatever link is up, with backoff, until it gets a
// new path or resumeTimeout passes. A refusal of the dial itself (the policy no longer
// allows it, or the host forgot the circuit) ends it at once.
func (a *Agent) redial(ctx context.Context, spec DialSpec, g grant.Grant, token []byte) (*quic.Stream, error) {
	ctx, stop := context.WithTimeout(ctx, resumeTimeout)
	defer stop()
	b := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(50*time.Millisecond),
		backoff.WithMaxInterval(time.Second),
		backoff.WithMaxElapsedTime(0),
	)
	for {
		s, err := a.redialOnce(ctx, spec, g, token)
		if err == nil {
			return s, nil
		}
		if errors.Is(err, errPermanent) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("no new path within %v: %w", resumeTimeout, err)
		case <-time.After(b.NextBackOff()):
		}
	}
}

// errPermanent marks a refusal that waiting will not change.
var errPermanent = errors.New("refused")

func (a *Agent) redialOnce(ctx context.Context, spec DialSpec, g grant.Grant, token []byte) (*quic.Stream, error) {
	ctx, stop := context.WithTimeout(ctx, redialTimeout)
	defer stop()
	conn, err := a.waitConn(ctx)
	if err != nil {
		return nil, err
	}
	s, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	deadline, _ := ctx.Deadline()
	s.SetDeadline(deadline)
	if err := wire.Write(s, wire.TypeDial, wire.Dial{Service: spec.Service, Host: g.Host, Proto: spec.Proto, Resume: token, Moving: true}); err != nil {
		cancelHop(s)
		return nil, err
	}
	var ack wire.DialAck
	if err := wire.Expect(s, wire.TypeDialAck, &ack); err != nil {
		cancelHop(s)
		if isPermanentRefusal(err) {
			return nil, fmt.Errorf("%w: %v", errPermanent, err)
		}
		return nil, err
	}
	ng, err := grant.Verify(ack.Grant, a.signer, time.Now())
	if err != nil || ng.Dialer != g.Dialer || ng.Host != g.Host || ng.Service != g.Service {
		cancelHop(s)
		return nil, fmt.Errorf("%w: the new grant is for another circuit", errPermanent)
	}
	s.SetDeadline(time.Time{})
	return s, nil
}

// cancelHop drops a circuit's hop, both directions: its path broke, a new one replaced
// it, or the circuit ended.
func cancelHop(s *quic.Stream) {
	s.CancelRead(0)
	s.CancelWrite(0)
}

// isPermanentRefusal tells a refusal of the circuit itself (not authorized, the host
// holds no such circuit) from a path not ready yet, by the refusal's code on the wire.
func isPermanentRefusal(err error) bool {
	code, ok := wire.RefusalCode(err)
	return ok && code.Permanent()
}

// errUnknownCircuit is the message of the host's answer to a resumption token it does
// not hold (wire.CodeUnknownCircuit).
const errUnknownCircuit = "unknown circuit"

// hostedCircuit is a resumable circuit this agent hosts, found by its token when the
// dialer moves it to a new path.
type hostedCircuit struct {
	dialer, service string
	rc              *resume.Conn

	mu   sync.Mutex
	cur  *quic.Stream      // the hop the circuit runs on now
	next chan *quic.Stream // a new path's hop, waiting to take over
}

// attach moves the circuit to s: the stream in use, if any, is dropped (its path may be
// silently dead), and the circuit's loop picks s up.
func (h *hostedCircuit) attach(s *quic.Stream) {
	h.mu.Lock()
	cur := h.cur
	h.mu.Unlock()
	for {
		select {
		case h.next <- s:
			if cur != nil {
				cancelHop(cur)
			}
			return
		default:
		}
		select { // replace a stream that was waiting and never used
		case old := <-h.next:
			cancelHop(old)
		default:
		}
	}
}

// keepHosted runs a hosted circuit's resumable stream over s and over each new path the
// dialer moves it to, until it ends or no new path comes within resumeTimeout; then it
// forgets the circuit's token.
func (a *Agent) keepHosted(key string, h *hostedCircuit, s *quic.Stream) {
	ctx := a.runCtx
	defer a.forgetResumable(key, h)
	for {
		h.mu.Lock()
		h.cur = s
		h.mu.Unlock()
		err := h.rc.Serve(ctx, s)
		if err == nil {
			cancelHop(s)
			return
		}
		cancelHop(s)
		if isRevoked(err) {
			h.rc.Abort(errRevoked)
			return
		}
		if isPeerGone(err) {
			a.log.Info("hosted circuit ended: its dialer is gone", "service", h.service)
			h.rc.Abort(errPeerGone)
			return
		}
		select {
		case s = <-h.next:
			a.log.Info("hosted circuit moved to a new path", "service", h.service)
		case <-ctx.Done():
			h.rc.Abort(ctx.Err())
			return
		case <-h.rc.Done():
			return
		case <-time.After(resumeTimeout):
			h.rc.Abort(fmt.Errorf("circuit: no new path within %v", resumeTimeout))
			return
		}
	}
}
