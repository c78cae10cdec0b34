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
	kindBlock byte = 0x11 // a block of full-sized packets
	kindSmall byte = 0x12 // a block of small packets (smallPacket bytes or fewer)
	// smallPacket is the largest packet that goes in the small packets' blocks: a
	// block's parity is as long as its longest packet, so acknowledgements (tens of
	// bytes) protected beside full packets would cost a full packet of parity apiece.
	smallPacket = 256
	prefixLen   = 6
	// quicFixedBit is set in the first byte of every QUIC packet (RFC 9000, 17.2 and
	// 17.3) and clear in a prefix's kind; the long-header bit is clear too.
	quicFixedBit  = 0x40
	quicLongBit   = 0x80
	readBufferLen = 64 << 10
)

// Defaults of Config.
const (
	// DefaultShards is the packets per block, data and parity: the most internal/fec
	// takes. Wide blocks need the least parity for a given loss (15 in 64, 31 %, at
	// 10 %, where blocks of 16 would need 7, 78 %), and at a radio's hundreds of packets
	// a second a block fills in well under a round trip.
	DefaultShards = fec.MaxShards
	// DefaultResidualLoss is the share of packets a block may leave lost, for QUIC to
	// repair, on a path of ResidualRTT or longer: 1 in 1,000, a hole a second on a busy
	// radio. In the bench's echo at 10 % and 200 ms, 1 in 10,000 cost more in parity
	// (36 % against 31 %) than it saved.
	DefaultResidualLoss = 1e-3
	// DefaultResidualRTT is the round trip at and beyond which a block may leave only
	// ResidualLoss. A shorter path repairs a hole sooner, and the data behind it waits
	// less: a block may leave the square of how many times shorter the path is more,
	// in steps of two, up to maxResidual. At 10 % loss that is 15 parity packets in 64
	// at 800 ms, 13 at 200 ms and 9 at 50 ms. In the bench's echo at 10 % and 200 ms,
	// 13 gave 6.65 Mbit/s (four runs) where 15 gave 5.9 (three).
	DefaultResidualRTT = 400 * time.Millisecond
	// DefaultFlushDelay closes a block that has not filled, so its parity follows its
	// packets within 60 ms: an acknowledgement or a telemetry message is protected too.
	// At 20 ms a 10 Mbit/s radio's blocks closed at about 16 packets, where a block
	// needs far more parity for the same residual loss than at 64.
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
	// lossWindow is how many sequence numbers make one loss sample. The estimate
	// keeps 1−lossGainUp of its weight per sample above it, so a link that starts
	// losing is protected within three samples (about a second at a radio's rate), and
	// 1−lossGainDown per sample below it, so parity is shed over about eight: a lost
	// block costs a round trip and more, a parity packet one packet.
	lossWindow   = 128
	lossGainUp   = 0.5
	lossGainDown = 0.25
	// lossPeriod also closes a sample once it holds lossMinNumbers: a link that only
	// trickles (an echo, a heartbeat: some 30 packets a second) would otherwise take
	// four seconds a sample, and keep a lossy minute's parity for half a minute after
	// the loss ended, into the next bulk transfer. Fewer numbers make a noisier sample;
	// the estimate, quicker up than down, errs toward parity.
	lossPeriod     = time.Second
	lossMinNumbers = 32
	// lossSamples is about how many packets the reported loss averages over; the code
	// is chosen for the reported loss plus one standard error of such an average, so a
	// sender that hears 10 % plans for 11.3 %.
	lossSamples = lossWindow / lossGainDown
	// overheadPeriod is how often the measured overhead is updated, and overheadGain
	// the weight of a period's measure: an average over about half a second.
	overheadPeriod = 50 * time.Millisecond
	overheadGain   = 0.3
	// overheadMinBytes is the least a period must carry to measure the overhead: a few
	// acknowledgements and their parity say nothing of a transfer's. maxOverhead caps a
	// measure, as the codes do (75 % parity at most, with headers).
	overheadMinBytes = 16 << 10
	maxOverhead      = 1.0
	// overheadStale is how long a period may wait for overheadMinBytes before the
	// code's overhead for packets of fullPacket bytes (quic-go's largest) stands in.
	overheadStale = time.Second
	fullPacket    = 1452
	// maxResidual caps the residual loss a short path allows: past it QUIC, not the
	// code, would be repairing a lossy radio.
	maxResidual = 0.05
	// rttSteps is how many residual losses there are, a halving of the round trip
	// apart: ResidualRTT and longer, half of it, a quarter... (see DefaultResidualRTT).
	rttSteps = 6
	// initialLoss is the loss a Conn reports of a peer's packets before it has counted a
	// window of them: a radio's usual, so a new connection's first blocks are protected
	// as a lossy link needs, and a clean link sheds the parity after lossWindow packets.
	initialLoss = 0.10
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
	// ResidualLoss is the share of packets the chosen code may leave lost on a path
	// of ResidualRTT or longer; a shorter one may leave more.
	ResidualLoss float64
	ResidualRTT  time.Duration
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
	if c.ResidualRTT == 0 {
		c.ResidualRTT = DefaultResidualRTT
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
	codes [rttSteps][256]code // by round-trip step (rttStep) and reported loss

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
	reported atomic.Uint32 // random loss of our packets it reports, in 256ths
	seen     atomic.Uint32 // random loss of its packets we see, in 256ths
	used     atomic.Int64  // unix nanoseconds of the last packet either way
	overhead atomic.Uint64 // math.Float64bits of the parity per packet sent now
	baseRTT  atomic.Int64  // the path's base round trip in nanoseconds, 0 if not told
	longer   atomic.Bool   // baseRTT rose by pathRise: rx rebases its delays
	swept    atomic.Bool   // forgotten by sweep: Overhead looks the address up again

	// Send side, under mu.
	mu        sync.Mutex
	blocks    [classes]blockStream
	seq       uint16
	lastHello time.Time
	wbuf      []byte
	timer     *time.Timer
	armed     bool
	closed    bool
	// Bytes of QUIC packets given to the peer's blocks, and bytes written for them
	// (prefixes, headers, parity), since accountedAt; account turns them into overhead.
	quicBytes, wireBytes int
	accountedAt          time.Time

	// Read side: the read loop only.
	dec [classes]*fec.Decoder
	rx  seqCounter
	// The loss estimate: numbers and gaps counted, older samples weighing less.
	numbers, gaps float64
}

// lossByte is a loss share in 256ths, as a prefix carries it.
func lossByte(loss float64) uint32 { return uint32(min(255, math.Round(loss*256))) }

// New wraps pc. Every packet it sends to a peer that speaks the prefix is protected.
func New(pc net.PacketConn, cfg Config) *Conn {
	cfg = cfg.withDefaults()
	c := &Conn{PacketConn: pc, cfg: cfg, peers: map[netip.AddrPort]*peer{}, rbuf: make([]byte, readBufferLen)}
	for step := range c.codes {
		shorter := float64(uint(1) << step) // the path is this many times shorter
		residual := min(maxResidual, cfg.ResidualLoss*shorter*shorter)
		for v := range c.codes[step] {
			p := float64(v) / 256
			c.codes[step][v] = chooseCode(p+math.Sqrt(p*(1-p)/lossSamples), cfg.Shards, residual)
		}
	}
	return c
}

// chooseCode returns the shape of n packets with the fewest parity packets that leaves
// a packet lost with probability at most residual when each is lost with probability
// p: a data packet is lost only if it is and at least m of the other n−1 are too.
func chooseCode(p float64, n int, residual float64) code {
	if p <= 0 {
		return code{n - 1, 1}
	}
	// below is P(X < m) for X ~ Binomial(n−1, p), grown one term a step.
	pmf := math.Pow(1-p, float64(n-1)) // P(X = 0)
	below := 0.0
	for m := 1; m <= n-minData; m++ {
		below += pmf
		if p*max(0, 1-below) <= residual {
			return code{n - m, m}
		}
		i := m - 1 // pmf becomes P(X = m)
		pmf *= float64(n-1-i) / float64(i+1) * p / (1 - p)
	}
	return code{minData, n - minData}
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
		if n < prefixLen || pkt[0] != kindHello && pkt[0] != kindBlock && pkt[0] != kindSmall {
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
		class := classOf(pkt[0])
		dec := p.dec[class]
		if dec == nil {
			if dec, err = fec.NewDecoder(fec.Config{K: 48, M: 16, MaxMessage: classMax[class], Blocks: decoderBlocks, FlushDelay: c.cfg.FlushDelay}); err != nil {
				continue
			}
			p.dec[class] = dec
		}
		before := dec.Stats()
		msgs, err := dec.Add(pkt[prefixLen:], now)
		if err != nil && !errors.Is(err, fec.ErrCorrupt) {
			continue
		}
		after := dec.Stats()
		c.recovered.Add(after.Recovered - before.Recovered)
		c.unrecovered.Add(after.Lost - before.Lost)
		if now.Sub(c.lastSweep) > c.cfg.PeerIdle/4 {
			c.lastSweep = now
			c.sweep(now)
		}
		if len(msgs) == 0 {
			continue
		}
		// Rebuilt packets after the first wait their turn; the first, usually the only
		// one, goes straight to the reader without a copy of its own.
		for _, msg := range msgs[1:] {
			c.queue = append(c.queue, append([]byte(nil), msg...))
			c.queueAddr = append(c.queueAddr, addr)
		}
		return copy(b, msgs[0]), addr, nil
	}
}

// heard takes in a prefixed packet's prefix: the peer speaks it, reports our loss, and
// numbers its packets.
func (p *peer) heard(pkt []byte, now time.Time) {
	p.capable.Store(true)
	p.reported.Store(uint32(pkt[1]))
	p.used.Store(now.UnixNano())
	owd := int16(uint16(now.UnixMilli()) - binary.BigEndian.Uint16(pkt[4:]))
	if p.longer.Load() && p.longer.Swap(false) { // a load per packet, a write per rebase
		p.rx.rebase(owd, now)
	}
	if sample, ok := p.rx.add(binary.BigEndian.Uint16(pkt[2:]), owd, now); ok {
		p.numbers, p.gaps = sample.fold(p.numbers, p.gaps)
		p.seen.Store(lossByte(lossOfGaps(p.gaps / p.numbers)))
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
	class := classFull
	if len(b) <= smallPacket {
		class = classSmall
	}
	bs := &p.blocks[class]
	if bs.enc == nil || bs.enc.Pending() == 0 {
		if err := bs.reshape(c, c.codes[c.rttStep(p)][p.reported.Load()]); err != nil {
			c.plain.Add(1)
			return c.PacketConn.WriteTo(b, addr)
		}
	}
	pkts, err := bs.enc.Add(b, now)
	if err != nil {
		c.plain.Add(1)
		return c.PacketConn.WriteTo(b, addr)
	}
	var werr error
	for _, pkt := range pkts {
		if err := p.send(c, kinds[class], pkt); err != nil && werr == nil {
			werr = err
		}
		if pkt[2] >= pkt[3] { // a parity shard: index ≥ K
			c.parity.Add(1)
		}
	}
	c.protected.Add(1)
	p.quicBytes += len(b)
	p.account(c, now)
	p.arm(c, now)
	if werr != nil {
		return 0, werr
	}
	return len(b), nil
}

// Packet classes: each has blocks of its own, numbered apart, under a kind of its own.
const (
	classFull = iota
	classSmall
	classes
)

var kinds = [classes]byte{kindBlock, kindSmall}

// classMax is the longest packet of each class, which bounds its decoder's buffers: a
// peer's decoders hold at most decoderBlocks×64 shards of each.
var classMax = [classes]int{maxMessage, smallPacket}

// classOf is the class of a block packet's kind.
func classOf(kind byte) int {
	if kind == kindSmall {
		return classSmall
	}
	return classFull
}

// blockStream is the encoder of one class of a peer's packets.
type blockStream struct {
	enc   *fec.Encoder
	shape code
}

// reshape gives the encoder the code for the loss the peer reports, making it on
// first use; the caller holds the peer's mu and no block is open.
func (bs *blockStream) reshape(c *Conn, want code) error {
	if bs.enc == nil {
		enc, err := fec.NewEncoder(fec.Config{K: want.k, M: want.m, MaxMessage: maxMessage, FlushDelay: c.cfg.FlushDelay, Proportional: true})
		if err != nil {
			return err
		}
		bs.enc, bs.shape = enc, want
		return nil
	}
	if want == bs.shape {
		return nil
	}
	if _, err := bs.enc.Reshape(want.k, want.m); err != nil {
		return err
	}
	bs.shape = want
	return nil
}

// account folds the bytes written since the last period into the overhead the peer's
// controller reads, once an overheadPeriod has passed: the bytes on the wire beyond the
// QUIC packets', over the QUIC packets', averaged over a few periods, so the controller
// sees what the link carried, not the code of the moment (which follows a noisy loss
// estimate). The caller holds p.mu.
//
// A period that has not carried overheadMinBytes by overheadStale is closed on the
// code's own overhead for full packets instead: an idle link or a trickle measures
// nothing, and the last transfer's figure (a 30 % loss's doubling, say) would meet the
// next transfer's first round trips, whose delivery samples the controller scales by
// it and whose pacing it divides by the measure that follows.
func (p *peer) account(c *Conn, now time.Time) {
	period := now.Sub(p.accountedAt)
	switch {
	case period >= overheadPeriod && p.quicBytes >= overheadMinBytes:
		sample := min(maxOverhead, float64(p.wireBytes-p.quicBytes)/float64(p.quicBytes))
		old := math.Float64frombits(p.overhead.Load())
		p.overhead.Store(math.Float64bits(old + overheadGain*(sample-old)))
	case period >= overheadStale:
		code := c.codes[c.rttStep(p)][p.reported.Load()]
		full := float64(fullPacket)
		p.overhead.Store(math.Float64bits(float64(code.k+code.m)/float64(code.k)*(full+prefixLen+fec.PacketOverhead)/full - 1))
	default:
		return
	}
	p.quicBytes, p.wireBytes, p.accountedAt = 0, 0, now
}

// Overhead returns a function that says, whenever called, how many bytes the Conn
// writes to addr beside each byte of QUIC packets: prefixes, headers and parity, as
// measured over the last half second or so of sending; 0 while addr has not been heard
// speaking the prefix. A congestion controller calls it to keep its model of the
// path's rate in bytes on the wire (internal/congestion, Config.Overhead).
func (c *Conn) Overhead(addr net.Addr) func() float64 {
	var p *peer
	return func() float64 {
		if p == nil || p.swept.Load() {
			if p = c.peerFor(addr, time.Now()); p == nil {
				return 0
			}
		}
		if !p.capable.Load() {
			return 0
		}
		return math.Float64frombits(p.overhead.Load())
	}
}

// BaseRTT returns a function that tells the Conn the base round trip of the path to
// addr, as a congestion controller measures it (internal/congestion, Config.BaseRTT):
// a shorter path's blocks may leave more for QUIC to repair (DefaultResidualRTT).
// Until told, a path counts as ResidualRTT or longer.
func (c *Conn) BaseRTT(addr net.Addr) func(time.Duration) {
	var p *peer
	return func(rtt time.Duration) {
		if p == nil || p.swept.Load() {
			if p = c.peerFor(addr, time.Now()); p == nil {
				return
			}
		}
		if old := time.Duration(p.baseRTT.Swap(int64(rtt))); old > 0 && rtt-old >= pathRise {
			p.longer.Store(true)
		}
	}
}

// rttStep is the index in c.codes of p's base round trip: 0 at ResidualRTT or longer
// (or not known), one more for each halving below it.
func (c *Conn) rttStep(p *peer) int {
	rtt := time.Duration(p.baseRTT.Load())
	step := 0
	for rtt > 0 && step < rttSteps-1 && rtt*2 <= c.cfg.ResidualRTT {
		rtt *= 2
		step++
	}
	return step
}

// send writes one packet to the peer behind a prefix; the caller holds p.mu.
func (p *peer) send(c *Conn, kind byte, pkt []byte) error {
	need := prefixLen + len(pkt)
	p.wireBytes += need
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

// arm sets the flush timer for the earliest open block's deadline; the caller holds
// p.mu.
func (p *peer) arm(c *Conn, now time.Time) {
	var dl time.Time
	ok := false
	for _, bs := range p.blocks {
		if bs.enc == nil {
			continue
		}
		if d, open := bs.enc.Deadline(); open && (!ok || d.Before(dl)) {
			dl, ok = d, true
		}
	}
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
	for class, bs := range p.blocks {
		if bs.enc == nil {
			continue
		}
		for _, pkt := range bs.enc.Poll(now) {
			if p.send(c, kinds[class], pkt) == nil {
				c.parity.Add(1)
			}
		}
	}
	p.account(c, now)
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
	p := &peer{addr: addr, accountedAt: now}
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
			p.swept.Store(true)
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
// sequence numbers. Parity must not be spent on a queue's overflow: a congested link
// drops packets because it has no room, and more packets only make it worse (parity is
// sent outside QUIC's congestion control). A queue overflows only when it is nearly
// full, and random loss strikes whatever the queue, so the counter looks only at
// packets that arrive with little queueing delay (under half the most it has seen, or
// under queueFloor): the loss among those is the
// random loss alone. And it counts gaps, not the numbers missing: random loss at p
// leaves gaps at a rate of p(1−p) per number, while a fade takes a run of packets at
// once, which no block survives either.
type seqCounter struct {
	started bool
	highest uint16
	// numbers and gaps counted in the current sample, among low-delay arrivals
	numbers, gaps int
	sampleFrom    time.Time
	// Least one-way delay (the sender's clock against ours, so only differences
	// count) and most queueing delay, in this and the previous delayWindow.
	minDelay, prevMinDelay int16
	maxQueue, prevMaxQueue int
	delayFrom              time.Time
}

// queueFloor is the least queueing delay, in milliseconds, a packet may have and still
// be counted: a radio's jitter is not a queue.
const queueFloor = 20

// delayWindow is how long a least delay and a most queue are remembered.
const delayWindow = 10 * time.Second

// pathRise is the rise of the base round trip that a Conn takes as a longer path, not
// a queue: half of it each way is more queueing delay than queueFloor, so without a
// rebase every packet would look queued and none counted until delayWindow had passed
// twice (up to 20 s of a lossy link's parity kept on a clean one, or none on a lossy
// one).
const pathRise = 2 * queueFloor * time.Millisecond

// rebase takes owd as the path's one-way delay from now on and forgets the queues seen:
// the controller found the path longer.
func (s *seqCounter) rebase(owd int16, now time.Time) {
	if !s.started {
		return
	}
	s.minDelay, s.prevMinDelay = owd, owd
	s.maxQueue, s.prevMaxQueue = 0, 0
	s.delayFrom = now
}

// add takes one sequence number and the packet's one-way delay in milliseconds (up to
// a clock offset), and returns a loss sample when lossWindow numbers have been counted,
// or lossMinNumbers over lossPeriod.
func (s *seqCounter) add(seq uint16, owd int16, now time.Time) (lossSample, bool) {
	const restart = 4096 // a jump this far is a restarted peer, not loss
	d := int16(seq - s.highest)
	if !s.started || d > restart || d < -restart {
		*s = seqCounter{started: true, highest: seq, minDelay: owd, prevMinDelay: owd, delayFrom: now, sampleFrom: now}
		return lossSample{}, false
	}
	if d <= 0 {
		return lossSample{}, false // late or duplicate: its number was counted as a gap
	}
	s.highest = seq
	if now.Sub(s.delayFrom) > delayWindow {
		s.prevMinDelay, s.minDelay = s.minDelay, owd
		s.prevMaxQueue, s.maxQueue = s.maxQueue, 0
		s.delayFrom = now
	}
	s.minDelay = min(s.minDelay, owd)
	queue := int(owd) - int(min(s.minDelay, s.prevMinDelay))
	s.maxQueue = max(s.maxQueue, queue)
	if queue > max(queueFloor, max(s.maxQueue, s.prevMaxQueue)/2) {
		return lossSample{}, false
	}
	s.numbers += int(d)
	if d > 1 {
		s.gaps++
	}
	span := now.Sub(s.sampleFrom)
	if s.numbers < lossWindow && (s.numbers < lossMinNumbers || span < lossPeriod) {
		return lossSample{}, false
	}
	sample := lossSample{numbers: s.numbers, gaps: s.gaps, span: span}
	s.numbers, s.gaps, s.sampleFrom = 0, 0, now
	return sample, true
}

// lossSample is the numbers and gaps a seqCounter counted over span.
type lossSample struct {
	numbers, gaps int
	span          time.Duration
}

// fold adds the sample to an estimate's numbers and gaps, whose weight falls by
// lossGainDown for each lossWindow numbers or lossPeriod the sample holds, whichever
// is more (lossGainUp when the sample's rate is higher). It sums numbers and gaps, not
// per-sample rates, so that the short samples of a trickle average out before the
// nonlinear lossOfGaps, which would otherwise turn their noise into a higher loss.
func (ls lossSample) fold(numbers, gaps float64) (float64, float64) {
	n, g := float64(ls.numbers), float64(ls.gaps)
	if numbers == 0 {
		return n, g
	}
	gain := lossGainDown
	if g/n > gaps/numbers {
		gain = lossGainUp
	}
	keep := math.Pow(1-gain, max(n/lossWindow, ls.span.Seconds()/lossPeriod.Seconds()))
	return numbers*keep + n, gaps*keep + g
}

// lossOfGaps is the random loss that leaves gaps at the given rate per number: gaps
// per number estimate p(1−p); it solves for p (the root below one half).
func lossOfGaps(rate float64) float64 {
	g := min(0.25, rate)
	return (1 - math.Sqrt(1-4*g)) / 2
}
