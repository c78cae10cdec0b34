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
	"github.com/umbranet/umbra/internal/lane"
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
		if cid, _, err := datagram.CircuitID(pkt); err == nil && cid == heartbeatCID && e.echoHeartbeats {
			e.heard.Store(time.Now().UnixNano())
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
		if l := e.carrier.Load(); l != nil {
			e.countSendDrop(l.Send(pkt)) // a throttled or lost datagram is dropped, as QUIC's are
			continue
		}
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
	case errors.Is(err, lane.ErrTooLarge), errors.As(err, &tooLarge):
		e.drops.oversize.Inc()
	case errors.Is(err, lane.ErrThrottled):
		e.drops.throttled.Inc()
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
