package router

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/umbranet/umbra/third_party/quic-go"

	"github.com/umbranet/umbra/internal/grant"
	"github.com/umbranet/umbra/internal/wire"
)

// Circuit plumbing.
const (
	// spliceBuffer is the copy buffer of each direction of a TCP circuit.
	spliceBuffer = 64 << 10
	// circuitSetupTimeout bounds the rest of the path's answer to a new circuit.
	circuitSetupTimeout = 15 * time.Second
	// datagramQueue and datagramQueueBytes bound each connection's outgoing datagram
	// queue: a second of several video flows at 8 Mbit/s, so their bursts (keyframes,
	// the first second a flow queued while its circuit was set up, arriving at once)
	// are bounded by age (datagramStale), not by a count sized for telemetry. At 512 two
	// 1.5 Mbit/s video flows starting at once over a 400 ms round trip overran it.
	datagramQueue      = 4096
	datagramQueueBytes = 4 << 20
	// datagramStale is how long a datagram may wait in that queue (a connection that
	// stalled, say): then it is dropped, counted as stale, before the fresh ones behind
	// it, since video or telemetry a second late is not worth a fresh packet's place.
	datagramStale = time.Second
	// maxDatagram bounds a forwarded QUIC datagram's payload.
	maxDatagram = 1500
)

// Stream error codes a router cancels circuit streams with.
const (
	codeCircuitFailed  quic.StreamErrorCode = wire.StreamCircuitFailed
	codeCircuitRevoked quic.StreamErrorCode = wire.StreamCircuitRevoked
	codeCircuitGone    quic.StreamErrorCode = wire.StreamCircuitPeerGone
)

var splicePool = sync.Pool{New: func() any { b := make([]byte, spliceBuffer); return &b }}

// circuitEnd is one side of a circuit at this router: the stream that carries its bytes
// and, for its datagrams, the connection and the circuit's id there.
type circuitEnd struct {
	stream *quic.Stream
	ep     *endpoint
	cid    uint64
}

// dial sets up a circuit for the agent: the controller grants it and picks its path, the
// rest of the path and the hosting agent accept it, and the streams are spliced. The
// circuit stays registered with the controller for its life (holdCircuit), so the
// controller can revoke it.
func (s *session) dial(ctx context.Context, st *quic.Stream, req wire.Dial) {
	req.Identity = s.peer.ID
	cs, _, body, err := s.r.ask(ctx, wire.TypeDial, req)
	if err != nil {
		refuse(st, err)
		return
	}
	defer func() {
		if cs != nil {
			releaseStream(cs)
		}
	}()
	var dg wire.DialGrant
	if err := wire.Unmarshal(body, &dg); err != nil {
		refuse(st, errors.New("malformed grant from controller"))
		return
	}
	g, err := grant.Verify(dg.Grant, s.r.signer, time.Now())
	if err != nil || g.Dialer != s.peer.ID || len(g.Routers) == 0 || g.Routers[0] != s.r.cfg.Identity.ID {
		refuse(st, errors.New("controller's grant does not verify here"))
		return
	}
	down, err := s.r.extend(ctx, g, dg.Grant, 0, req.Resume, req.Moving)
	if err != nil {
		refuse(st, err)
		return
	}
	up := circuitEnd{stream: st, ep: &s.endpoint, cid: s.allocCID()}
	if err := wire.Write(st, wire.TypeDialAck, wire.DialAck{Circuit: up.cid, Grant: dg.Grant}); err != nil {
		cancelStream(down.stream, codeCircuitFailed)
		return
	}
	s.r.log.Debug("circuit up", "circuit", g.Circuit, "service", g.ServiceName, "dialer", s.peer.Name, "path", g.Routers)

	done := make(chan struct{})
	go func() {
		s.r.carry(up, down, g.ServiceName)
		close(done)
	}()
	rev := s.r.holdCircuit(ctx, g, dg.Grant, cs, done)
	cs = nil // holdCircuit closed it
	if rev == nil {
		<-done
		return
	}
	s.r.log.Info("circuit revoked", "circuit", g.Circuit, "reason", rev.Reason)
	cancelStream(up.stream, codeCircuitRevoked)
	cancelStream(down.stream, codeCircuitRevoked)
	<-done
}

