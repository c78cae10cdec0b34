package fecconn

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// maxRead is the read buffer of the socket: any UDP payload fits.
const maxRead = 1 << 16

// Conn is a net.PacketConn that protects the QUIC packets it sends with
// Reed–Solomon parity and rebuilds, in order, those lost on the way in. Give it to
// quic-go as quic.Transport{Conn: c}. It owns the socket it wraps: Close closes it.
// Its methods are safe for concurrent use.
type Conn struct {
	pc  net.PacketConn
	cfg Config

	mu    sync.Mutex
	peers map[peerKey]*peer

	out       chan delivery // released packets waiting for ReadFrom
	scratch   *decodeScratch
	readDL    *deadline
	closed    chan struct{}
	closeOnce sync.Once
	closeErr  error
	wg        sync.WaitGroup
	bufs      sync.Pool // *[]byte of cap MaxPacket
	stats     counters
	epoch     time.Time
}

// delivery is one packet (or read error) for ReadFrom.
type delivery struct {
	buf  *[]byte
	addr net.Addr
	err  error
}

// peerKey names a remote address: its address and port for UDP, else its string.
type peerKey struct {
	ap  netip.AddrPort
	str string
}

func keyOf(addr net.Addr) peerKey {
	if u, ok := addr.(*net.UDPAddr); ok {
		ap := u.AddrPort()
		return peerKey{ap: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())}
	}
	return peerKey{str: addr.Network() + "/" + addr.String()}
}

// peer is the shim state of one remote address: a sender and a receiver, each with
// its own lock and timer.
type peer struct {
	addr   net.Addr
	last   atomic.Int64 // nanoseconds after the Conn's epoch of the last packet either way
	encode atomic.Bool  // protect packets sent to this peer
	dead   atomic.Bool  // forgotten: timers do nothing

	txMu    sync.Mutex
	tx      *sender
	txTimer *time.Timer

	rxMu    sync.Mutex
	rx      *receiver
	rxTimer *time.Timer
	rxDue   time.Time // when rxTimer fires; zero when stopped
}

// Wrap returns a Conn that sends and receives through pc. Start nothing else on pc:
// the Conn reads it from its own goroutine until Close.
func Wrap(pc net.PacketConn, cfg Config) (*Conn, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	c := &Conn{
		pc:      pc,
		cfg:     cfg,
		peers:   make(map[peerKey]*peer),
		out:     make(chan delivery, cfg.QueuePackets),
		scratch: newDecodeScratch(cfg.MaxPacket - Overhead),
		readDL:  newDeadline(),
		closed:  make(chan struct{}),
		epoch:   time.Now(),
	}
	c.bufs.New = func() any { b := make([]byte, cfg.MaxPacket); return &b }
	c.wg.Add(2)
	go c.readLoop()
	go c.sweepLoop()
	return c, nil
}

// Config returns the Conn's configuration with defaults filled in.
func (c *Conn) Config() Config { return c.cfg }

// Stats returns a snapshot of the Conn's counters.
func (c *Conn) Stats() Stats {
	s := c.stats.snapshot()
	c.mu.Lock()
	s.Peers = uint64(len(c.peers))
	c.mu.Unlock()
	return s
}

// ReadFrom returns the next packet released: a QUIC packet rebuilt or received
// through the shim, in sequence per peer, or any other packet as it came.
func (c *Conn) ReadFrom(b []byte) (int, net.Addr, error) {
	dl := c.readDL.wait()
	if isClosed(dl) {
		return 0, nil, os.ErrDeadlineExceeded
	}
	select {
	case d := <-c.out:
		return c.take(b, d)
	case <-c.closed:
		return 0, nil, net.ErrClosed
	case <-dl:
		return 0, nil, os.ErrDeadlineExceeded
	}
}

func (c *Conn) take(b []byte, d delivery) (int, net.Addr, error) {
	if d.err != nil {
		return 0, nil, d.err
	}
	n := copy(b, *d.buf)
	if cap(*d.buf) == c.cfg.MaxPacket {
		c.bufs.Put(d.buf)
	}
	return n, d.addr, nil
}

