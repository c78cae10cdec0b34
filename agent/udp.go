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

	"github.com/quic-go/quic-go"

	"umbra/internal/datagram"
)

// The UDP lane: each local UDP peer of a dial listener is a flow with its own circuit;
// its datagrams ride QUIC DATAGRAM frames, sealed end to end, split and reassembled when
// larger than one frame, and never retransmitted late. The read loop of a UDP socket
// never blocks on QUIC: datagrams wait in a drop-oldest queue for a sender goroutine.
const (
	// udpFlowIdle ends a flow whose datagrams stopped in both directions.
	udpFlowIdle = 2 * time.Minute
	// udpRetryAfter is how long a flow whose circuit failed drops datagrams before it is
	// dialed again, so a refused service is not dialed per packet.
	udpRetryAfter = time.Second
	// udpQueue is the depth of each flow's send queue.
	udpQueue = 256
	// maxUDPPayload is the largest UDP payload (65,535 − IP and UDP headers).
	maxUDPPayload = 65507
	// datagramBudget is the QUIC datagram size aimed for before quic-go says otherwise:
	// it fits the 1,200-byte packets of the Radio profile.
	datagramBudget = 1100
)

// udpEnd is one end of a UDP circuit on one link: it seals what it sends and opens,
// reassembles and delivers what arrives.
type udpEnd struct {
	conn    *quic.Conn
	cid     uint64
	seal    sealer
	open    *opener
	split   *datagram.Splitter
	reasm   *datagram.Reassembler // used only by the link's datagram reader
	queue   *datagram.Queue
	deliver func([]byte)
	active  atomic.Int64 // unix nanoseconds of the last datagram either way
	dropped atomic.Uint64
}

// newUDPEnd makes a circuit end that sends what is pushed onto queue.
func newUDPEnd(conn *quic.Conn, cid uint64, tc *tls.Conn, dialer bool, queue *datagram.Queue, deliver func([]byte)) (*udpEnd, error) {
	send, recv, err := datagramKeys(tc.ConnectionState(), dialer)
	if err != nil {
		return nil, err
	}
	e := &udpEnd{
		conn: conn, cid: cid, seal: sealer{aead: send}, open: &opener{aead: recv},
		split:   datagram.NewSplitter(sealOverhead),
		reasm:   datagram.NewReassembler(datagram.ReassemblerConfig{}),
		queue:   queue,
		deliver: deliver,
	}
	e.touch()
	return e, nil
}

func (e *udpEnd) touch() { e.active.Store(time.Now().UnixNano()) }

func (e *udpEnd) idle() time.Duration { return time.Since(time.Unix(0, e.active.Load())) }

// send carries the queued payloads until ctx ends.
func (e *udpEnd) send(ctx context.Context) {
	budget := datagramBudget
	buf := make([]byte, 0, datagramBudget+sealOverhead+datagram.MaxCircuitIDLen)
	for {
		payload, err := e.queue.Pop(ctx)
		if err != nil {
			return
		}
		frags, err := e.split.Split(payload, budget)
		if err != nil {
			e.dropped.Add(1)
			continue
		}
		for _, f := range frags {
			pkt, _ := datagram.AppendCircuitID(buf[:0], e.cid)
			pkt = e.seal.seal(pkt, f)
			err := e.conn.SendDatagram(pkt)
			var tooLarge *quic.DatagramTooLargeError
			if errors.As(err, &tooLarge) && int(tooLarge.MaxDatagramPayloadSize) < budget {
				budget = int(tooLarge.MaxDatagramPayloadSize) // the rest of this message is lost; later ones fit
				e.dropped.Add(1)
				break
			}
			if err != nil {
				return
			}
		}
		e.touch()
	}
}

// receive opens, reassembles and delivers one datagram of this circuit.
func (e *udpEnd) receive(sealed []byte, buf []byte) {
	frag, err := e.open.open(buf[:0], sealed)
	if err != nil {
		e.dropped.Add(1)
		return
	}
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

// readDatagrams hands every datagram arriving on conn to its circuit's end.
func (a *Agent) readDatagrams(ctx context.Context, conn *quic.Conn) {
	buf := make([]byte, 0, datagram.MaxMessageSize)
	for {
		pkt, err := conn.ReceiveDatagram(ctx)
		if err != nil {
			return
		}
		cid, n, err := datagram.CircuitID(pkt)
		if err != nil {
			continue
		}
		a.udpMu.Lock()
		e := a.udpEnds[conn][cid]
		a.udpMu.Unlock()
		if e != nil {
			e.receive(pkt[n:], buf)
		}
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
			f = &udpFlow{peer: peer, queue: datagram.NewQueue(udpQueue), started: time.Now()}
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
	e, err := newUDPEnd(conn, cid, tc, true, f.queue, func(msg []byte) { pc.WriteTo(msg, f.peer) })
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
func (a *Agent) hostUDP(ctx context.Context, conn *quic.Conn, cid uint64, tc *tls.Conn, h *hostState) error {
	local, err := net.Dial("udp", h.addr)
	if err != nil {
		return fmt.Errorf("deliver %s to %s: %w", h.service, h.addr, err)
	}
	defer local.Close()
	e, err := newUDPEnd(conn, cid, tc, false, datagram.NewQueue(udpQueue), func(msg []byte) { local.Write(msg) })
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
