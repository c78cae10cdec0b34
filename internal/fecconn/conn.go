package fecconn

import (
	"encoding/binary"
	"errors"
	"math"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/umbranet/umbra/internal/fec"
)

// Prefix layout; doc.go draws it.
const (
	kindHello byte = 0x10
	kindBlock byte = 0x11
	prefixLen      = 6
	// quicFixedBit is set in the first byte of every QUIC packet (RFC 9000, 17.2 and
	// 17.3) and clear in a prefix's kind; the long-header bit is clear too.
	quicFixedBit  = 0x40
	quicLongBit   = 0x80
	readBufferLen = 64 << 10
)

// Defaults of Config.
const (
	// DefaultShards is the packets per block, data and parity: the most internal/fec
	// takes. Wide blocks need the least parity for a given loss (15 in 64 at 10 %, where
	// blocks of 16 would need 7), and at a radio's hundreds of packets a second a block
	// fills in well under a round trip.
	DefaultShards = fec.MaxShards
	// DefaultResidualLoss is the share of packets a block may leave lost, for QUIC to
	// repair: 1 in 10,000, a hole every few seconds on a busy radio.
	DefaultResidualLoss = 1e-3
	// DefaultFlushDelay closes a block that has not filled, so its parity follows its
	// packets within 20 ms: an acknowledgement or a telemetry message is protected too.
	DefaultFlushDelay = 60 * time.Millisecond
	// DefaultHelloEvery is how often a Conn says hello beside the plain packets it sends
	// a peer not yet heard speaking the prefix.
	DefaultHelloEvery = 100 * time.Millisecond
	// DefaultMaxPeers bounds the peers a Conn keeps state for; past it a new address
	// gets plain QUIC until an idle peer is forgotten.
	DefaultMaxPeers = 1024
	// DefaultPeerIdle forgets a peer neither heard from nor sent to for this long.
	DefaultPeerIdle = 5 * time.Minute
	// minData is the fewest messages per block whatever the loss: past 75 % parity the
	// link is lost anyway.
	minData = 16
	// lossWindow is how many sequence numbers make one loss sample; lossGain is the
	// weight of a sample in the reported loss (an average over about four windows).
	lossWindow = 256
	lossGain   = 0.125
	// lossSamples is about how many packets the reported loss averages over (lossWindow
	// / lossGain); the code is chosen for the reported loss plus two standard errors of
	// such an average, so a sender that hears 10 % plans for 11.3 %.
	lossSamples = lossWindow / lossGain
	// initialLoss is the loss a Conn reports of a peer's packets before it has counted a
	// window of them: a radio's usual, so a new connection's first blocks are protected
	// as a lossy link needs, and a clean link sheds the parity after lossWindow packets.
	initialLoss = 0.0
	// maxMessage is the longest packet a block takes: quic-go's largest (1,452 bytes)
	// with room to spare. A longer one is sent plain.
	maxMessage = 1500
	// decoderBlocks is how many blocks a peer's decoder tracks: a second of blocks at a
	// radio's rate, with buffers made only as shards wait.
	decoderBlocks = 16
)

// Config sets a Conn; the zero value means every default.
type Config struct {
	// Shards is the packets per block, data and parity, 2 to internal/fec's MaxShards.
	Shards int
	// ResidualLoss is the share of packets the chosen code may leave lost.
	ResidualLoss float64
	// FlushDelay closes a block that has not filled.
	FlushDelay time.Duration
	// HelloEvery paces the hellos to a peer not yet heard speaking the prefix.
	HelloEvery time.Duration
	// MaxPeers bounds the peers with state; PeerIdle forgets a silent one.
	MaxPeers int
	PeerIdle time.Duration
}

