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
	"github.com/umbranet/umbra/internal/seal"
)

// UDP circuits: each local UDP peer of a dial listener is a flow with its own circuit;
// its datagrams are sealed end to end, split and reassembled when larger than one
// packet, and never retransmitted late. To the router they ride QUIC DATAGRAM frames
// (RFC 9221) of the link's connection, paced by umbra's congestion controller. The read
// loop of a UDP socket never blocks on the network: datagrams wait in a drop-oldest
// queue, bounded in bytes and age so a video's bursts fit, for a sender goroutine, which
// adds forward error correction while the link is lossy (autoFECCode) and spreads a backlog
// out. The receiving end delivers in order behind a datagram FEC may still rebuild
// (datagram.Orderer). Every stage counts what it drops (udpstats.go).
const (
	// udpFlowIdle ends a flow whose datagrams stopped in both directions.
	udpFlowIdle = 2 * time.Minute
	// udpRetryAfter is how long a flow whose circuit failed drops datagrams before it is
	// dialed again, so a refused service is not dialed per packet.
	udpRetryAfter = time.Second
	// udpQueue and udpQueueBytes bound each flow's send queue: room for udpStale of an
	// 8 Mbit/s video flow, so the bursts of a video (a keyframe of tens of packets, the
	// first second or two queued while its circuit is set up over a slow radio) are
	// bounded by their age, not by a count sized for telemetry. At 256 datagrams a
	// 1.5 Mbit/s video starting over a 400 ms round trip lost its first keyframe, and
	// 20-30 frames with it, while its circuit was set up. Slots cost nothing until used.
	udpQueue      = 4096
	udpQueueBytes = 2 << 20
	// udpStale is how long a datagram may wait to be sent (a circuit being set up, a
	// stalled link) before it is dropped: stale telemetry is worse than none.
	udpStale = 2 * time.Second
	// maxUDPPayload is the largest UDP payload (65,535 − IP and UDP headers).
	maxUDPPayload = 65507
	// datagramPathRoom is the largest QUIC datagram every hop of a circuit carries:
	// quic-go's room for a DATAGRAM frame in a packet of 1,200 bytes (RFC 9000's least
	// packet size, which path MTU discovery never goes below, and the Radio profile's
	// first packets), 1,200 − 37. A hop whose path MTU discovery has grown carries more,
	// but the hops past the router may not: what one of them cannot carry, its router
	// drops (oversize). Datagrams are sized for min(this, what quic-go allows on the
	// agent's own connection now: datagramRoom). With the end-to-end seal, the coding
	// byte, the fragment header and the reserved circuit id, a UDP payload of up to
	// 1,126 bytes (1,119 where FEC may be added, as by default) travels in one packet:
	// RTP packetized for an MTU of 1,100 does.
	datagramPathRoom = 1200 - 37
	// udpBurst is how many datagrams may wait in a flow's queue and still leave back to
	// back: a keyframe's burst passes as it came. A longer backlog (what queued while the
	// circuit was set up, or while the link stalled) is sent at twice the pace it came
	// in (udpCatchUp), not at the link's line rate: 1.5 s of a 1.5 Mbit/s video queued
	// over a 400 ms round trip left as 400 packets in 20 ms, which overran the
	// receiving decoder's socket and lost its first keyframe where the straight path
	// lost nothing.
	udpBurst = 64
	// udpCatchUp is how much faster than it came a backlog is sent.
	udpCatchUp = 2
	// udpCatchUpGap bounds the gap between a backlog's datagrams.
	udpCatchUpGap = 20 * time.Millisecond
	// udpHold is how long a datagram that follows a gap in its flow waits for the gap to
	// fill, when the sender adds FEC (datagram.Orderer): a packet FEC rebuilds after the
	// ones behind it is no use to an RTP decoder that has moved past it.
	udpHold = datagram.DefaultHold
)

// autoFECCode is the code a UDP circuit sends with by default while the router link's
// heartbeats show loss (Config.UDPFEC): blocks of up to 16 datagrams closed 30 ms after
// their first, under a frame of video, with 4 parity packets for a full block and in
// proportion (at least 2) for a short one. A video frame of 5 packets gets 2 parity
// packets; 6 telemetry messages at 200 a second, 2. At 15 % random loss a datagram of
// such a block arrives 96–97 % of the time where the bare radio delivers 85 %; at 5 %,
// 99.8 %. It costs 25–40 % more packets, only while the link loses them.
var autoFECCode = fec.Config{K: 16, M: 4, FlushDelay: 30 * time.Millisecond, Proportional: true}

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
	q.SetMaxBytes(udpQueueBytes)
	return q
}

