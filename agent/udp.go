package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/umbranet/umbra/third_party/quic-go"

	"github.com/umbranet/umbra/internal/datagram"
	"github.com/umbranet/umbra/internal/fec"
	"github.com/umbranet/umbra/internal/lane"
	"github.com/umbranet/umbra/internal/seal"
)

// UDP circuits: each local UDP peer of a dial listener is a flow with its own circuit;
// its datagrams are sealed end to end, split and reassembled when larger than one
// packet, and never retransmitted late. To the router they ride the link's datagram lane
// beside QUIC (internal/lane), or QUIC DATAGRAM frames where there is no lane. The read
// loop of a UDP socket never blocks on the network: datagrams wait in a drop-oldest
// queue for a sender goroutine.
const (
	// udpFlowIdle ends a flow whose datagrams stopped in both directions.
	udpFlowIdle = 2 * time.Minute
	// udpRetryAfter is how long a flow whose circuit failed drops datagrams before it is
	// dialed again, so a refused service is not dialed per packet.
	udpRetryAfter = time.Second
	// udpQueue is the depth of each flow's send queue.
	udpQueue = 256
	// udpStale is how long a datagram may wait to be sent (a circuit being set up, a
	// stalled link) before it is dropped: stale telemetry is worse than none.
	udpStale = 2 * time.Second
	// maxUDPPayload is the largest UDP payload (65,535 − IP and UDP headers).
	maxUDPPayload = 65507
	// datagramBudget is the QUIC datagram size aimed for before quic-go says otherwise:
	// it fits the 1,200-byte packets of the Radio profile.
	datagramBudget = 1100
)

// Inside the seal, each datagram starts with its coding: a plain fragment, or a packet
// of the forward-error-correction code (internal/fec) carrying a fragment or parity. The
// receiver reads either, so each end chooses for what it sends.
const (
	codingPlain = 0x00
	codingFEC   = 0x01
)

// newUDPQueue is the send queue of one direction of a UDP flow.
func newUDPQueue() *datagram.Queue {
	q := datagram.NewQueue(udpQueue)
	q.SetMaxAge(udpStale)
	return q
}

// udpEnd is one end of a UDP circuit on one link: it seals what it sends and opens,
// reassembles and delivers what arrives.
type udpEnd struct {
	conn    *quic.Conn
	out     datagramSender
	cid     uint64
	seal    *seal.Sealer
	open    *seal.Opener
	split   *datagram.Splitter
	fecOut  *fec.Encoder          // nil: no FEC on what this end sends
	fecIn   *fec.Decoder          // used only by the link's datagram reader
	reasm   *datagram.Reassembler // used only by the link's datagram reader
	queue   *datagram.Queue
	deliver func([]byte)
	active  atomic.Int64 // unix nanoseconds of the last datagram either way
	dropped atomic.Uint64
}

// newUDPEnd makes a circuit end that sends what is pushed onto queue, with forward error
// correction when fc has a K.
func newUDPEnd(conn *quic.Conn, out datagramSender, cid uint64, tc *tls.Conn, dialer bool, queue *datagram.Queue, deliver func([]byte), fc fec.Config) (*udpEnd, error) {
	send, recv, err := datagramKeys(tc.ConnectionState(), dialer)
	if err != nil {
		return nil, err
	}
	in, err := fec.NewDecoder(fec.Config{Expiry: udpStale}) // the sender's flush delay may be long
	if err != nil {
		return nil, err
	}
	overhead := seal.Overhead + 1
	var coder *fec.Encoder
	if fc.K > 0 {
		if coder, err = fec.NewEncoder(fc); err != nil {
			return nil, fmt.Errorf("udp fec: %w", err)
		}
		overhead += fec.PacketOverhead
	}
	e := &udpEnd{
		conn: conn, out: out, cid: cid, seal: seal.NewSealer(send), open: seal.NewOpener(recv),
		split:   datagram.NewSplitter(overhead),
		fecOut:  coder,
		fecIn:   in,
		reasm:   datagram.NewReassembler(datagram.ReassemblerConfig{}),
		queue:   queue,
		deliver: deliver,
	}
	e.touch()
	return e, nil
}

