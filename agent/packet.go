package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/umbranet/umbra/third_party/quic-go"

	"github.com/umbranet/umbra/internal/datagram"
)

// UDP circuits in process: DialPacket and ListenPacket carry a program's datagrams over
// UDP circuits as the agent's dial listeners and host addresses do (udp.go), with the
// same datagram semantics: each write is one datagram, sealed end to end, never
// retransmitted; a reader that falls behind loses the newest ones.

// packetInbox is how many received datagrams wait for a reader before new ones are
// dropped.
const packetInbox = udpQueue

// errTooLarge is a write of more than one UDP datagram can hold.
var errTooLarge = fmt.Errorf("agent: datagram larger than %d bytes", maxUDPPayload)

// packet is one received datagram and the circuit end it came from.
type packet struct {
	b    []byte
	from *Addr
}

// readDeadline is a settable read deadline that wakes a waiting reader when it moves.
type readDeadline struct {
	mu      sync.Mutex
	t       time.Time
	changed chan struct{}
}

func (d *readDeadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.t = t
	if d.changed != nil {
		close(d.changed)
	}
	d.changed = make(chan struct{})
}

func (d *readDeadline) get() (time.Time, <-chan struct{}) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.changed == nil {
		d.changed = make(chan struct{})
	}
	return d.t, d.changed
}

// receive waits for the next datagram of in until done or stopped closes or the deadline
// passes.
func receive(in <-chan packet, done, stopped <-chan struct{}, rd *readDeadline) (packet, error) {
	for {
		select { // what arrived before the end is still read
		case p := <-in:
			return p, nil
		default:
		}
		t, changed := rd.get()
		var timeout <-chan time.Time
		if !t.IsZero() {
			wait := time.Until(t)
			if wait <= 0 {
				return packet{}, os.ErrDeadlineExceeded
			}
			timer := time.NewTimer(wait)
			defer timer.Stop()
			timeout = timer.C
		}
		select {
		case p := <-in:
			return p, nil
		case <-done:
			return drain(in)
		case <-stopped:
			return drain(in)
		case <-changed:
		case <-timeout:
			return packet{}, os.ErrDeadlineExceeded
		}
	}
}

// drain returns what in still holds, or net.ErrClosed.
func drain(in <-chan packet) (packet, error) {
	select {
	case p := <-in:
		return p, nil
	default:
	}
	return packet{}, net.ErrClosed
}

// offer queues a copy of b for a reader, dropping it (counted in stats) when the
// reader is too far behind.
func offer(in chan packet, b []byte, from *Addr, stats *udpCounters) {
	select {
	case in <- packet{b: append([]byte(nil), b...), from: from}:
	default:
		stats.drop(udpDropReaderBehind, 1)
	}
}

// push queues p on a UDP circuit's send queue q without blocking, counting it and the
// oldest datagram it pushes out of a full queue; false means the circuit has ended.
func (a *Agent) push(q *datagram.Queue, p []byte) bool {
	queued, evicted := q.PushEvicting(p)
	if !queued {
		return false
	}
	a.udp.sent.Add(1)
	if evicted {
		a.udp.drop(udpDropQueueFull, 1)
	}
	return true
}

// PacketConn is one UDP circuit a program dialed (DialPacket): a net.Conn and a
// net.PacketConn with datagram semantics. Each Write sends one datagram and each Read
// returns one; nothing is retransmitted, and datagrams may be lost. The circuit ends
// after two minutes without a datagram either way, or with Close.
type PacketConn struct {
	a             *Agent
	e             *udpEnd
	in            chan packet
	done          chan struct{} // closed once the circuit has ended
	stop          context.CancelFunc
	local, remote Addr
	rd            readDeadline
}

// DialPacket opens a UDP circuit to service, on whichever identity the controller picks
// among those hosting it (see Dial for waiting and errors).
func (a *Agent) DialPacket(ctx context.Context, service string) (*PacketConn, error) {
	return a.dialPacket(ctx, DialSpec{Service: service, Proto: ProtoUDP}, nil)
}

// DialPacketHost is DialPacket to the service as hosted by the identity named host.
func (a *Agent) DialPacketHost(ctx context.Context, service, host string) (*PacketConn, error) {
	return a.dialPacket(ctx, DialSpec{Service: service, Host: host, Proto: ProtoUDP}, nil)
}