// udpEnd is one end of a UDP circuit on one link: it seals what it sends and opens,
// reassembles and delivers what arrives.
type udpEnd struct {
	conn   *quic.Conn
	stats  *udpCounters
	cid    uint64
	seal   *seal.Sealer
	open   *seal.Opener
	split  *datagram.Splitter
	fecOut *fec.Encoder // nil: no FEC on what this end sends
	// autoFEC, when set, says whether the link is lossy: fecOut is then autoFECCode's
	// encoder while it is, and nil while it is not.
	autoFEC func() bool
	queue   *datagram.Queue
	deliver func([]byte)
	active  atomic.Int64 // unix nanoseconds of the last datagram either way

	// What arrives: the link's datagram reader and the orderer's timer take inMu.
	inMu   sync.Mutex
	fecIn  *fec.Decoder
	reasm  *datagram.Reassembler
	order  *datagram.Orderer // made once the sender's FEC shows: then datagrams leave in order
	hold   *time.Timer       // releases what waited udpHold
	closed bool
	counts receiveCounts
}

// newUDPEnd makes a circuit end that sends what is pushed onto queue, with forward error
// correction when fc has a K.
func newUDPEnd(conn *quic.Conn, stats *udpCounters, cid uint64, tc *tls.Conn, dialer bool, queue *datagram.Queue, deliver func([]byte), fc fec.Config, autoFEC func() bool) (*udpEnd, error) {
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
		autoFEC = nil
	}
	if fc.K > 0 || autoFEC != nil {
		overhead += fec.PacketOverhead
	}
	e := &udpEnd{
		conn: conn, stats: stats, cid: cid, seal: seal.NewSealer(send), open: seal.NewOpener(recv),
		split:   datagram.NewSplitter(overhead),
		fecOut:  coder,
		autoFEC: autoFEC,
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
	budget := datagramRoom(e.conn)
	buf := make([]byte, 0, datagramPathRoom+datagram.MaxCircuitIDLen)
	inner := make([]byte, 0, datagramPathRoom)
	var stale uint64 // the queue's count of stale datagrams, as last counted
	// sendOne seals and sends one inner datagram. It returns why the packet was
	// dropped ("" if it left), and false once the link is gone.
	sendOne := func(coding byte, body []byte) (dropped string, ok bool) {
		inner = append(append(inner[:0], coding), body...)
		pkt, _ := datagram.AppendCircuitID(buf[:0], e.cid)
		pkt = e.seal.Seal(pkt, inner, nil)
		// quic-go queues 32 datagrams; when that queue is full (a keyframe's burst
		// outruns the pacer), SendDatagram waits for room, dropping nothing, and the
		// flow's own queue holds the rest, bounded in bytes and age.
		err := e.conn.SendDatagram(pkt)
		var tl *quic.DatagramTooLargeError
		switch {
		case err == nil:
			return "", true
		case errors.As(err, &tl):
			if int(tl.MaxDatagramPayloadSize) < budget {
				budget = int(tl.MaxDatagramPayloadSize) // the rest of this message is lost; later ones fit
			}
			return udpDropOversize, true
		}
		return "", false
	}
	// sendFEC sends packets of the code: parity, or one fragment's data packet.
	sendFEC := func(pkts [][]byte) (dropped string, ok bool) {
		for _, p := range pkts {
			d, ok := sendOne(codingFEC, p)
			if !ok {
				return d, false
			}
			if p[2] < p[3] { // a data packet (index < K): the fragment's fate
				dropped = d
			}
		}
		return dropped, true
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
		if n := e.queue.Stale(); n != stale {
			e.stats.drop(udpDropStale, n-stale)
			stale = n
		}
		if err != nil {
			if ctx.Err() != nil || e.fecOut == nil {
				return // ended, or the queue closed
			}
			if _, ok := sendFEC(e.fecOut.Poll(time.Now())); !ok { // the block's flush delay passed
				return
			}
			continue
		}
		if e.autoFEC != nil {
			switch on := e.autoFEC(); {
			case on && e.fecOut == nil:
				e.fecOut, _ = fec.NewEncoder(autoFECCode) // cannot fail: a valid Config
			case !on && e.fecOut != nil:
				if _, ok := sendFEC(e.fecOut.Flush()); !ok {
					return
				}
				e.fecOut = nil
			}
		}
		if n := e.queue.Len(); n >= udpBurst {
			// A backlog: spread it over 1/udpCatchUp of the time it took to gather.
			gap := min(e.queue.OldestAge()/udpCatchUp/time.Duration(n), udpCatchUpGap)
			if gap > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(gap):
				}
			}
		}
		budget = datagramRoom(e.conn) // quic-go's room changes with the path's MTU
		frags, err := e.split.Split(payload, budget)
		if err != nil {
			e.stats.drop(udpDropOversize, 1)
			continue
		}
		now := time.Now()
		lost := "" // why the datagram was lost, if one of its fragments was
		for _, f := range frags {
			var dropped string
			var ok bool
			if e.fecOut == nil {
				dropped, ok = sendOne(codingPlain, f)
			} else {
				pkts, err := e.fecOut.Add(f, now)
				if err != nil {
					lost = udpDropOversize
					break
				}
				dropped, ok = sendFEC(pkts)
			}
			if !ok {
				return
			}
			if dropped != "" && lost == "" {
				lost = dropped
			}
			if dropped == udpDropOversize {
				break
			}
		}
		e.stats.drop(lost, 1)
		e.touch()
	}
}

