package fec

import (
	"fmt"
	"math/bits"
	"time"
)

// rememberClosed is how many Expiry periods after its first packet a closed block is
// remembered, to count late and duplicate packets; after that its ID starts a new block
// (IDs wrap after 65,536 blocks).
const rememberClosed = 2

// DecoderStats counts what a Decoder has seen since it was made.
type DecoderStats struct {
	// Delivered counts messages returned by Add, recovered ones included.
	Delivered uint64
	// Recovered counts messages rebuilt from parity.
	Recovered uint64
	// Lost counts messages known to be missing when their block closed (expired or
	// evicted): those below the block's message count, or, where no parity packet
	// came, below its highest message seen. A lost message that arrives later is
	// delivered and taken off again. Messages of blocks of which nothing came are not
	// known, so not counted.
	Lost uint64
	// Duplicates counts packets of a shard already held or delivered, ignored.
	Duplicates uint64
	// Late counts packets that arrived after their block closed incomplete (expired or
	// evicted); new messages among them are delivered all the same, parity is ignored.
	// Parity arriving after its block was delivered whole is not counted anywhere.
	Late uint64
	// Stale counts packets of blocks older than the newest minus Config.Blocks,
	// dropped: the Decoder can no longer tell them from duplicates.
	Stale uint64
	// Malformed counts packets refused with an error, and packets whose block they
	// completed turned out corrupt (ErrCorrupt).
	Malformed uint64
	// Expired counts blocks closed by Config.Expiry before all their messages came.
	Expired uint64
	// Evicted counts blocks closed before all their messages came, to free their slot
	// for a newer block or their buffers for another block's shards.
	Evicted uint64
}

// Decoder rebuilds one flow direction: it returns each message once, as soon as its
// data packet arrives or its block holds enough packets to rebuild it. Packets may come
// in any order and any number of times. Memory is bounded by Config: Blocks blocks
// tracked and Blocks×(K+M) shard buffers (see BufferBound), whatever the packets say.
// It is not safe for concurrent use: the goroutine that receives a direction owns its
// Decoder.
type Decoder struct {
	cfg    Config
	stride int // capacity of a shard buffer: MaxMessage+1

	slots   []slot // block ID & mask → its slot
	mask    uint16
	started bool
	top     uint16    // newest block ID seen
	last    time.Time // when a packet was last taken
	// nextExpiry is the earliest time an open block expires; zero when none is open.
	nextExpiry time.Time

	free       [][]byte // shard buffers not in use
	allocated  int      // shard buffers made
	maxBuffers int

	codecs codecs
	zero   []byte   // stride zeros: the absent messages of short blocks
	shards [][]byte // K+M views handed to the codec
	out    [][]byte // messages returned by the current call
	stats  DecoderStats
}

// slot is one block being tracked, open (waiting for packets) or closed (remembered
// to count duplicates and late packets until its slot is reused).
type slot struct {
	used, closed bool
	id           uint16
	k, m         uint8
	count        uint8  // messages in the block, from parity; 0 until a parity packet came
	size         int    // parity shard size; 0 until a parity packet came
	longest      int    // longest message held
	have         uint64 // shards held or delivered
	lost         uint64 // messages counted in Stats.Lost
	held         int    // buffers in bufs
	first        time.Time
	bufs         [][]byte // k+m: a held shard's message or parity, else nil
}

// NewDecoder returns a Decoder for cfg.
func NewDecoder(cfg Config) (*Decoder, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	stride := cfg.MaxMessage + 1
	return &Decoder{
		cfg:        cfg,
		stride:     stride,
		slots:      make([]slot, cfg.Blocks),
		mask:       uint16(cfg.Blocks - 1),
		maxBuffers: max(cfg.Blocks*(cfg.K+cfg.M), MaxShards),
		zero:       make([]byte, stride),
		shards:     make([][]byte, MaxShards),
		out:        make([][]byte, 0, MaxShards),
	}, nil
}

// BufferBound is the most bytes of shard buffers the Decoder ever holds: Blocks×(K+M)
// buffers (at least MaxShards) of MaxMessage+1 bytes. Its other memory is fixed and
// small: the block table, one buffer of zeros, and up to four codecs.
func (d *Decoder) BufferBound() int { return d.maxBuffers * d.stride }

