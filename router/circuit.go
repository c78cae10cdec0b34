package router

import (
	"context"
	"io"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"umbra/internal/datagram"
	"umbra/internal/grant"
	"umbra/internal/wire"
)

// Circuit plumbing.
const (
	// spliceBuffer is the copy buffer of each direction of a TCP circuit.
	spliceBuffer = 64 << 10
	// circuitSetupTimeout bounds the hosting agent's answer to a new circuit.
	circuitSetupTimeout = 15 * time.Second
	// datagramQueue is the depth of each session's outgoing datagram queue.
	datagramQueue = 512
	// maxDatagram bounds a forwarded QUIC datagram's payload.
	maxDatagram = 1500
)

// Stream error codes a router cancels circuit streams with.
const (
	codeCircuitFailed  quic.StreamErrorCode = 1
	codeCircuitRevoked quic.StreamErrorCode = 2
)

var splicePool = sync.Pool{New: func() any { b := make([]byte, spliceBuffer); return &b }}

// dial sets up a circuit for the agent: the controller grants it, the hosting agent's
// session accepts it, and the two streams are spliced. The control stream that carried
// the grant stays open for the circuit's life, so the controller can revoke it.
func (s *session) dial(ctx context.Context, st *quic.Stream, req wire.Dial) {
	req.Identity = s.peer.ID
	cs, _, body, err := s.r.ask(ctx, wire.TypeDial, req)
	if err != nil {
		refuse(st, err.Error())
		return
	}
	defer func() {
		cs.Close()
		cs.CancelRead(0)
	}()
	var dg wire.DialGrant
	if err := wire.Unmarshal(body, &dg); err != nil {
		refuse(st, "malformed grant from controller")
		return
	}
	g, err := grant.Verify(dg.Grant, s.r.signer, time.Now())
	if err != nil || g.Dialer != s.peer.ID || len(g.Routers) == 0 || g.Routers[0] != s.r.cfg.Identity.ID {
		refuse(st, "controller's grant does not verify here")
		return
	}
	s.r.mu.Lock()
	host := s.r.terminators[terminatorKey{service: g.ServiceName, identity: g.Host}]
	s.r.mu.Unlock()
	if host == nil {
		refuse(st, "host went offline")
		return
	}
	hostCID := host.allocCID()
	hs, err := host.conn.OpenStreamSync(ctx)
	if err != nil {
		refuse(st, "host unreachable")
		return
	}
	hs.SetDeadline(time.Now().Add(circuitSetupTimeout))
	if err := wire.Write(hs, wire.TypeCircuit, wire.Circuit{Circuit: hostCID, Grant: dg.Grant}); err != nil {
		hs.CancelRead(0)
		refuse(st, "host unreachable")
		return
	}
	var ack wire.CircuitAck
	if err := wire.Expect(hs, wire.TypeCircuitAck, &ack); err != nil {
		hs.CancelRead(0)
		refuse(st, "host refused the circuit: "+err.Error())
		return
	}
	hs.SetDeadline(time.Time{})
	cid := s.allocCID()
	s.setRoute(cid, route{to: host, cid: hostCID})
	host.setRoute(hostCID, route{to: s, cid: cid})
	defer func() {
		s.dropRoute(cid)
		host.dropRoute(hostCID)
	}()
	if err := wire.Write(st, wire.TypeDialAck, wire.DialAck{Circuit: cid, Grant: dg.Grant}); err != nil {
		hs.CancelRead(codeCircuitFailed)
		hs.CancelWrite(codeCircuitFailed)
		return
	}
	s.r.log.Debug("circuit up", "circuit", g.Circuit, "service", g.ServiceName, "dialer", s.peer.Name)

	done := make(chan struct{})
	go func() {
		splice(st, hs)
		close(done)
	}()
	revoked := watchRevoke(cs)
	select {
	case <-done:
	case rev := <-revoked:
		if rev == nil { // control link dropped: the circuit lives on by its grant
			<-done
			break
		}
		s.r.log.Info("circuit revoked", "circuit", g.Circuit, "reason", rev.Reason)
		for _, x := range []*quic.Stream{st, hs} {
			x.CancelRead(codeCircuitRevoked)
			x.CancelWrite(codeCircuitRevoked)
		}
		<-done
	}
}

// splice copies a to b and b to a until both directions end; an end of stream is passed
// on as one, an error as a reset.
func splice(a, b *quic.Stream) {
	var wg sync.WaitGroup
	wg.Go(func() { pipe(b, a) })
	wg.Go(func() { pipe(a, b) })
	wg.Wait()
}

// pipe copies src to dst and closes dst's sending side at the end.
func pipe(dst, src *quic.Stream) {
	bp := splicePool.Get().(*[]byte)
	defer splicePool.Put(bp)
	_, err := io.CopyBuffer(dst, src, *bp)
	if err != nil {
		src.CancelRead(codeCircuitFailed)
		dst.CancelWrite(codeCircuitFailed)
		return
	}
	dst.Close()
}

func (s *session) allocCID() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.nextCID
	s.nextCID++
	return id
}

func (s *session) setRoute(cid uint64, rt route) {
	s.mu.Lock()
	s.routes[cid] = rt
	s.mu.Unlock()
}

func (s *session) dropRoute(cid uint64) {
	s.mu.Lock()
	delete(s.routes, cid)
	s.mu.Unlock()
}

// forwardDatagrams carries the agent's circuit datagrams to the far side of each
// circuit, rewriting the circuit id for the far connection. Routers never open them.
func (s *session) forwardDatagrams(ctx context.Context) {
	go s.sendDatagrams(ctx)
	buf := make([]byte, 0, datagram.MaxCircuitIDLen+maxDatagram)
	for {
		pkt, err := s.conn.ReceiveDatagram(ctx)
		if err != nil {
			return
		}
		cid, _, err := datagram.CircuitID(pkt)
		if err != nil {
			continue
		}
		s.mu.Lock()
		rt, ok := s.routes[cid]
		s.mu.Unlock()
		if !ok {
			continue
		}
		rt.to.out.Push(datagram.Rewrite(buf[:0], pkt, rt.cid))
	}
}

// sendDatagrams sends what other sessions forward to this agent. Forwarding never waits
// on this connection: when it falls behind, the oldest datagrams are dropped.
func (s *session) sendDatagrams(ctx context.Context) {
	for {
		pkt, err := s.out.Pop(ctx)
		if err != nil {
			return
		}
		if err := s.conn.SendDatagram(pkt); err != nil && s.conn.Context().Err() != nil {
			return
		}
	}
}