// receive opens, decodes, reassembles and delivers one datagram of this circuit.
func (e *udpEnd) receive(sealed []byte, buf []byte) {
	inner, _, err := e.open.Open(buf[:0], sealed, nil)
	if err != nil || len(inner) == 0 {
		e.stats.drop(udpDropAuth, 1)
		return
	}
	now := time.Now()
	e.inMu.Lock()
	defer e.inMu.Unlock()
	if e.closed {
		return
	}
	switch inner[0] {
	case codingPlain:
		e.reassemble(inner[1:], now)
	case codingFEC:
		if e.order == nil {
			// The sender protects this flow: a lost datagram may be rebuilt after the
			// ones that follow it, so from now on they wait for it, a little.
			e.order = datagram.NewOrderer(datagram.OrdererConfig{Hold: udpHold})
		}
		frags, err := e.fecIn.Add(inner[1:], now)
		if err != nil && len(frags) == 0 {
			e.stats.drop(udpDropMalformed, 1)
		}
		for _, f := range frags {
			e.reassemble(f, now)
		}
	default:
		e.stats.drop(udpDropMalformed, 1)
	}
	e.settle()
}

// reassemble adds one fragment and delivers the message it completes, in order once
// the flow has an orderer. e.inMu is held.
func (e *udpEnd) reassemble(frag []byte, now time.Time) {
	var id uint64
	if e.order != nil {
		f, err := datagram.DecodeFragment(frag)
		if err != nil {
			e.stats.drop(udpDropMalformed, 1)
			return
		}
		id = f.MessageID
	}
	msg, ok, err := e.reasm.Add(frag)
	if err != nil {
		e.stats.drop(udpDropMalformed, 1)
		return
	}
	if !ok {
		return
	}
	e.touch()
	if e.order == nil {
		e.deliverOne(msg)
		return
	}
	for _, m := range e.order.Add(id, msg, now) {
		e.deliverOne(m)
	}
}

func (e *udpEnd) deliverOne(msg []byte) {
	e.stats.delivered.Add(1)
	e.deliver(msg)
}

// settle adds what the decoder, reassembler and orderer counted to the agent's
// figures, and sets the timer for the next datagram whose wait ends. e.inMu is held.
func (e *udpEnd) settle() {
	var ost datagram.OrderStats
	if e.order != nil {
		ost = e.order.Stats()
	}
	e.counts.update(e.stats, e.fecIn.Stats(), e.reasm.Stats(), ost)
	if e.order == nil {
		return
	}
	d, ok := e.order.Deadline()
	if !ok {
		return
	}
	if e.hold == nil {
		e.hold = time.AfterFunc(time.Until(d), e.releaseHeld)
		return
	}
	e.hold.Reset(time.Until(d))
}

// releaseHeld delivers what has waited udpHold for a datagram that did not come.
func (e *udpEnd) releaseHeld() {
	e.inMu.Lock()
	defer e.inMu.Unlock()
	if e.closed {
		return
	}
	for _, m := range e.order.Poll(time.Now()) {
		e.deliverOne(m)
	}
	e.settle()
}

// stopReceiving ends deliveries: the circuit is over.
func (e *udpEnd) stopReceiving() {
	e.inMu.Lock()
	defer e.inMu.Unlock()
	e.closed = true
	if e.hold != nil {
		e.hold.Stop()
	}
}

// autoFEC is how a UDP circuit's end learns whether to add autoFECCode: the router link's
// loss verdict; nil when the Config fixes the code or turns it off.
func (a *Agent) autoFEC() func() bool {
	if a.cfg.UDPFECOff || a.cfg.UDPFEC.K > 0 {
		return nil
	}
	return func() bool {
		lossy, _ := a.loss.state()
		return lossy
	}
}

// registerUDP makes the link's datagram reader hand cid's datagrams to e, those that
// came before it first. It holds udpMu while it hands those over, so the reader's next
// datagram of the circuit follows them.
func (a *Agent) registerUDP(e *udpEnd) {
	a.udpMu.Lock()
	defer a.udpMu.Unlock()
	if a.udpEnds[e.conn] == nil {
		a.udpEnds[e.conn] = map[uint64]*udpEnd{}
	}
	a.udpEnds[e.conn][e.cid] = e
	early, stale := a.early.take(e.conn, e.cid)
	a.udp.drop(udpDropUnknownCircuit, stale)
	if len(early) > 0 {
		buf := make([]byte, 0, datagram.MaxMessageSize)
		for _, pkt := range early {
			e.receive(pkt, buf)
		}
	}
}

