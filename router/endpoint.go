package router

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/quic-go/quic-go"

	"umbra/internal/datagram"
	"umbra/internal/lane"
)

// endpoint is one QUIC connection a router carries circuit datagrams on: an agent's
// session or a link to another router. Each circuit has an id on each connection it
// crosses; the router rewrites the id as it forwards and never opens the payload.
type endpoint struct {
	conn *quic.Conn
	out  *datagram.Queue // datagrams forwarded onto this connection

	mu      sync.Mutex
	nextCID uint64           // the next circuit id this router hands out here
	cidStep uint64           // 1 on agent sessions; 2 on links, whose two ends share the id space
	routes  map[uint64]route // circuit id on this connection → where its datagrams go
	// echoHeartbeats sends datagrams of circuit id heartbeatCID straight back (agents').
	echoHeartbeats bool
	// carrier, once set, carries the datagrams forwarded onto this connection instead
	// of QUIC: an agent's datagram lane.
	carrier atomic.Pointer[lane.Lane]
}

// heartbeatCID is the circuit id of an agent's heartbeat datagrams, which no circuit uses.
const heartbeatCID = 0

// route is the far side of a circuit's datagrams.
type route struct {
	to  *endpoint
	cid uint64
}

// newEndpoint wraps conn; ids handed out here start at first and advance by step.
func newEndpoint(conn *quic.Conn, first, step uint64) endpoint {
	return endpoint{conn: conn, out: datagram.NewQueue(datagramQueue), nextCID: first, cidStep: step, routes: map[uint64]route{}}
}

func (e *endpoint) allocCID() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	id := e.nextCID
	e.nextCID += e.cidStep
	return id
}

func (e *endpoint) setRoute(cid uint64, rt route) {
	e.mu.Lock()
	e.routes[cid] = rt
	e.mu.Unlock()
}

func (e *endpoint) dropRoute(cid uint64) {
	e.mu.Lock()
	delete(e.routes, cid)
	e.mu.Unlock()
}

// forwardDatagrams carries the datagrams arriving on this connection to the far side of
// each circuit, rewriting the circuit id for the far connection.
func (e *endpoint) forwardDatagrams(ctx context.Context) {
	go e.sendDatagrams(ctx)
	buf := make([]byte, 0, datagram.MaxCircuitIDLen+maxDatagram)
	for {
		pkt, err := e.conn.ReceiveDatagram(ctx)
		if err != nil {
			return
		}
		if cid, _, err := datagram.CircuitID(pkt); err == nil && cid == heartbeatCID && e.echoHeartbeats {
			e.conn.SendDatagram(pkt) // an agent's heartbeat: straight back
			continue
		}
		e.route(pkt, buf)
	}
}

// route forwards one datagram that arrived here, by QUIC or by lane, to the far side of
// its circuit; buf is scratch space.
func (e *endpoint) route(pkt, buf []byte) {
	cid, _, err := datagram.CircuitID(pkt)
	if err != nil {
		return
	}
	e.mu.Lock()
	rt, ok := e.routes[cid]
	e.mu.Unlock()
	if ok {
		rt.to.out.Push(datagram.Rewrite(buf[:0], pkt, rt.cid))
	}
}

// sendDatagrams sends what other connections forward onto this one. Forwarding never
// waits on this connection: when it falls behind, the oldest datagrams are dropped.
func (e *endpoint) sendDatagrams(ctx context.Context) {
	for {
		pkt, err := e.out.Pop(ctx)
		if err != nil {
			return
		}
		if l := e.carrier.Load(); l != nil {
			l.Send(pkt) // a throttled or lost datagram is dropped, as QUIC's are
			continue
		}
		if err := e.conn.SendDatagram(pkt); err != nil && e.conn.Context().Err() != nil {
			return
		}
	}
}

// join joins two circuit ends for datagrams until the returned func is called.
func join(a *endpoint, acid uint64, b *endpoint, bcid uint64) (unjoin func()) {
	a.setRoute(acid, route{to: b, cid: bcid})
	b.setRoute(bcid, route{to: a, cid: acid})
	return func() {
		a.dropRoute(acid)
		b.dropRoute(bcid)
	}
}