func (c Config) withDefaults() Config {
	if c.Shards == 0 {
		c.Shards = DefaultShards
	}
	c.Shards = min(max(c.Shards, minData+1), fec.MaxShards)
	if c.ResidualLoss == 0 {
		c.ResidualLoss = DefaultResidualLoss
	}
	if c.FlushDelay == 0 {
		c.FlushDelay = DefaultFlushDelay
	}
	if c.HelloEvery == 0 {
		c.HelloEvery = DefaultHelloEvery
	}
	if c.MaxPeers == 0 {
		c.MaxPeers = DefaultMaxPeers
	}
	if c.PeerIdle == 0 {
		c.PeerIdle = DefaultPeerIdle
	}
	return c
}

// Stats counts what a Conn has done since it was made.
type Stats struct {
	// Protected counts packets sent inside blocks, Parity the parity packets added.
	Protected, Parity uint64
	// Recovered counts packets rebuilt from parity and handed to the reader.
	Recovered uint64
	// Plain counts packets sent without the prefix (to peers not heard speaking it).
	Plain uint64
	// Unrecovered counts packets of blocks that closed without them: QUIC repairs those.
	Unrecovered uint64
}

// Conn wraps a packet socket; quic-go reads and writes through it. ReadFrom must be
// called from one goroutine at a time (quic-go's read loop); WriteTo from any.
type Conn struct {
	net.PacketConn
	cfg   Config
	codes [256]code // by reported loss

	mu    sync.Mutex
	peers map[netip.AddrPort]*peer

	// Read side: quic-go's read loop only.
	rbuf      []byte
	queue     [][]byte
	queueAddr []net.Addr
	lastSweep time.Time

	protected, parity, recovered, plain, unrecovered atomic.Uint64
}

// code is a block shape: k data and m parity packets.
type code struct{ k, m int }

// peer is one remote address's state.
type peer struct {
	addr     net.Addr
	capable  atomic.Bool   // heard a prefixed packet from it
	reported atomic.Uint32 // loss of our packets it reports, in 256ths
	seen     atomic.Uint32 // loss of its packets we see, in 256ths
	used     atomic.Int64  // unix nanoseconds of the last packet either way

	// Send side, under mu.
	mu        sync.Mutex
	enc       *fec.Encoder
	shape     code
	seq       uint16
	lastHello time.Time
	wbuf      []byte
	timer     *time.Timer
	armed     bool
	closed    bool

	// Read side: the read loop only.
	dec     *fec.Decoder
	rx      seqCounter
	loss    float64
	samples int
}

// lossByte is a loss share in 256ths, as a prefix carries it.
func lossByte(loss float64) uint32 { return uint32(min(255, math.Round(loss*256))) }

// New wraps pc. Every packet it sends to a peer that speaks the prefix is protected.
func New(pc net.PacketConn, cfg Config) *Conn {
	cfg = cfg.withDefaults()
	c := &Conn{PacketConn: pc, cfg: cfg, peers: map[netip.AddrPort]*peer{}, rbuf: make([]byte, readBufferLen)}
	for v := range c.codes {
		p := float64(v) / 256
		c.codes[v] = chooseCode(p+math.Sqrt(p*(1-p)/lossSamples), cfg.Shards, cfg.ResidualLoss)
	}
	return c
}

// chooseCode returns the shape of n packets with the fewest parity packets that leaves
// a packet lost with probability at most residual when each is lost with probability
// p: a data packet is lost only if it is and at least m of the other n−1 are too.
func chooseCode(p float64, n int, residual float64) code {
	for m := 1; m <= n-minData; m++ {
		if p*binomialTail(n-1, p, m) <= residual {
			return code{n - m, m}
		}
	}
	return code{minData, n - minData}
}

// binomialTail is P(X ≥ m) for X ~ Binomial(n, p).
func binomialTail(n int, p float64, m int) float64 {
	if p <= 0 {
		return 0
	}
	var below float64
	for i := range m {
		lc, _ := math.Lgamma(float64(n + 1))
		li, _ := math.Lgamma(float64(i + 1))
		lr, _ := math.Lgamma(float64(n - i + 1))
		below += math.Exp(lc - li - lr + float64(i)*math.Log(p) + float64(n-i)*math.Log1p(-p))
	}
	return max(0, 1-below)
}