// Buffered returns the bytes of shard buffers the Decoder has made so far; they are
// kept for reuse, and never exceed BufferBound.
func (d *Decoder) Buffered() int { return d.allocated * d.stride }

// Stats returns the counters so far.
func (d *Decoder) Stats() DecoderStats { return d.stats }

// Add takes one packet and returns the messages it makes available, in order: the
// message it carries if new, then the messages of its block it allowed to rebuild, in
// index order. They alias pkt or the Decoder's buffers, and are valid until the next
// call to Add (and while pkt is unchanged). A malformed packet, or one inconsistent
// with its block, returns an error (counted in Stats.Malformed) and changes nothing; a
// packet that lets its block rebuild messages that turn out corrupt returns ErrCorrupt
// with only the message it carried. Duplicates, late and stale packets are counted and
// return nothing new. now drives expiry; it should not go backwards.
func (d *Decoder) Add(pkt []byte, now time.Time) ([][]byte, error) {
	d.out = d.out[:0]
	d.Expire(now)

	h, body, err := parseHeader(pkt)
	if err != nil {
		d.stats.Malformed++
		return nil, err
	}
	if err := d.checkLength(h, body); err != nil {
		d.stats.Malformed++
		return nil, err
	}

	if !d.started {
		d.resetWindow(h.block)
	}
	diff := int16(h.block - d.top)
	if int(diff) <= -len(d.slots) {
		if now.Sub(d.last) < d.cfg.Expiry {
			d.stats.Stale++
			return nil, nil
		}
		// The flow was silent longer than any block lives, so every block has closed:
		// start the window afresh. After a blackout of minutes the sender's block IDs
		// may have moved on by more than half their range and look old.
		d.resetWindow(h.block)
		diff = 0
	}

	s := &d.slots[h.block&d.mask]
	if s.used && (s.id != h.block || s.closed && now.Sub(s.first) >= rememberClosed*d.cfg.Expiry) {
		// An older block, out of the window now; or one closed so long ago that this
		// packet is the same ID come round again.
		d.retire(s)
	}
	if s.used && (s.k != h.k || s.m != h.m) {
		d.stats.Malformed++
		return nil, fmt.Errorf("%w: block %d has K %d, M %d; shard %d says K %d, M %d",
			ErrInconsistent, h.block, s.k, s.m, h.index, h.k, h.m)
	}
	if s.used {
		if err := s.check(h, body); err != nil {
			d.stats.Malformed++
			return nil, err
		}
	}

	// Taken: from here on the packet changes state.
	if diff > 0 {
		d.top = h.block
	}
	d.last = now
	if !s.used {
		d.open(s, h, now)
	}
	bit := uint64(1) << h.index
	switch {
	case s.have&bit != 0:
		d.stats.Duplicates++
		return nil, nil
	case s.closed && h.parity():
		// Parity of a block delivered whole is expected, not late.
		if s.need() {
			d.stats.Late++
		}
		return nil, nil
	case s.closed:
		d.stats.Late++
		s.have |= bit
		if s.lost&bit != 0 {
			s.lost &^= bit
			d.stats.Lost--
		}
		d.deliver(body)
		return d.out, nil
	}

	s.have |= bit
	if h.parity() {
		s.count, s.size = h.count, len(body)
	} else {
		d.deliver(body)
		s.longest = max(s.longest, len(body))
	}
	if s.need() {
		d.hold(s, h.index, body)
	}
	if err := d.complete(s); err != nil {
		// The block is closed; the message this packet carried, if any, stays delivered.
		d.stats.Malformed++
		return d.out, err
	}
	return d.out, nil
}

// Expire closes every open block whose Expiry has passed at now, counting its missing
// messages in Stats.Lost and freeing its buffers. Add calls it; call it from a timer
// too if the flow may fall silent, to keep Stats current.
func (d *Decoder) Expire(now time.Time) {
	if d.nextExpiry.IsZero() || now.Before(d.nextExpiry) {
		return
	}
	var next time.Time
	for i := range d.slots {
		s := &d.slots[i]
		if !s.used || s.closed {
			continue
		}
		at := s.first.Add(d.cfg.Expiry)
		if !now.Before(at) {
			d.stats.Expired++
			d.close(s)
			continue
		}
		if next.IsZero() || at.Before(next) {
			next = at
		}
	}
	d.nextExpiry = next
}