// extend carries a granted circuit onward from this router, which is g.Routers[index]:
// to the hosting agent when this router ends the path, otherwise over the link to the
// next router, which does the same. It returns once the rest of the path is up.
func (r *Router) extend(ctx context.Context, g grant.Grant, raw []byte, index int, resume []byte, moving bool) (circuitEnd, error) {
	ctx, cancel := context.WithTimeout(ctx, circuitSetupTimeout)
	defer cancel()
	var (
		ep    *endpoint
		typ   wire.Type
		msg   any
		want  wire.Type
		reply any
	)
	if index == len(g.Routers)-1 {
		r.mu.Lock()
		host := r.terminators[terminatorKey{service: g.ServiceName, identity: g.Host}]
		r.mu.Unlock()
		if host == nil {
			return circuitEnd{}, errors.New("host went offline")
		}
		ep = &host.endpoint
		cid := ep.allocCID()
		typ, msg, want, reply = wire.TypeCircuit, wire.Circuit{Circuit: cid, Grant: raw, Resume: resume, Moving: moving}, wire.TypeCircuitAck, &wire.CircuitAck{}
	} else {
		l := r.linkTo(g.Routers[index+1])
		if l == nil {
			return circuitEnd{}, errors.New("no link to the next router on the path")
		}
		ep = &l.endpoint
		cid := ep.allocCID()
		typ, msg, want, reply = wire.TypeHop, wire.Hop{Grant: raw, Index: uint(index + 1), Circuit: cid, Resume: resume, Moving: moving}, wire.TypeHopAck, &wire.HopAck{}
	}
	st, err := ep.conn.OpenStreamSync(ctx)
	if err != nil {
		return circuitEnd{}, errors.New("next hop unreachable")
	}
	deadline, _ := ctx.Deadline()
	st.SetDeadline(deadline)
	if err := wire.Write(st, typ, msg); err != nil {
		cancelStream(st, codeCircuitFailed)
		return circuitEnd{}, errors.New("next hop unreachable")
	}
	if err := wire.Expect(st, want, reply); err != nil {
		cancelStream(st, codeCircuitFailed)
		return circuitEnd{}, err
	}
	st.SetDeadline(time.Time{})
	var cid uint64
	switch m := msg.(type) {
	case wire.Circuit:
		cid = m.Circuit
	case wire.Hop:
		cid = m.Circuit
	}
	return circuitEnd{stream: st, ep: ep, cid: cid}, nil
}

// carry joins a circuit's two ends at this router, bytes and datagrams, until both
// directions of its bytes end; a is the dialer's side, b the host's.
func (r *Router) carry(a, b circuitEnd, service string) {
	m := r.metrics
	unjoin := join(a.ep, a.cid, b.ep, b.cid,
		m.datagrams.WithLabelValues(service, towardHost), m.datagrams.WithLabelValues(service, towardDialer))
	defer unjoin()
	r.metrics.circuits.WithLabelValues(service).Inc()
	r.metrics.active.Inc()
	defer r.metrics.active.Dec()
	splice(countingStream{a.stream, r.metrics.bytes.WithLabelValues(service, towardHost)},
		countingStream{b.stream, r.metrics.bytes.WithLabelValues(service, towardDialer)})
}

// cancelStream resets both directions of a circuit's hop with code.
func cancelStream(st *quic.Stream, code quic.StreamErrorCode) {
	st.CancelRead(code)
	st.CancelWrite(code)
}

// splice copies a to b and b to a until both directions end; an end of stream is passed
// on as one. A failure in either direction breaks the whole circuit here: both streams
// are reset, so the agents at its ends learn at once and resume it on another path. A
// revocation, or a hop closed for a revoked certificate, is passed on as a revocation,
// and the end of an agent that is gone (restarted, or its process died) as that, so the
// far agent does not wait to resume.
func splice(a, b countingStream) {
	var once sync.Once
	fail := func(err error) {
		once.Do(func() {
			code := codeCircuitFailed
			switch {
			case revokedErr(err):
				code = codeCircuitRevoked
			case goneErr(err):
				code = codeCircuitGone
			}
			cancelStream(a.Stream, code)
			cancelStream(b.Stream, code)
		})
	}
	var wg sync.WaitGroup
	wg.Go(func() { pipe(b, a, fail) })
	wg.Go(func() { pipe(a, b, fail) })
	wg.Wait()
}

// revokedErr reports whether a circuit's hop failed by a revocation: a reset of a
// revoked circuit, or the close of a revoked agent's or router's connection.
func revokedErr(err error) bool {
	var se *quic.StreamError
	if errors.As(err, &se) {
		return se.ErrorCode == codeCircuitRevoked
	}
	var ae *quic.ApplicationError
	return errors.As(err, &ae) && ae.ErrorCode == errCodeRevoked
}

// goneErr reports whether a circuit's hop failed because the agent at its end is gone:
// a reset passed on as such, or the close of that agent's connection.
func goneErr(err error) bool {
	var se *quic.StreamError
	if errors.As(err, &se) {
		return se.ErrorCode == codeCircuitGone
	}
	var ae *quic.ApplicationError
	return errors.As(err, &ae) && ae.ErrorCode == errCodeGone
}

// pipe copies src to dst and closes dst's sending side at the end; on an error it calls fail.
func pipe(dst, src countingStream, fail func(error)) {
	bp := splicePool.Get().(*[]byte)
	defer splicePool.Put(bp)
	if _, err := io.CopyBuffer(dst, src, *bp); err != nil {
		fail(err)
		return
	}
	dst.Close()
}