// Stats returns the counters so far.
func (c *Conn) Stats() Stats {
	return Stats{Protected: c.protected.Load(), Parity: c.parity.Load(), Recovered: c.recovered.Load(), Plain: c.plain.Load(), Unrecovered: c.unrecovered.Load()}
}

// Close stops the flush timers and closes the socket.
func (c *Conn) Close() error {
	c.mu.Lock()
	for _, p := range c.peers {
		p.stop()
	}
	c.mu.Unlock()
	return c.PacketConn.Close()
}

// SetReadBuffer and SetWriteBuffer size the socket's buffers, as quic-go asks.
func (c *Conn) SetReadBuffer(n int) error {
	if s, ok := c.PacketConn.(interface{ SetReadBuffer(int) error }); ok {
		return s.SetReadBuffer(n)
	}
	return errors.ErrUnsupported
}

func (c *Conn) SetWriteBuffer(n int) error {
	if s, ok := c.PacketConn.(interface{ SetWriteBuffer(int) error }); ok {
		return s.SetWriteBuffer(n)
	}
	return errors.ErrUnsupported
}

// ReadFrom returns the next QUIC packet: one that came plain or inside a block, or one
// rebuilt from a block's parity. Hellos, parity and malformed prefixed packets are
// taken in and not returned.
func (c *Conn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		if len(c.queue) > 0 {
			msg, addr := c.queue[0], c.queueAddr[0]
			c.queue, c.queueAddr = c.queue[1:], c.queueAddr[1:]
			return copy(b, msg), addr, nil
		}
		n, addr, err := c.PacketConn.ReadFrom(c.rbuf)
		if err != nil || n == 0 || c.rbuf[0]&(quicFixedBit|quicLongBit) != 0 {
			return copy(b, c.rbuf[:n]), addr, err
		}
		pkt := c.rbuf[:n]
		if n < prefixLen || pkt[0] != kindHello && pkt[0] != kindBlock {
			continue
		}
		now := time.Now()
		p := c.peerFor(addr, now)
		if p == nil {
			continue
		}
		p.heard(pkt, now)
		if pkt[0] == kindHello {
			continue
		}
		if p.dec == nil {
			if p.dec, err = fec.NewDecoder(fec.Config{K: 48, M: 16, MaxMessage: maxMessage, Blocks: decoderBlocks, FlushDelay: c.cfg.FlushDelay}); err != nil {
				continue
			}
		}
		before := p.dec.Stats()
		msgs, err := p.dec.Add(pkt[prefixLen:], now)
		if err != nil && !errors.Is(err, fec.ErrCorrupt) {
			continue
		}
		after := p.dec.Stats()
		c.recovered.Add(after.Recovered - before.Recovered)
		c.unrecovered.Add(after.Lost - before.Lost)
		for _, msg := range msgs {
			c.queue = append(c.queue, append([]byte(nil), msg...))
			c.queueAddr = append(c.queueAddr, addr)
		}
		if now.Sub(c.lastSweep) > c.cfg.PeerIdle/4 {
			c.lastSweep = now
			c.sweep(now)
		}
	}
}

// heard takes in a prefixed packet's prefix: the peer speaks it, reports our loss, and
// numbers its packets.
func (p *peer) heard(pkt []byte, now time.Time) {
	p.capable.Store(true)
	p.reported.Store(uint32(pkt[1]))
	p.used.Store(now.UnixNano())
	owd := int16(uint16(now.UnixMilli()) - binary.BigEndian.Uint16(pkt[4:]))
	if sample, ok := p.rx.add(binary.BigEndian.Uint16(pkt[2:]), owd, now); ok {
		if p.samples == 0 {
			p.loss = sample
		} else {
			p.loss += lossGain * (sample - p.loss)
		}
		p.samples++
		p.seen.Store(lossByte(p.loss))
	}
}