func (e *udpEnd) touch() { e.active.Store(time.Now().UnixNano()) }

func (e *udpEnd) idle() time.Duration { return time.Since(time.Unix(0, e.active.Load())) }

// send carries the queued payloads until ctx ends. With FEC, parity follows each block
// once it is full or its flush delay has passed.
func (e *udpEnd) send(ctx context.Context) {
	budget := datagramBudget
	buf := make([]byte, 0, datagramBudget+seal.Overhead+1+fec.PacketOverhead+datagram.MaxCircuitIDLen)
	inner := make([]byte, 0, datagramBudget+1+fec.PacketOverhead)
	// sendOne seals and sends one inner datagram; false means the link is gone.
	sendOne := func(coding byte, body []byte) (ok, tooLarge bool) {
		inner = append(append(inner[:0], coding), body...)
		pkt, _ := datagram.AppendCircuitID(buf[:0], e.cid)
		pkt = e.seal.Seal(pkt, inner, nil)
		err := e.out(pkt)
		if errors.Is(err, errDatagramDropped) {
			e.dropped.Add(1)
			return true, false
		}
		var tl *quic.DatagramTooLargeError
		if errors.As(err, &tl) {
			if int(tl.MaxDatagramPayloadSize) < budget {
				budget = int(tl.MaxDatagramPayloadSize) // the rest of this message is lost; later ones fit
			}
			e.dropped.Add(1)
			return true, true
		}
		return err == nil, false
	}
	sendFEC := func(pkts [][]byte) bool {
		for _, p := range pkts {
			if ok, _ := sendOne(codingFEC, p); !ok {
				return false
			}
		}
		return true
	}
	for {
		wait, cancel := ctx, context.CancelFunc(func() {})
		if e.fecOut != nil {
			if d, ok := e.fecOut.Deadline(); ok {
				wait, cancel = context.WithDeadline(ctx, d)
			}
		}
		payload, err := e.queue.Pop(wait)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if !sendFEC(e.fecOut.Poll(time.Now())) { // the block's flush delay passed
				return
			}
			continue
		}
		frags, err := e.split.Split(payload, budget)
		if err != nil {
			e.dropped.Add(1)
			continue
		}
		now := time.Now()
		for _, f := range frags {
			if e.fecOut == nil {
				ok, tooLarge := sendOne(codingPlain, f)
				if !ok {
					return
				}
				if tooLarge {
					break
				}
				continue
			}
			pkts, err := e.fecOut.Add(f, now)
			if err != nil {
				e.dropped.Add(1)
				break
			}
			if !sendFEC(pkts) {
				return
			}
		}
		e.touch()
	}
}

// receive opens, decodes, reassembles and delivers one datagram of this circuit.
func (e *udpEnd) receive(sealed []byte, buf []byte) {
	inner, _, err := e.open.Open(buf[:0], sealed, nil)
	if err != nil || len(inner) == 0 {
		e.dropped.Add(1)
		return
	}
	switch inner[0] {
	case codingPlain:
		e.reassemble(inner[1:])
	case codingFEC:
		frags, err := e.fecIn.Add(inner[1:], time.Now())
		if err != nil && len(frags) == 0 {
			e.dropped.Add(1)
			return
		}
		for _, f := range frags {
			e.reassemble(f)
		}
	default:
		e.dropped.Add(1)
	}
}

// reassemble adds one fragment and delivers the message it completes.
func (e *udpEnd) reassemble(frag []byte) {
	msg, ok, err := e.reasm.Add(frag)
	if err != nil {
		e.dropped.Add(1)
		return
	}
	if ok {
		e.touch()
		e.deliver(msg)
	}
}