func (a *Agent) unregisterUDP(e *udpEnd) {
	a.udpMu.Lock()
	defer a.udpMu.Unlock()
	delete(a.udpEnds[e.conn], e.cid)
	if len(a.udpEnds[e.conn]) == 0 {
		delete(a.udpEnds, e.conn)
	}
}

// readDatagrams hands every QUIC datagram arriving on conn to its circuit's end, and
// counts what quic-go dropped on conn by itself: datagrams that arrived while its
// receive queue was full, and queued ones that no longer fit a packet.
func (a *Agent) readDatagrams(ctx context.Context, conn *quic.Conn) {
	buf := make([]byte, 0, datagram.MaxMessageSize)
	var counted quic.DatagramDrops
	for {
		pkt, err := conn.ReceiveDatagram(ctx)
		if d := conn.DatagramsDropped(); d != counted {
			a.udp.drop(udpDropReceiveFull, d.Receiving-counted.Receiving)
			a.udp.drop(udpDropSendError, d.Sending-counted.Sending)
			counted = d
		}
		if err != nil {
			return
		}
		a.dispatchDatagram(conn, pkt, buf)
	}
}

// tooLarge is a payload larger than any QUIC datagram (RFC 9221 caps a DATAGRAM frame
// at 16,383 bytes in quic-go), which datagramRoom offers quic-go to learn its room.
var tooLarge = make([]byte, 1<<14+1)

// datagramRoom is the largest circuit datagram to send on conn now: what quic-go allows
// (its DatagramTooLargeError for a payload too large for any datagram, which queues
// nothing), at most datagramPathRoom.
func datagramRoom(conn *quic.Conn) int {
	var tl *quic.DatagramTooLargeError
	if err := conn.SendDatagram(tooLarge); errors.As(err, &tl) {
		return min(int(tl.MaxDatagramPayloadSize), datagramPathRoom)
	}
	return datagramPathRoom
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
	if e == nil {
		// The dialer sends once its end of the end-to-end handshake is done, and its
		// datagrams may overtake the handshake's last flight on the way to this end (or
		// that flight may wait a retransmission): keep them a moment for the end.
		a.udp.drop(udpDropUnknownCircuit, a.early.put(conn, cid, pkt[n:]))
		return
	}
	e.receive(pkt[n:], buf)
}

// udpFlow is one local peer of a UDP dial listener.
type udpFlow struct {
	peer    net.Addr
	queue   *datagram.Queue // datagrams from the peer, until and while the circuit runs
	conn    atomic.Pointer[PacketConn]
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
			a.udp.sent.Add(1)
			a.udp.drop(udpDropNoCircuit, 1)
			continue
		}
		// The flow's queue is its circuit's send queue: what comes while the circuit is
		// set up waits there and goes first.
		a.push(f.queue, buf[:n])
		if c := f.conn.Load(); c != nil {
			c.e.touch()
		}
	}
}

// runUDPFlow opens the flow's circuit, as any program would (DialPacket), and passes
// what comes back to the flow's peer until the circuit ends or idles out.
func (a *Agent) runUDPFlow(pc net.PacketConn, st *dialState, f *udpFlow) {
	sctx, cancel := context.WithTimeout(a.runCtx, dialSetupTimeout)
	c, err := a.dialPacket(sctx, st.spec, f.queue)
	cancel()
	if err != nil {
		a.dialResult(st, err, 0)
		f.failed.Store(true)
		a.udp.drop(udpDropNoCircuit, uint64(f.queue.Len()))
		f.queue.Close()
		a.log.Warn("dial", "service", st.spec.Service, "peer", f.peer.String(), "err", err)
		return
	}
	defer c.Close()
	f.conn.Store(c)
	a.dialResult(st, nil, 1)
	defer a.dialResult(st, nil, -1)
	buf := make([]byte, maxUDPPayload)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return
		}
		pc.WriteTo(buf[:n], f.peer)
	}
}

// runUDPEnd carries e until its circuit stream ends, its context ends, or it idles out.
func (a *Agent) runUDPEnd(ctx context.Context, e *udpEnd, tc *tls.Conn) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	a.registerUDP(e)
	defer a.unregisterUDP(e)
	defer e.stopReceiving()
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

// isRefused reports an ICMP port-unreachable bounced back on a connected UDP socket.
func isRefused(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && errors.Is(err, syscall.ECONNREFUSED)
}
