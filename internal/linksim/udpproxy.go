package linksim

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// SessionIdleTimeout is how long the UDP proxy keeps a client's mapping (and its
// upstream socket) without traffic in either direction, like a NAT's UDP timeout.
const SessionIdleTimeout = 2 * time.Minute

// UDP proxy tunables.
const (
	// idleSweepInterval is how often expired client mappings are looked for.
	idleSweepInterval = 5 * time.Second
	// maxDatagramSize is the largest UDP payload; read buffers are this big so nothing
	// is truncated.
	maxDatagramSize = 65535
	// socketBufferBytes is requested for every proxy socket so bursts queue in the
	// emulator, where they are counted, rather than overflowing the kernel's buffer.
	// The kernel caps it at net.core.rmem_max / wmem_max.
	socketBufferBytes = 4 << 20
	// ipv4UDPOverhead and ipv6UDPOverhead are the IP and UDP header bytes added to a
	// datagram's payload for MTU and rate decisions.
	ipv4UDPOverhead = 20 + 8
	ipv6UDPOverhead = 40 + 8
)

// UDPProxy forwards UDP datagrams between clients and one target through a Link:
// Up impairs client→target, Down impairs target→client. Each client gets its own
// upstream socket, so the target sees one peer per client and its replies find
// their way back.
type UDPProxy struct {
	link   *Link
	ln     *net.UDPConn
	target *net.UDPAddr
	up     *pipe
	down   *pipe
	epoch  time.Time

	idleTimeout time.Duration
	sweepEvery  time.Duration

	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error

	mu     sync.Mutex
	closed bool
	// stopAfter unhooks Close from the caller's context.
	stopAfter func() bool
	sessions  map[netip.AddrPort]*session
}

// session is one client's mapping: its address and the upstream socket standing in
// for it towards the target.
type session struct {
	client netip.AddrPort
	// conn is replaced by Rebind; the old one is closed.
	conn atomic.Pointer[net.UDPConn]
	// lastSeen is the time of the last packet either way, in nanoseconds after the
	// proxy's epoch.
	lastSeen atomic.Int64
	// stranded: Strand cut this mapping, whose packets are dropped both ways.
	stranded atomic.Bool
}

// proxyTimers are the proxy's idle-expiry settings; tests shorten them.
type proxyTimers struct {
	idleTimeout, sweepEvery time.Duration
}

// NewUDPProxy listens on listenAddr (such as "127.0.0.1:0") and forwards to target
// through link until ctx ends or Close is called.
func NewUDPProxy(ctx context.Context, listenAddr, target string, link *Link) (*UDPProxy, error) {
	return newUDPProxy(ctx, listenAddr, target, link, proxyTimers{SessionIdleTimeout, idleSweepInterval})
}

func newUDPProxy(ctx context.Context, listenAddr, target string, link *Link, timers proxyTimers) (*UDPProxy, error) {
	if link == nil {
		return nil, errNilLink
	}
	taddr, err := net.ResolveUDPAddr("udp", target)
	if err != nil {
		return nil, fmt.Errorf("linksim: target: %w", err)
	}
	laddr, err := net.ResolveUDPAddr("udp", listenAddr)
	if err != nil {
		return nil, fmt.Errorf("linksim: listen address: %w", err)
	}
	ln, err := net.ListenUDP("udp", laddr)
	if err != nil {
		return nil, fmt.Errorf("linksim: %w", err)
	}
	tuneBuffers(ln)

	overhead := ipv6UDPOverhead
	if taddr.IP.To4() != nil {
		overhead = ipv4UDPOverhead
	}
	p := &UDPProxy{
		link:        link,
		ln:          ln,
		target:      taddr,
		epoch:       time.Now(),
		idleTimeout: timers.idleTimeout,
		sweepEvery:  timers.sweepEvery,
		sessions:    make(map[netip.AddrPort]*session),
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.up = newPipe(link, &link.up, overhead, rand.Uint64(), p.deliverUp)
	p.down = newPipe(link, &link.down, overhead, rand.Uint64(), p.deliverDown)
	p.wg.Add(4)
	go func() { defer p.wg.Done(); p.up.run(p.ctx) }()
	go func() { defer p.wg.Done(); p.down.run(p.ctx) }()
	go p.readClients()
	go p.expireIdle()
	// Under mu: with ctx already done, Close may run at once and reads stopAfter.
	p.mu.Lock()
	p.stopAfter = context.AfterFunc(ctx, func() { p.Close() })
	p.mu.Unlock()
	return p, nil
}

// Addr returns the address clients send to.
func (p *UDPProxy) Addr() net.Addr { return p.ln.LocalAddr() }

// Stats returns a snapshot of the proxy's counters.
func (p *UDPProxy) Stats() Stats {
	return Stats{Up: p.up.c.snapshot(), Down: p.down.c.snapshot()}
}

// Close stops forwarding, closes every socket and waits for the proxy's goroutines.
// Packets still in flight are discarded. Close is safe to call more than once.
func (p *UDPProxy) Close() error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		sessions := p.sessions
		p.sessions = nil
		stopAfter := p.stopAfter
		p.mu.Unlock()
		stopAfter()

		p.cancel()
		p.closeErr = p.ln.Close()
		for _, s := range sessions {
			s.conn.Load().Close()
		}
		p.wg.Wait()
	})
	return p.closeErr
}