// registerUDP makes the link's datagram reader hand cid's datagrams to e.
func (a *Agent) registerUDP(e *udpEnd) {
	a.udpMu.Lock()
	defer a.udpMu.Unlock()
	if a.udpEnds[e.conn] == nil {
		a.udpEnds[e.conn] = map[uint64]*udpEnd{}
	}
	a.udpEnds[e.conn][e.cid] = e
}

func (a *Agent) unregisterUDP(e *udpEnd) {
	a.udpMu.Lock()
	defer a.udpMu.Unlock()
	delete(a.udpEnds[e.conn], e.cid)
	if len(a.udpEnds[e.conn]) == 0 {
		delete(a.udpEnds, e.conn)
	}
}

// readDatagrams hands every QUIC datagram arriving on conn to its circuit's end.
func (a *Agent) readDatagrams(ctx context.Context, conn *quic.Conn) {
	buf := make([]byte, 0, datagram.MaxMessageSize)
	for {
		pkt, err := conn.ReceiveDatagram(ctx)
		if err != nil {
			return
		}
		a.dispatchDatagram(conn, pkt, buf)
	}
}

// readLane hands every datagram arriving on conn's lane to its circuit's end.
func (a *Agent) readLane(ctx context.Context, conn *quic.Conn, tr *quic.Transport, ln *lane.Lane) {
	pkt := make([]byte, 0, lane.MaxPacket)
	buf := make([]byte, 0, datagram.MaxMessageSize)
	lane.Pump(ctx, tr.ReadNonQUICPacket, func(raw []byte, from net.Addr) {
		if d, err := ln.Receive(pkt[:0], raw, from); err == nil && d != nil {
			a.dispatchDatagram(conn, d, buf)
		}
	})
}

// dispatchDatagram hands one datagram of conn to its circuit's end, or a heartbeat echo
// to the link's watcher; buf is scratch space.
func (a *Agent) dispatchDatagram(conn *quic.Conn, pkt, buf []byte) {
	cid, n, err := datagram.CircuitID(pkt)
	if err != nil {
		return
	}
	if cid == heartbeatCID {
		a.pong(conn, pkt[n:])
		return
	}
	a.udpMu.Lock()
	e := a.udpEnds[conn][cid]
	a.udpMu.Unlock()
	if e != nil {
		e.receive(pkt[n:], buf)
	}
}

// datagramSender sends one circuit datagram towards the router. It returns
// errDatagramDropped for a datagram dropped on the way out (the lane's breaker, a
// passing socket error) and any other error once the link is gone.
type datagramSender func([]byte) error

// errDatagramDropped is a datagram dropped before it left; the link lives on.
var errDatagramDropped = errors.New("datagram dropped")

// datagramSender returns how circuit datagrams leave on conn: on its lane when the
// router agreed to one, else in QUIC DATAGRAM frames.
func (a *Agent) datagramSender(conn *quic.Conn) datagramSender {
	a.udpMu.Lock()
	ll := a.lanes[conn]
	a.udpMu.Unlock()
	if ll == nil {
		return conn.SendDatagram
	}
	ln := ll.lane
	return func(b []byte) error {
		if err := ln.Send(b); err != nil {
			if conn.Context().Err() != nil {
				return err
			}
			return errDatagramDropped
		}
		return nil
	}
}

// udpFlow is one local peer of a UDP dial listener.
type udpFlow struct {
	peer    net.Addr
	queue   *datagram.Queue // datagrams from the peer, until and while the circuit runs
	end     atomic.Pointer[udpEnd]
	failed  atomic.Bool // the circuit could not be set up: drop until the flow is retried
	started time.Time
}

