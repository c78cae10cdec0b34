package router

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/umbranet/umbra/third_party/quic-go"

	"github.com/umbranet/umbra/internal/datagram"
)

// endpoint is one QUIC connection a router carries circuit datagrams on: an agent's
// session or a link to another router. Each circuit has an id on each connection it
// crosses; the router rewrites the id as it forwards and never opens the payload.
type endpoint struct {
	conn  *quic.Conn
	out   *datagram.Queue // datagrams forwarded onto this connection
	drops *dropCounters   // the router's, counting what this connection drops

	mu      sync.Mutex
	nextCID uint64           // the next circuit id this router hands out here
	cidStep uint64           // 1 on agent sessions; 2 on links, whose two ends share the id space
	routes  map[uint64]route // circuit id on this connection → where its datagrams go
	// echoHeartbeats sends datagrams of circuit id heartbeatCID straight back (agents').
	echoHeartbeats bool
	// heard is when the last heartbeat arrived, in Unix nanoseconds (agents').
	heard atomic.Int64
	// receiveDropped is quic-go's count of datagrams it dropped on this connection
	// because its receive queue was full, as last added to drops.
	receiveDropped uint64
}

// heartbeatCID is the circuit id of an agent's heartbeat datagrams, which no circuit uses.
const heartbeatCID = 0

// route is the far side of a circuit's datagrams.
type route struct {
	to  *endpoint
	cid uint64
	// forwarded counts the datagrams sent on this way: the circuit's service and
	// direction, resolved when the circuit was joined.
	forwarded prometheus.Counter
}

// newEndpoint wraps conn; ids handed out here start at first and advance by step.
// drops counts the datagrams it drops.
func newEndpoint(conn *quic.Conn, first, step uint64, drops *dropCounters) endpoint {
	out := datagram.NewQueue(datagramQueue)
	out.SetMaxAge(datagramStale)
	out.SetMaxBytes(datagramQueueBytes)
	return endpoint{conn: conn, out: out, drops: drops, nextCID: first, cidStep: step, routes: map[uint64]route{}}
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
		if n := e.conn.DatagramsDropped().Receiving; n != e.receiveDropped {
			e.drops.receiveFull.Add(float64(n - e.receiveDropped))
			e.receiveDropped = n
		}
		if cid, _, err := datagram.CircuitID(pkt); err == nil && cid == heartbeatCID && e.echoHeartbeats {
			// An agent's heartbeat goes straight back, behind what is queued for the
			// agent but never blocking this reader on quic-go's send queue.
			e.heard.Store(time.Now().UnixNano())
			if _, evicted := e.out.PushEvicting(pkt); evicted {
				e.drops.queueFull.Inc()
			}
			continue
		}
		e.route(pkt, buf)
	}
}

// route forwards one datagram that arrived here to the far side of its circuit; buf is
// scratch space.
func (e *endpoint) route(pkt, buf []byte) {
	cid, _, err := datagram.CircuitID(pkt)
	if err != nil {
		e.drops.malformed.Inc()
		return
	}
	e.mu.Lock()
	rt, ok := e.routes[cid]
	e.mu.Unlock()
	if !ok {
		e.drops.unknownCircuit.Inc()
		return
	}
	if queued, evicted := rt.to.out.PushEvicting(datagram.Rewrite(buf[:0], pkt, rt.cid)); queued {
		rt.forwarded.Inc()
		if evicted {
			e.drops.queueFull.Inc()
		}
	}
}

// sendDatagrams sends what other connections forward onto this one. Forwarding never
// waits on this connection: when it falls behind, the oldest datagrams are dropped.
func (e *endpoint) sendDatagrams(ctx context.Context) {
	var stale uint64 // the queue's count of stale datagrams, as last counted
	for {
		pkt, err := e.out.Pop(ctx)
		if n := e.out.Stale(); n != stale {
			e.drops.stale.Add(float64(n - stale))
			stale = n
		}
		if err != nil {
			return
		}
		// quic-go's send queue is short (32): when it is full, SendDatagram waits for the
		// connection's pacer to take one, and the backlog waits in e.out, bounded by age.
		err = e.conn.SendDatagram(pkt)
		if err != nil && e.conn.Context().Err() != nil {
			return
		}
		e.countSendDrop(err)
	}
}

// countSendDrop counts a datagram the far hop refused by the reason err gives; a
// failed write on a socket is not counted, as the network's own losses are not.
func (e *endpoint) countSendDrop(err error) {
	var tooLarge *quic.DatagramTooLargeError
	switch {
	case err == nil:
	case errors.As(err, &tooLarge):
		e.drops.oversize.Inc()
	}
}

// join joins two circuit ends for datagrams until the returned func is called; what a
// sends on to b counts on aToB, what b sends on to a on bToA.
func join(a *endpoint, acid uint64, b *endpoint, bcid uint64, aToB, bToA prometheus.Counter) (unjoin func()) {
	a.setRoute(acid, route{to: b, cid: bcid, forwarded: aToB})
	b.setRoute(bcid, route{to: a, cid: acid, forwarded: bToA})
	return func() {
		a.dropRoute(acid)
		b.dropRoute(bcid)
	}
}