// Rebind gives every client a new upstream socket, and so a new source port towards
// the target, as when a device roams to a new address. Clients keep talking to the
// same proxy address; replies the target sends to the old port are lost.
func (p *UDPProxy) Rebind() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return net.ErrClosed
	}
	var errs []error
	for _, s := range p.sessions {
		c, err := p.dialTarget()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.conn.Swap(c).Close()
		p.wg.Add(1)
		go p.readTarget(s, c)
	}
	return errors.Join(errs...)
}

// Strand cuts every client mapping that exists now: from now on their packets are
// dropped both ways, for as long as the client keeps its source address, while a client
// that starts afresh from a new address gets a new mapping and passes. It is the path of
// a device whose old connection died where a new one gets through (a NAT that lost its
// state and blocks the old port, a radio that re-associated): a peer of the old
// connection never hears it close. Stranded packets count as blackout drops.
func (p *UDPProxy) Strand() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.sessions {
		s.stranded.Store(true)
	}
}

// sessionCount returns the number of live client mappings.
func (p *UDPProxy) sessionCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.sessions)
}

func (p *UDPProxy) dialTarget() (*net.UDPConn, error) {
	c, err := net.DialUDP("udp", nil, p.target)
	if err != nil {
		return nil, fmt.Errorf("linksim: upstream socket: %w", err)
	}
	tuneBuffers(c)
	return c, nil
}

func tuneBuffers(c *net.UDPConn) {
	// Best effort: a smaller buffer only means bursts may overflow in the kernel.
	_ = c.SetReadBuffer(socketBufferBytes)
	_ = c.SetWriteBuffer(socketBufferBytes)
}

// session returns the mapping for client, creating it and its upstream socket on the
// client's first packet. It returns net.ErrClosed once the proxy is closed.
func (p *UDPProxy) session(client netip.AddrPort) (*session, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, net.ErrClosed
	}
	if s, ok := p.sessions[client]; ok {
		return s, nil
	}
	c, err := p.dialTarget()
	if err != nil {
		return nil, err
	}
	s := &session{client: client}
	s.conn.Store(c)
	p.sessions[client] = s
	p.wg.Add(1)
	go p.readTarget(s, c)
	return s, nil
}

func (p *UDPProxy) touch(s *session) { s.lastSeen.Store(int64(time.Since(p.epoch))) }

// readClients reads datagrams from clients and submits them to the Up pipe.
func (p *UDPProxy) readClients() {
	defer p.wg.Done()
	buf := make([]byte, maxDatagramSize)
	for {
		n, from, err := p.ln.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || p.ctx.Err() != nil {
				return
			}
			continue // transient, such as an ICMP error reported on the socket
		}
		s, err := p.session(from)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // out of sockets: the datagram is lost, as a full NAT would lose it
		}
		if s.stranded.Load() {
			p.up.dropStranded(n)
			continue
		}
		p.touch(s)
		pkt := newPacket(buf[:n])
		pkt.dst = s
		p.up.submit(pkt)
	}
}

// readTarget reads the target's replies on one upstream socket and submits them to
// the Down pipe, until the socket is closed by Rebind, expiry or Close.
func (p *UDPProxy) readTarget(s *session, c *net.UDPConn) {
	defer p.wg.Done()
	buf := make([]byte, maxDatagramSize)
	for {
		n, err := c.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || p.ctx.Err() != nil {
				return
			}
			// A connected UDP socket reports ICMP port unreachable as ECONNREFUSED
			// on the next read; the target may simply not be listening yet.
			continue
		}
		if s.stranded.Load() {
			p.down.dropStranded(n)
			continue
		}
		p.touch(s)
		pkt := newPacket(buf[:n])
		pkt.dst = s
		p.down.submit(pkt)
	}
}

func (p *UDPProxy) deliverUp(pkt *packet) error {
	_, err := pkt.dst.(*session).conn.Load().Write(pkt.data)
	return err
}

func (p *UDPProxy) deliverDown(pkt *packet) error {
	_, err := p.ln.WriteToUDPAddrPort(pkt.data, pkt.dst.(*session).client)
	return err
}

// expireIdle drops mappings that have seen no traffic for idleTimeout.
func (p *UDPProxy) expireIdle() {
	defer p.wg.Done()
	t := time.NewTicker(p.sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-t.C:
		}
		cutoff := int64(time.Since(p.epoch) - p.idleTimeout)
		p.mu.Lock()
		for k, s := range p.sessions {
			if s.lastSeen.Load() < cutoff {
				delete(p.sessions, k)
				s.conn.Load().Close()
			}
		}
		p.mu.Unlock()
	}
}