// WriteTo sends b to addr: inside a block, with the block's parity when it closes, to
// a peer that speaks the prefix; plain, with a hello now and then, to any other.
func (c *Conn) WriteTo(b []byte, addr net.Addr) (int, error) {
	now := time.Now()
	p := c.peerFor(addr, now)
	if p == nil || len(b) > maxMessage {
		c.plain.Add(1)
		return c.PacketConn.WriteTo(b, addr)
	}
	p.used.Store(now.UnixNano())
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.capable.Load() {
		if now.Sub(p.lastHello) >= c.cfg.HelloEvery {
			p.lastHello = now
			p.send(c, kindHello, nil)
		}
		c.plain.Add(1)
		return c.PacketConn.WriteTo(b, addr)
	}
	if p.enc == nil || p.enc.Pending() == 0 {
		if err := p.reshape(c, c.codes[p.reported.Load()]); err != nil {
			c.plain.Add(1)
			return c.PacketConn.WriteTo(b, addr)
		}
	}
	pkts, err := p.enc.Add(b, now)
	if err != nil {
		c.plain.Add(1)
		return c.PacketConn.WriteTo(b, addr)
	}
	var werr error
	for _, pkt := range pkts {
		if err := p.send(c, kindBlock, pkt); err != nil && werr == nil {
			werr = err
		}
		if pkt[2] >= pkt[3] { // a parity shard: index ≥ K
			c.parity.Add(1)
		}
	}
	c.protected.Add(1)
	p.arm(c, now)
	if werr != nil {
		return 0, werr
	}
	return len(b), nil
}

// reshape gives the peer's encoder the code for the loss it reports, making the
// encoder on first use; the caller holds p.mu and no block is open.
func (p *peer) reshape(c *Conn, want code) error {
	if p.enc == nil {
		enc, err := fec.NewEncoder(fec.Config{K: want.k, M: want.m, MaxMessage: maxMessage, FlushDelay: c.cfg.FlushDelay, Proportional: true})
		if err != nil {
			return err
		}
		p.enc, p.shape = enc, want
		return nil
	}
	if want == p.shape {
		return nil
	}
	if _, err := p.enc.Reshape(want.k, want.m); err != nil {
		return err
	}
	p.shape = want
	return nil
}

// send writes one packet to the peer behind a prefix; the caller holds p.mu.
func (p *peer) send(c *Conn, kind byte, pkt []byte) error {
	need := prefixLen + len(pkt)
	if cap(p.wbuf) < need {
		p.wbuf = make([]byte, prefixLen+maxMessage+fec.PacketOverhead)
	}
	w := p.wbuf[:need]
	w[0], w[1] = kind, byte(p.seen.Load())
	binary.BigEndian.PutUint16(w[2:], p.seq)
	binary.BigEndian.PutUint16(w[4:], uint16(time.Now().UnixMilli()))
	p.seq++
	copy(w[prefixLen:], pkt)
	_, err := c.PacketConn.WriteTo(w, p.addr)
	return err
}

// arm sets the flush timer for the open block's deadline; the caller holds p.mu.
func (p *peer) arm(c *Conn, now time.Time) {
	dl, ok := p.enc.Deadline()
	if !ok || p.armed || p.closed {
		return
	}
	p.armed = true
	if p.timer == nil {
		p.timer = time.AfterFunc(dl.Sub(now), func() { p.flush(c) })
		return
	}
	p.timer.Reset(dl.Sub(now))
}

// flush sends the open block's parity once its flush delay has passed.
func (p *peer) flush(c *Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.armed = false
	if p.closed {
		return
	}
	now := time.Now()
	for _, pkt := range p.enc.Poll(now) {
		if p.send(c, kindBlock, pkt) == nil {
			c.parity.Add(1)
		}
	}
	p.arm(c, now)
}

func (p *peer) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	if p.timer != nil {
		p.timer.Stop()
	}
}