// dialPacket opens the UDP circuit of spec and runs it until it ends. Datagrams already
// in queue, when not nil, are the first sent (a dial listener's flow queues what its
// peer sends while the circuit is set up); nil starts an empty one.
func (a *Agent) dialPacket(ctx context.Context, spec DialSpec, queue *datagram.Queue) (*PacketConn, error) {
	own := queue == nil
	if own {
		queue = newUDPQueue()
	}
	fail := func(err error) (*PacketConn, error) {
		if own {
			queue.Close()
		}
		return nil, err
	}
	tc, cid, err := a.setUpDial(ctx, spec)
	if err != nil {
		return fail(err)
	}
	conn := tc.NetConn().(streamConn).conn
	pc := &PacketConn{a: a, in: make(chan packet, packetInbox), done: make(chan struct{}),
		local: Addr{Service: spec.Service, Identity: a.id.Name}, remote: Addr{Service: spec.Service, Identity: peerName(tc)}}
	e, err := newUDPEnd(conn, &a.udp, cid, tc, true, queue, func(msg []byte) { offer(pc.in, msg, &pc.remote, &a.udp) }, a.udpFEC, a.autoFEC())
	if err != nil {
		tc.Close()
		return fail(fmt.Errorf("agent: %w", err))
	}
	pc.e = e
	cctx, stop := context.WithCancel(a.runCtx)
	pc.stop = stop
	if !a.spawn(func() {
		defer close(pc.done)
		a.runUDPEnd(cctx, e, tc)
	}) {
		stop()
		tc.Close()
		return fail(errAgentClosed)
	}
	return pc, nil
}

// Identity is the name of the identity hosting the circuit's service.
func (c *PacketConn) Identity() string { return c.remote.Identity }

// Service is the circuit's service.
func (c *PacketConn) Service() string { return c.remote.Service }

// Read reads one datagram into p; a datagram longer than p is cut short.
func (c *PacketConn) Read(p []byte) (int, error) {
	pkt, err := receive(c.in, c.done, nil, &c.rd)
	if err != nil {
		return 0, err
	}
	return copy(p, pkt.b), nil
}

// ReadFrom is Read that also returns the service's end, RemoteAddr.
func (c *PacketConn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, err := c.Read(p)
	if err != nil {
		return 0, nil, err
	}
	return n, &c.remote, nil
}

// Write sends p as one datagram. It never blocks: datagrams wait in a short queue while
// the link is busy, the oldest dropped when it is full.
func (c *PacketConn) Write(p []byte) (int, error) {
	if len(p) > maxUDPPayload {
		return 0, errTooLarge
	}
	if !c.a.push(c.e.queue, p) {
		return 0, net.ErrClosed
	}
	c.e.touch()
	return len(p), nil
}

// WriteTo is Write; addr is ignored, as the circuit has one other end.
func (c *PacketConn) WriteTo(p []byte, _ net.Addr) (int, error) { return c.Write(p) }

// Close ends the circuit.
func (c *PacketConn) Close() error {
	c.stop()
	<-c.done
	return nil
}

// LocalAddr is this end: the service and this agent's identity.
func (c *PacketConn) LocalAddr() net.Addr { return &c.local }

// RemoteAddr is the other end: the service and the identity hosting it.
func (c *PacketConn) RemoteAddr() net.Addr { return &c.remote }

// SetDeadline sets the read deadline; writes never block.
func (c *PacketConn) SetDeadline(t time.Time) error { return c.SetReadDeadline(t) }

// SetReadDeadline makes Read fail with os.ErrDeadlineExceeded once t has passed; the
// zero time waits forever.
func (c *PacketConn) SetReadDeadline(t time.Time) error {
	c.rd.set(t)
	return nil
}

// SetWriteDeadline does nothing: writes never block.
func (c *PacketConn) SetWriteDeadline(time.Time) error { return nil }

// PacketListener is a UDP service this program hosts (ListenPacket): a net.PacketConn
// with no socket. ReadFrom returns each datagram with the *Addr of the circuit it came
// on (the dialer's identity and the circuit); WriteTo that address answers on the same
// circuit.
type PacketListener struct {
	l    *serviceListener
	in   chan packet
	addr Addr
	rd   readDeadline

	mu   sync.Mutex
	ends map[circuitKey]hostedPacketEnd
	// ended, when set, is told of each circuit once it has ended (the agent's own
	// delivery to a host address closes the circuit's socket).
	ended func(*Addr)
}

// circuitKey names one hosted UDP circuit.
type circuitKey struct {
	identity string
	circuit  uint64
}

// hostedPacketEnd is one circuit of a PacketListener.
type hostedPacketEnd struct {
	e    *udpEnd
	stop context.CancelFunc
}