// checkLength checks a body's length against the Config.
func (d *Decoder) checkLength(h header, body []byte) error {
	if h.parity() && len(body) > d.stride {
		return fmt.Errorf("%w: parity shard of %d bytes, max %d", ErrLength, len(body), d.stride)
	}
	if !h.parity() && len(body) > d.cfg.MaxMessage {
		return fmt.Errorf("%w: message of %d bytes, max %d", ErrLength, len(body), d.cfg.MaxMessage)
	}
	return nil
}

// check verifies that a packet agrees with what its open block holds.
func (s *slot) check(h header, body []byte) error {
	if h.parity() {
		switch {
		case s.count != 0 && (h.count != s.count || len(body) != s.size):
			return fmt.Errorf("%w: block %d has %d messages in %d-byte shards; parity %d says %d in %d",
				ErrInconsistent, h.block, s.count, s.size, h.index, h.count, len(body))
		case s.count == 0 && s.have&lowBits(int(s.k)) >= 1<<h.count:
			return fmt.Errorf("%w: block %d holds message %d; parity %d says it has %d",
				ErrIndex, h.block, bits.Len64(s.have&lowBits(int(s.k)))-1, h.index, h.count)
		case s.count == 0 && len(body) < s.longest+1:
			return fmt.Errorf("%w: block %d holds a %d-byte message; parity %d has %d-byte shards",
				ErrLength, h.block, s.longest, h.index, len(body))
		}
		return nil
	}
	switch {
	case s.count != 0 && h.index >= s.count:
		return fmt.Errorf("%w: message %d of block %d, which has %d", ErrIndex, h.index, h.block, s.count)
	case s.count != 0 && len(body)+1 > s.size:
		return fmt.Errorf("%w: %d-byte message %d of block %d, whose shards are %d bytes",
			ErrLength, len(body), h.index, h.block, s.size)
	}
	return nil
}

// resetWindow forgets every block and starts the window at block id.
func (d *Decoder) resetWindow(id uint16) {
	for i := range d.slots {
		if s := &d.slots[i]; s.used {
			d.retire(s)
		}
	}
	d.started, d.top = true, id
}

// open starts tracking block h.block in s.
func (d *Decoder) open(s *slot, h header, now time.Time) {
	bufs := s.bufs[:0]
	if cap(bufs) < int(h.k)+int(h.m) {
		bufs = make([][]byte, 0, int(h.k)+int(h.m))
	}
	*s = slot{used: true, id: h.block, k: h.k, m: h.m, first: now, bufs: bufs[:int(h.k)+int(h.m)]}
	if at := now.Add(d.cfg.Expiry); d.nextExpiry.IsZero() || at.Before(d.nextExpiry) {
		d.nextExpiry = at
	}
}

// need reports whether an open block may still have to rebuild messages, so must keep
// what it receives.
func (s *slot) need() bool {
	if s.count == 0 {
		return s.have&lowBits(int(s.k)) != lowBits(int(s.k))
	}
	return s.have&lowBits(int(s.count)) != lowBits(int(s.count))
}

// hold keeps a copy of shard index of open block s, if a buffer can be had.
func (d *Decoder) hold(s *slot, index uint8, body []byte) {
	buf := d.acquire(s)
	if buf == nil {
		return
	}
	s.bufs[index] = append(buf, body...)
	s.held++
}

// complete closes s if it has every message, or rebuilds the missing ones if it holds
// enough shards.
func (d *Decoder) complete(s *slot) error {
	if !s.need() {
		d.close(s)
		return nil
	}
	if s.count == 0 || s.held+int(s.k-s.count) < int(s.k) {
		return nil
	}
	return d.rebuild(s)
}