// serveUDPDial reads the local UDP socket and carries each peer's datagrams over its own
// circuit. It never blocks on the network.
func (a *Agent) serveUDPDial(pc net.PacketConn, st *dialState) {
	go func() {
		<-a.runCtx.Done()
		pc.Close()
	}()
	var (
		mu    sync.Mutex
		flows = map[string]*udpFlow{}
		wg    sync.WaitGroup
	)
	defer wg.Wait()
	buf := make([]byte, maxUDPPayload)
	for {
		n, peer, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		key := peer.String()
		mu.Lock()
		f := flows[key]
		if f != nil && f.failed.Load() && time.Since(f.started) > udpRetryAfter {
			delete(flows, key)
			f = nil
		}
		if f == nil {
			f = &udpFlow{peer: peer, queue: newUDPQueue(), started: time.Now()}
			flows[key] = f
			wg.Go(func() {
				a.runUDPFlow(pc, st, f)
				mu.Lock()
				if flows[key] == f && !f.failed.Load() {
					delete(flows, key)
				}
				mu.Unlock()
			})
		}
		mu.Unlock()
		if f.failed.Load() {
			continue
		}
		f.queue.Push(buf[:n])
		if e := f.end.Load(); e != nil {
			e.touch()
		}
	}
}

// runUDPFlow opens the flow's circuit and runs it until it ends or idles out.
func (a *Agent) runUDPFlow(pc net.PacketConn, st *dialState, f *udpFlow) {
	ctx := a.runCtx
	sctx, cancel := context.WithTimeout(ctx, dialSetupTimeout)
	tc, cid, err := a.openCircuit(sctx, st.spec)
	cancel()
	if err != nil {
		a.dialResult(st, err, 0)
		f.failed.Store(true)
		f.queue.Close()
		a.log.Warn("dial", "service", st.spec.Service, "peer", f.peer.String(), "err", err)
		return
	}
	defer tc.Close()
	conn := tc.NetConn().(streamConn).conn
	// What the peer sent while the circuit was set up goes first.
	e, err := newUDPEnd(conn, a.datagramSender(conn), cid, tc, true, f.queue, func(msg []byte) { pc.WriteTo(msg, f.peer) }, a.cfg.UDPFEC)
	if err != nil {
		a.dialResult(st, err, 0)
		return
	}
	f.end.Store(e)
	a.dialResult(st, nil, 1)
	defer a.dialResult(st, nil, -1)
	a.runUDPEnd(ctx, e, tc)
}

// runUDPEnd carries e until its circuit stream ends, its context ends, or it idles out.
func (a *Agent) runUDPEnd(ctx context.Context, e *udpEnd, tc *tls.Conn) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	a.registerUDP(e)
	defer a.unregisterUDP(e)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { e.send(ctx) })
	wg.Go(func() {
		// Nothing flows on the stream after the handshake: a read ends with the circuit.
		io.Copy(io.Discard, tc)
		cancel()
	})
	tick := time.NewTicker(udpFlowIdle / 4)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			tc.Close()
			e.queue.Close()
			return
		case <-tick.C:
			if e.idle() > udpFlowIdle {
				tc.CloseWrite()
				cancel()
			}
		}
	}
}

// hostUDP delivers a UDP circuit to the local service over a connected UDP socket.
func (a *Agent) hostUDP(ctx context.Context, conn *quic.Conn, cid uint64, tc *tls.Conn, service, addr string) error {
	local, err := net.Dial("udp", addr)
	if err != nil {
		return fmt.Errorf("deliver %s to %s: %w", service, addr, err)
	}
	defer local.Close()
	e, err := newUDPEnd(conn, a.datagramSender(conn), cid, tc, false, newUDPQueue(), func(msg []byte) { local.Write(msg) }, a.cfg.UDPFEC)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		<-ctx.Done()
		local.Close()
	}()
	go func() {
		buf := make([]byte, maxUDPPayload)
		for {
			n, err := local.Read(buf)
			if err != nil {
				if ctx.Err() != nil || !isRefused(err) {
					return
				}
				continue // nothing listens yet at the service's address
			}
			e.queue.Push(buf[:n])
			e.touch()
		}
	}()
	a.runUDPEnd(ctx, e, tc)
	return nil
}

// isRefused reports an ICMP port-unreachable bounced back on a connected UDP socket.
func isRefused(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && errors.Is(err, syscall.ECONNREFUSED)
}