// peerFor returns addr's state, made if new; nil when MaxPeers are kept and none idle.
func (c *Conn) peerFor(addr net.Addr, now time.Time) *peer {
	key, ok := addrPort(addr)
	if !ok {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.peers[key]; p != nil {
		return p
	}
	if len(c.peers) >= c.cfg.MaxPeers {
		c.sweepLocked(now)
		if len(c.peers) >= c.cfg.MaxPeers {
			return nil
		}
	}
	p := &peer{addr: addr}
	p.used.Store(now.UnixNano())
	p.seen.Store(lossByte(initialLoss))
	c.peers[key] = p
	return p
}

// sweep forgets peers idle for PeerIdle.
func (c *Conn) sweep(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sweepLocked(now)
}

func (c *Conn) sweepLocked(now time.Time) {
	for k, p := range c.peers {
		if now.Sub(time.Unix(0, p.used.Load())) > c.cfg.PeerIdle {
			p.stop()
			delete(c.peers, k)
		}
	}
}

func addrPort(addr net.Addr) (netip.AddrPort, bool) {
	if u, ok := addr.(*net.UDPAddr); ok {
		ap := u.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
	}
	ap, err := netip.ParseAddrPort(addr.String())
	return ap, err == nil
}

// seqCounter measures the random loss of a peer's packets from the gaps in their
// sequence numbers, one sample per lossWindow numbers. It counts gaps, not the numbers
// missing: a queue that overflowed (the link was congested) or a fade drops a run of
// packets at once, which no block survives and parity spent on it would only add to
// the congestion, while random loss at p leaves gaps of one packet at a rate of about
// p(1−p). So a run of losses counts as one, and a sample is the share of gaps.
type seqCounter struct {
	started       bool
	base, highest uint16
	received      int
	gaps          int
	// Least one-way delay (sender's clock against ours, so only differences count) in
	// this and the previous delayWindow: the path without a queue.
	minDelay, prevMinDelay int16
	delayFrom              time.Time
}

// queuedGap is the queueing delay past which a gap is taken for a queue's overflow, not
// random loss: the packets are waiting behind others, so the queue was near full.
const queuedGap = 60 // ms

// delayWindow is how long a least delay is remembered.
const delayWindow = 10 * time.Second

// add takes one sequence number and the packet's one-way delay in milliseconds (up to
// a clock offset), and returns a loss sample when a window is complete.
func (s *seqCounter) add(seq uint16, owd int16, now time.Time) (float64, bool) {
	const restart = 4096 // a jump this far is a restarted peer, not loss
	d := int16(seq - s.highest)
	if !s.started || d > restart || d < -restart {
		*s = seqCounter{started: true, base: seq, highest: seq, received: 1, minDelay: owd, prevMinDelay: owd, delayFrom: now}
		return 0, false
	}
	if now.Sub(s.delayFrom) > delayWindow {
		s.prevMinDelay, s.minDelay, s.delayFrom = s.minDelay, owd, now
	}
	s.minDelay = min(s.minDelay, owd)
	if int16(seq-s.base) < 0 {
		return 0, false // late, from a window already counted
	}
	if d > 1 && int(owd)-int(min(s.minDelay, s.prevMinDelay)) < queuedGap {
		s.gaps++
	}
	if d > 0 {
		s.highest = seq
	}
	s.received++
	expected := int(s.highest-s.base) + 1
	if expected < lossWindow {
		return 0, false
	}
	// Gaps per packet estimate p(1−p); solve for p (the root below one half).
	g := min(0.25, float64(s.gaps)/float64(expected))
	sample := (1 - math.Sqrt(1-4*g)) / 2
	s.base, s.received, s.gaps = s.highest+1, 0, 0
	return sample, true
}

// Losses returns, per peer, the loss it reports of our packets and the loss we see of
// its packets, both in 256ths.
func (c *Conn) Losses() map[string][2]uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string][2]uint32{}
	for k, p := range c.peers {
		out[k.String()] = [2]uint32{p.reported.Load(), p.seen.Load()}
	}
	return out
}