// rebuild recovers the missing messages of s, delivers them and closes s.
func (d *Decoder) rebuild(s *slot) error {
	k, m, n, size := int(s.k), int(s.m), int(s.count), s.size
	missing := lowBits(n) &^ s.have
	shards := d.shards[:k+m]
	for i := range k {
		switch b := s.bufs[i]; {
		case i >= n:
			shards[i] = d.zero[:size]
		case b != nil:
			shard := b[:size]
			shard[len(b)] = paddingMarker
			clear(shard[len(b)+1:])
			shards[i] = shard
		default:
			// Missing: the codec writes into the buffer's capacity (nil lets it allocate,
			// which only happens if every buffer is held by this block).
			buf := d.acquire(s)
			s.bufs[i] = buf
			if buf != nil {
				s.held++
			}
			shards[i] = buf
		}
	}
	for j := range m {
		shards[k+j] = s.bufs[k+j]
	}

	codec, err := d.codecs.get(s.k, s.m)
	if err == nil {
		err = codec.ReconstructData(shards)
	}
	if err != nil {
		d.close(s)
		return fmt.Errorf("fec: rebuild block %d: %w", s.id, err)
	}
	// Unpad every rebuilt message before delivering any: a corrupt block delivers none.
	first := len(d.out)
	for i := range n {
		if missing&(1<<i) == 0 {
			continue
		}
		msg, ok := unpad(shards[i])
		if !ok {
			d.out = d.out[:first]
			d.close(s)
			return fmt.Errorf("%w: block %d, message %d", ErrCorrupt, s.id, i)
		}
		d.out = append(d.out, msg)
	}
	s.have |= missing
	d.stats.Recovered += uint64(len(d.out) - first)
	d.stats.Delivered += uint64(len(d.out) - first)
	// The rebuilt messages stay in the buffers close frees: nothing reuses them before
	// the next Add.
	d.close(s)
	return nil
}

// deliver returns msg from the current call.
func (d *Decoder) deliver(msg []byte) {
	d.out = append(d.out, msg)
	d.stats.Delivered++
}

// close ends open block s: its known missing messages count as lost and its buffers
// are freed; it stays in its slot, closed, to recognise late packets.
func (d *Decoder) close(s *slot) {
	known := 0
	if s.count != 0 {
		known = int(s.count)
	} else {
		known = bits.Len64(s.have & lowBits(int(s.k))) // up to the highest message seen
	}
	s.lost = lowBits(known) &^ s.have
	d.stats.Lost += uint64(bits.OnesCount64(s.lost))
	for i, b := range s.bufs {
		if b != nil {
			d.free = append(d.free, b[:0])
			s.bufs[i] = nil
		}
	}
	s.held = 0
	s.closed = true
}

// retire frees s for another block, closing it first if open.
func (d *Decoder) retire(s *slot) {
	if !s.closed {
		d.stats.Evicted++
		d.close(s)
	}
	s.used = false
}

// acquire returns an empty shard buffer for open block s: a free one, a new one while
// fewer than the bound exist, or one taken by closing the oldest other open block. It
// returns nil only if s itself holds every buffer.
func (d *Decoder) acquire(s *slot) []byte {
	for len(d.free) == 0 {
		if d.allocated < d.maxBuffers {
			d.allocated++
			return make([]byte, 0, d.stride)
		}
		var oldest *slot
		for i := range d.slots {
			o := &d.slots[i]
			if o.used && !o.closed && o != s && o.held > 0 && (oldest == nil || o.first.Before(oldest.first)) {
				oldest = o
			}
		}
		if oldest == nil {
			return nil
		}
		d.stats.Evicted++
		d.close(oldest)
	}
	buf := d.free[len(d.free)-1]
	d.free = d.free[:len(d.free)-1]
	return buf
}

// unpad returns the message in a rebuilt shard: everything before the padding marker
// that the last non-zero byte must be.
func unpad(shard []byte) ([]byte, bool) {
	i := len(shard) - 1
	for i >= 0 && shard[i] == 0 {
		i--
	}
	if i < 0 || shard[i] != paddingMarker {
		return nil, false
	}
	return shard[:i], true
}

// lowBits returns a mask of bits 0..n-1.
func lowBits(n int) uint64 {
	if n >= 64 {
		return ^uint64(0)
	}
	return 1<<n - 1
}