// WriteTo sends b to addr: protected if it is a QUIC packet of at most
// MaxPacket-Overhead bytes going to a peer the Conn encodes for, unchanged otherwise.
// It returns len(b) when the packet, and any parity it completed, were handed to the
// socket.
func (c *Conn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if !isQUIC(b) || len(b) > c.cfg.MaxPacket-Overhead {
		c.stats.passedOut.Add(1)
		return c.pc.WriteTo(b, addr)
	}
	p := c.peer(addr, c.cfg.Initiate)
	if p == nil || !p.encode.Load() {
		c.stats.passedOut.Add(1)
		return c.pc.WriteTo(b, addr)
	}
	c.touch(p)
	p.txMu.Lock()
	defer p.txMu.Unlock()
	if p.tx == nil {
		tx, err := newSender(c.cfg, &c.stats)
		if err != nil {
			return 0, err
		}
		p.tx = tx
	}
	if err := p.tx.send(b, time.Now(), c.emitter(addr)); err != nil {
		return 0, fmt.Errorf("fecconn: write: %w", err)
	}
	c.armFlush(p)
	return len(b), nil
}

func (c *Conn) emitter(addr net.Addr) emitFunc {
	return func(pkt []byte) error {
		_, err := c.pc.WriteTo(pkt, addr)
		return err
	}
}

// armFlush sets the peer's flush timer to its open block's deadline. Called with
// txMu held.
func (c *Conn) armFlush(p *peer) {
	dl, open := p.tx.deadline()
	if !open {
		return
	}
	d := time.Until(dl)
	if p.txTimer == nil {
		p.txTimer = time.AfterFunc(d, func() { c.flush(p) })
		return
	}
	p.txTimer.Reset(d)
}

// flush sends the parity of the peer's open block if its flush delay has passed.
func (c *Conn) flush(p *peer) {
	if p.dead.Load() {
		return
	}
	p.txMu.Lock()
	defer p.txMu.Unlock()
	if p.tx == nil {
		return
	}
	// A write error here has no caller to go to; the block's packets were sent and
	// QUIC recovers what its parity would have.
	_ = p.tx.poll(time.Now(), c.emitter(p.addr))
	c.armFlush(p)
}

// readLoop reads the socket until it is closed: shim packets go to their peer's
// receiver, others straight to the read queue.
func (c *Conn) readLoop() {
	defer c.wg.Done()
	buf := make([]byte, maxRead)
	for {
		n, addr, err := c.pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || isClosed(c.closed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue // a deadline someone set on the socket; ours are on the Conn
			}
			c.push(delivery{err: err})
			continue
		}
		pkt := buf[:n]
		if n == 0 || pkt[0] != Magic {
			c.stats.passedIn.Add(1)
			c.release(pkt, addr)
			continue
		}
		c.receive(pkt, addr)
	}
}

// receive hands a shim packet to its peer's receiver.
func (c *Conn) receive(pkt []byte, addr net.Addr) {
	if len(pkt) < 2 || len(pkt) > c.cfg.MaxPacket {
		c.stats.malformed.Add(1)
		return
	}
	if kind(pkt) != kindData && kind(pkt) != kindParity {
		c.stats.malformed.Add(1)
		return
	}
	p := c.peer(addr, true)
	if p == nil {
		return
	}
	c.touch(p)
	p.rxMu.Lock()
	defer p.rxMu.Unlock()
	if p.rx == nil {
		p.rx = newReceiver(c.cfg, c.scratch, func(b []byte) { c.release(b, p.addr) }, &c.stats)
	}
	if err := p.rx.add(pkt, time.Now()); err != nil {
		c.stats.malformed.Add(1)
		return
	}
	if kind(pkt) == kindData && isQUIC(pkt[dataHeaderLen:]) {
		// The peer speaks the shim: answer in kind.
		p.encode.Store(true)
	}
	c.armHold(p)
}

// armHold sets the peer's hold timer to its receiver's deadline. Called with rxMu
// held.
func (c *Conn) armHold(p *peer) {
	dl := p.rx.deadline
	if dl.Equal(p.rxDue) {
		return
	}
	p.rxDue = dl
	if dl.IsZero() {
		if p.rxTimer != nil {
			p.rxTimer.Stop()
		}
		return
	}
	d := time.Until(dl)
	if p.rxTimer == nil {
		p.rxTimer = time.AfterFunc(d, func() { c.holdExpired(p) })
		return
	}
	p.rxTimer.Reset(d)
}

func (c *Conn) holdExpired(p *peer) {
	if p.dead.Load() {
		return
	}
	p.rxMu.Lock()
	defer p.rxMu.Unlock()
	p.rxDue = time.Time{}
	p.rx.tick(time.Now())
	c.armHold(p)
}