func newPacketListener(l *serviceListener, ended func(*Addr)) *PacketListener {
	return &PacketListener{l: l, in: make(chan packet, packetInbox), addr: Addr{Service: l.service, Identity: l.a.id.Name}, ends: map[circuitKey]hostedPacketEnd{}, ended: ended}
}

// live reports whether the circuit at addr still runs.
func (pl *PacketListener) live(addr *Addr) bool {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	_, ok := pl.ends[circuitKey{addr.Identity, addr.Circuit}]
	return ok
}

// ListenPacket hosts the UDP service in this program, as Listen does a TCP one: it
// returns once the service is bound at the router.
func (a *Agent) ListenPacket(ctx context.Context, service string) (*PacketListener, error) {
	l, err := a.listenProgram(ctx, service, ProtoUDP)
	if err != nil {
		return nil, err
	}
	return l.packets, nil
}

// hostPacket carries one UDP circuit of a PacketListener until it ends: a program's, or
// the agent's own for a service it delivers to its host address (serveHostPackets).
func (a *Agent) hostPacket(ctx context.Context, conn *quic.Conn, cid uint64, tc *tls.Conn, l *serviceListener) error {
	pl := l.packets
	from := &Addr{Service: l.service, Identity: peerName(tc), Circuit: cid}
	e, err := newUDPEnd(conn, &a.udp, cid, tc, false, newUDPQueue(), func(msg []byte) { offer(pl.in, msg, from, &a.udp) }, a.udpFEC, a.autoFEC())
	if err != nil {
		return err
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	key := circuitKey{from.Identity, cid}
	pl.mu.Lock()
	select {
	case <-l.done:
		pl.mu.Unlock()
		return errListenerClosed
	default:
	}
	pl.ends[key] = hostedPacketEnd{e: e, stop: stop}
	pl.mu.Unlock()
	defer func() {
		pl.mu.Lock()
		delete(pl.ends, key)
		pl.mu.Unlock()
		if pl.ended != nil {
			pl.ended(from)
		}
	}()
	a.runUDPEnd(ctx, e, tc)
	return nil
}

// ReadFrom reads one datagram into p (cut short when longer) and returns the circuit it
// came on, an *Addr.
func (pl *PacketListener) ReadFrom(p []byte) (int, net.Addr, error) {
	pkt, err := receive(pl.in, pl.l.done, pl.l.a.runCtx.Done(), &pl.rd)
	if err != nil {
		return 0, nil, err
	}
	return copy(p, pkt.b), pkt.from, nil
}

// WriteTo sends p as one datagram on the circuit addr names, as ReadFrom returned it.
// It never blocks; a circuit that has ended is an error.
func (pl *PacketListener) WriteTo(p []byte, addr net.Addr) (int, error) {
	to, ok := addr.(*Addr)
	if !ok {
		return 0, fmt.Errorf("agent: write to %v: not a circuit's address", addr)
	}
	if len(p) > maxUDPPayload {
		return 0, errTooLarge
	}
	pl.mu.Lock()
	he, ok := pl.ends[circuitKey{to.Identity, to.Circuit}]
	pl.mu.Unlock()
	if !ok || !pl.l.a.push(he.e.queue, p) {
		return 0, fmt.Errorf("agent: write to %s: %w", to, errCircuitEnded)
	}
	he.e.touch()
	return len(p), nil
}

// errCircuitEnded is a write to a UDP circuit that has ended.
var errCircuitEnded = errors.New("circuit ended")

// closeAll ends every circuit of the listener.
func (pl *PacketListener) closeAll() {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	for _, he := range pl.ends {
		he.stop()
	}
}

// Close stops hosting the service and ends its circuits.
func (pl *PacketListener) Close() error {
	pl.l.a.unlisten(pl.l)
	return nil
}

// LocalAddr is the service and this agent's identity.
func (pl *PacketListener) LocalAddr() net.Addr { return &pl.addr }

// SetDeadline sets the read deadline; writes never block.
func (pl *PacketListener) SetDeadline(t time.Time) error { return pl.SetReadDeadline(t) }

// SetReadDeadline makes ReadFrom fail with os.ErrDeadlineExceeded once t has passed;
// the zero time waits forever.
func (pl *PacketListener) SetReadDeadline(t time.Time) error {
	pl.rd.set(t)
	return nil
}

// SetWriteDeadline does nothing: writes never block.
func (pl *PacketListener) SetWriteDeadline(time.Time) error { return nil }