// release copies a packet into the read queue, or drops it if the queue is full.
func (c *Conn) release(pkt []byte, addr net.Addr) {
	var b *[]byte
	if len(pkt) <= c.cfg.MaxPacket {
		b = c.bufs.Get().(*[]byte)
		*b = (*b)[:len(pkt)]
	} else {
		nb := make([]byte, len(pkt))
		b = &nb
	}
	copy(*b, pkt)
	if !c.push(delivery{buf: b, addr: addr}) {
		c.stats.queueDrops.Add(1)
	}
}

func (c *Conn) push(d delivery) bool {
	select {
	case c.out <- d:
		return true
	default:
		return false
	}
}

// peer returns the state of addr's peer, making it if create is set (forgetting the
// least recently heard peer if MaxPeers are known), or nil.
func (c *Conn) peer(addr net.Addr, create bool) *peer {
	k := keyOf(addr)
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.peers[k]; ok {
		return p
	}
	if !create || isClosed(c.closed) {
		return nil
	}
	if len(c.peers) >= c.cfg.MaxPeers {
		var oldest peerKey
		var oldestAt int64
		first := true
		for k, p := range c.peers {
			if at := p.last.Load(); first || at < oldestAt {
				oldest, oldestAt, first = k, at, false
			}
		}
		c.forget(oldest)
		c.stats.peersEvicted.Add(1)
	}
	p := &peer{addr: addr}
	p.encode.Store(c.cfg.Initiate)
	c.touch(p)
	c.peers[k] = p
	return p
}

func (c *Conn) touch(p *peer) { p.last.Store(int64(time.Since(c.epoch))) }

// forget drops a peer and stops its timers. Called with mu held.
func (c *Conn) forget(k peerKey) {
	p := c.peers[k]
	delete(c.peers, k)
	p.dead.Store(true)
	// Lock order: Conn.mu, then a peer's locks; the peer's own paths never take mu
	// while holding theirs.
	p.txMu.Lock()
	if p.txTimer != nil {
		p.txTimer.Stop()
	}
	p.txMu.Unlock()
	p.rxMu.Lock()
	if p.rxTimer != nil {
		p.rxTimer.Stop()
	}
	p.rxMu.Unlock()
}

// sweepLoop forgets peers idle longer than IdleTimeout.
func (c *Conn) sweepLoop() {
	defer c.wg.Done()
	t := time.NewTicker(max(c.cfg.IdleTimeout/sweepDivisor, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-c.closed:
			return
		case <-t.C:
		}
		cutoff := int64(time.Since(c.epoch) - c.cfg.IdleTimeout)
		c.mu.Lock()
		for k, p := range c.peers {
			if p.last.Load() < cutoff {
				c.forget(k)
				c.stats.peersExpired.Add(1)
			}
		}
		c.mu.Unlock()
	}
}

// Close closes the socket, stops the Conn's goroutines and timers, and makes pending
// and future reads return net.ErrClosed. Packets held for release are dropped.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		close(c.closed)
		c.closeErr = c.pc.Close()
		c.wg.Wait()
		c.mu.Lock()
		for k := range c.peers {
			c.forget(k)
		}
		c.mu.Unlock()
	})
	return c.closeErr
}

// LocalAddr returns the socket's address.
func (c *Conn) LocalAddr() net.Addr { return c.pc.LocalAddr() }

// SetDeadline sets the read and write deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	c.readDL.set(t)
	return c.pc.SetWriteDeadline(t)
}

// SetReadDeadline sets the deadline of ReadFrom; quic-go uses it to stop reading.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.readDL.set(t)
	return nil
}

// SetWriteDeadline sets the socket's write deadline.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.pc.SetWriteDeadline(t) }

// SetReadBuffer sets the socket's receive buffer if it has one; quic-go asks for a
// large one. It returns an error if the socket has none.
func (c *Conn) SetReadBuffer(n int) error {
	if s, ok := c.pc.(interface{ SetReadBuffer(int) error }); ok {
		return s.SetReadBuffer(n)
	}
	return errors.New("fecconn: socket has no receive buffer to set")
}

// SetWriteBuffer sets the socket's send buffer if it has one.
func (c *Conn) SetWriteBuffer(n int) error {
	if s, ok := c.pc.(interface{ SetWriteBuffer(int) error }); ok {
		return s.SetWriteBuffer(n)
	}
	return errors.New("fecconn: socket has no send buffer to set")
}

var _ net.PacketConn = (*Conn)(nil)
