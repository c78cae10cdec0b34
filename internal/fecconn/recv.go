package fecconn

import (
	"encoding/binary"
	"fmt"
	"time"
)

// slotState is what a receiver knows of one sequence number.
type slotState uint8

const (
	slotEmpty    slotState = iota // nothing known
	slotHeld                      // packet here, waiting behind a gap
	slotReleased                  // packet released, kept to rebuild its block
	slotSkipped                   // released past without its packet: lost
)

// rxSlot is one sequence number in a receiver's window.
type rxSlot struct {
	seq   uint32
	state slotState
	at    time.Time // when the packet arrived or was rebuilt
	buf   []byte    // the QUIC packet, for slotHeld and slotReleased
}

// held reports whether the slot holds the packet of seq, released or not.
func (s *rxSlot) has(seq uint32) bool {
	return s.seq == seq && (s.state == slotHeld || s.state == slotReleased)
}

// parSlot keeps one parity packet until its block is complete or rebuilt.
type parSlot struct {
	used bool
	p    parityPacket // p.shard aliases buf
	buf  []byte
}

// decodeScratch is what rebuilding a block needs, shared by every receiver of a Conn
// and used only by the goroutine that reads the socket.
type decodeScratch struct {
	codecs codecCache
	bufs   [MaxShards][]byte // shard buffers, made as needed
	views  [MaxShards][]byte // shards handed to the codec
	zero   []byte            // the absent packets of a short block
}

func newDecodeScratch(maxPayload int) *decodeScratch {
	return &decodeScratch{zero: make([]byte, lenPrefix+maxPayload)}
}

func (d *decodeScratch) buf(i, size int) []byte {
	if cap(d.bufs[i]) < size {
		d.bufs[i] = make([]byte, len(d.zero))
	}
	return d.bufs[i][:size]
}

// receiver rebuilds the packets one peer sends and releases them in sequence: once a
// gap appears, later packets wait until it is repaired, known unrepairable (a packet
// of a later block arrived, so every packet of the gap's block that will come has
// come), or the oldest waiting packet has waited Hold. It is not safe for concurrent
// use; the peer's receive lock guards it.
type receiver struct {
	ordered    bool
	hold       time.Duration
	maxPayload int
	scratch    *decodeScratch
	deliver    func(pkt []byte) // must copy pkt
	stats      *counters

	started  bool
	next     uint32    // first sequence number not yet released or skipped
	maxStart uint32    // latest block start seen
	held     int       // slots in state slotHeld
	deadline time.Time // when the gap at next is given up; zero when none waits
	slots    [window]rxSlot
	par      [paritySlots]parSlot
	parNext  int // parity slot replaced next

	far      uint32 // the first of a run of out-of-step packets
	farCount int
}

func newReceiver(cfg Config, scratch *decodeScratch, deliver func([]byte), stats *counters) *receiver {
	return &receiver{
		ordered:    !cfg.Unordered,
		hold:       cfg.Hold,
		maxPayload: cfg.MaxPacket - Overhead,
		scratch:    scratch,
		deliver:    deliver,
		stats:      stats,
	}
}

func (r *receiver) slot(seq uint32) *rxSlot { return &r.slots[seq%window] }

// add takes one shim packet (first byte Magic) and releases what it makes available,
// and what waited past its deadline at now. A malformed packet returns an error and
// changes nothing else.
func (r *receiver) add(pkt []byte, now time.Time) error {
	err := r.take(pkt, now)
	r.advance(now)
	return err
}

func (r *receiver) take(pkt []byte, now time.Time) error {
	if len(pkt) < 2 {
		return fmt.Errorf("%w: %d bytes", ErrTruncated, len(pkt))
	}
	switch kind(pkt) {
	case kindData:
		d, err := parseData(pkt)
		if err != nil {
			return err
		}
		if len(d.payload) > r.maxPayload {
			return fmt.Errorf("%w: data packet carries %d bytes, max %d", ErrTruncated, len(d.payload), r.maxPayload)
		}
		r.addData(d, now)
	case kindParity:
		p, err := parseParity(pkt)
		if err != nil {
			return err
		}
		if len(p.shard) > lenPrefix+r.maxPayload {
			return fmt.Errorf("%w: parity shard of %d bytes, max %d", ErrShape, len(p.shard), lenPrefix+r.maxPayload)
		}
		r.addParity(p, now)
	default:
		return fmt.Errorf("%w: %#x", ErrKind, pkt[1])
	}
	return nil
}

// tick releases what waited past its deadline at now; call it at deadline.
func (r *receiver) tick(now time.Time) { r.advance(now) }

func (r *receiver) addData(d dataPacket, now time.Time) {
	start := d.seq - uint32(d.index)
	if !r.started {
		r.reset(start)
	}
	if !r.admit(d.seq, start) {
		return
	}
	r.noteStart(start)
	r.store(d.seq, d.payload, now, false)
	r.tryDecode(start, now)
}

func (r *receiver) addParity(p parityPacket, now time.Time) {
	if !r.started {
		r.reset(p.first)
	}
	if !r.admit(p.first, p.first) {
		return
	}
	for i := range r.par {
		q := &r.par[i]
		if !q.used || q.p.first != p.first {
			continue
		}
		if q.p.index == p.index {
			r.stats.duplicates.Add(1)
			return
		}
		if q.p.k != p.k || q.p.count != p.count || q.p.m != p.m || len(q.p.shard) != len(p.shard) {
			r.stats.malformed.Add(1)
			return
		}
	}
	r.noteStart(p.first)
	q := &r.par[r.parNext]
	r.parNext = (r.parNext + 1) % paritySlots
	q.used = true
	q.buf = append(q.buf[:0], p.shard...)
	q.p = p
	q.p.shard = q.buf
	r.tryDecode(p.first, now)
}

// admit decides whether a packet at seq is in step with the stream. Ahead of the
// window by less than maxJump, it releases the window up to it; behind, it is stale.
// Far out of step, it is dropped, unless resyncAfter such packets close together
// show the peer restarted its numbering: then the receiver restarts at anchor.
func (r *receiver) admit(seq, anchor uint32) bool {
	diff := int32(seq - r.next)
	switch {
	case diff >= -window && diff < window:
		r.farCount = 0
		return true
	case diff >= window && diff < maxJump:
		r.farCount = 0
		r.forceTo(seq - window + 1)
		return true
	case diff < -window && diff > -maxJump:
		r.stats.stale.Add(1)
		return false
	}
	if d := int32(seq - r.far); r.farCount > 0 && d > -window && d < window {
		r.farCount++
	} else {
		r.far, r.farCount = seq, 1
	}
	if r.farCount < resyncAfter {
		r.stats.stale.Add(1)
		return false
	}
	r.stats.resyncs.Add(1)
	r.reset(anchor)
	return true
}

func (r *receiver) noteStart(start uint32) {
	if seqAfter(start, r.maxStart) {
		r.maxStart = start
	}
}

// store places a packet at seq, which admit accepted, and releases it at once if
// out-of-order release is configured or it fills a gap already given up.
func (r *receiver) store(seq uint32, pkt []byte, now time.Time, rebuilt bool) {
	sl := r.slot(seq)
	if seqAfter(r.next, seq) {
		// Behind the release point: either a gap given up (deliver it late, QUIC may
		// still use it) or a packet already released.
		if sl.seq == seq && sl.state == slotSkipped {
			sl.buf = append(sl.buf[:0], pkt...)
			sl.state = slotReleased
			r.countIn(rebuilt)
			r.stats.late.Add(1)
			r.deliver(sl.buf)
			return
		}
		r.stats.duplicates.Add(1)
		return
	}
	if sl.seq == seq && sl.state != slotEmpty {
		r.stats.duplicates.Add(1)
		return
	}
	// The slot held seq-window or older, released or skipped long since.
	sl.seq, sl.state, sl.at = seq, slotHeld, now
	sl.buf = append(sl.buf[:0], pkt...)
	r.held++
	r.countIn(rebuilt)
	if !r.ordered {
		r.release(sl)
	}
}

func (r *receiver) countIn(rebuilt bool) {
	if rebuilt {
		r.stats.recovered.Add(1)
	} else {
		r.stats.dataReceived.Add(1)
	}
}

func (r *receiver) release(sl *rxSlot) {
	sl.state = slotReleased
	r.held--
	r.deliver(sl.buf)
}

// advance releases packets in sequence from next, and decides about the gap it
// stops at: skip it if its block is over or the oldest held packet has waited Hold,
// else set the deadline.
func (r *receiver) advance(now time.Time) {
	for {
		sl := r.slot(r.next)
		if sl.seq == r.next && sl.state == slotHeld {
			r.release(sl)
			r.next++
			continue
		}
		if sl.seq == r.next && sl.state == slotReleased {
			r.next++
			continue
		}
		if r.held == 0 {
			r.deadline = time.Time{}
			return
		}
		// A gap with packets waiting behind it.
		if seqAfter(r.maxStart, r.next) {
			// A later block has begun: every packet of the gap's block that will
			// come has come, and its parity could not rebuild the gap.
			r.skip()
			continue
		}
		if r.hopeless(r.next) {
			// Its block's parity has begun: its missing data packets, sent before,
			// are lost, and the parity still to come cannot make up for them.
			r.skip()
			continue
		}
		if dl := r.oldestHeld().Add(r.hold); now.Before(dl) {
			r.deadline = dl
			return
		}
		r.skip()
	}
}

// hopeless reports whether the block holding seq cannot be rebuilt even if the rest of
// its parity comes. Parity follows all of a block's data, in index order, so once
// parity j has come, only parity j+1..M-1 can still help.
func (r *receiver) hopeless(seq uint32) bool {
	var shape parityPacket
	np, last := 0, -1
	for i := range r.par {
		if q := &r.par[i]; q.used && seq-q.p.first < uint32(q.p.count) {
			shape = q.p
			np++
			last = max(last, int(q.p.index))
		}
	}
	if np == 0 {
		return false
	}
	present := 0
	for i := range uint32(shape.count) {
		if r.slot(shape.first + i).has(shape.first + i) {
			present++
		}
	}
	return present+np+int(shape.m)-1-last < int(shape.count)
}

// skip gives up the packet at next.
func (r *receiver) skip() {
	sl := r.slot(r.next)
	sl.seq, sl.state, sl.buf = r.next, slotSkipped, sl.buf[:0]
	r.stats.unrepaired.Add(1)
	r.next++
}

// forceTo releases or skips everything before target.
func (r *receiver) forceTo(target uint32) {
	for seqAfter(target, r.next) {
		sl := r.slot(r.next)
		switch {
		case sl.seq == r.next && sl.state == slotHeld:
			r.release(sl)
			r.next++
		case sl.seq == r.next && sl.state == slotReleased:
			r.next++
		default:
			r.skip()
		}
	}
}

// oldestHeld returns when the longest-waiting held packet arrived.
func (r *receiver) oldestHeld() time.Time {
	var oldest time.Time
	for i := uint32(1); i < window; i++ {
		sl := r.slot(r.next + i)
		if sl.seq == r.next+i && sl.state == slotHeld && (oldest.IsZero() || sl.at.Before(oldest)) {
			oldest = sl.at
		}
	}
	return oldest
}

// reset restarts the receiver at seq: what is held is released in order first.
func (r *receiver) reset(seq uint32) {
	if r.started {
		for i := uint32(0); i < window && r.held > 0; i++ {
			if sl := r.slot(r.next + i); sl.seq == r.next+i && sl.state == slotHeld {
				r.release(sl)
			}
		}
	}
	for i := range r.slots {
		r.slots[i].state = slotEmpty
	}
	for i := range r.par {
		r.par[i].used = false
	}
	r.started, r.next, r.maxStart, r.held = true, seq, seq, 0
	r.deadline, r.farCount = time.Time{}, 0
}

// dropParity frees the parity slots of the block starting at first.
func (r *receiver) dropParity(first uint32) {
	for i := range r.par {
		if r.par[i].used && r.par[i].p.first == first {
			r.par[i].used = false
		}
	}
}

// tryDecode rebuilds the missing packets of the block starting at first if enough of
// its packets are here, and frees its parity once nothing is missing.
func (r *receiver) tryDecode(first uint32, now time.Time) {
	var shape parityPacket
	var parity [MaxShards][]byte
	np := 0
	for i := range r.par {
		if q := &r.par[i]; q.used && q.p.first == first {
			shape = q.p
			parity[q.p.index] = q.p.shard
			np++
		}
	}
	if np == 0 {
		return
	}
	count := int(shape.count)
	present := 0
	for i := range count {
		if r.slot(first + uint32(i)).has(first + uint32(i)) {
			present++
		}
	}
	if present == count {
		r.dropParity(first)
		return
	}
	if present+np < count {
		return
	}
	k, m, size := int(shape.k), int(shape.m), len(shape.shard)
	sc := r.scratch
	views := sc.views[:k+m]
	for i := range k {
		seq := first + uint32(i)
		switch sl := r.slot(seq); {
		case i >= count:
			views[i] = sc.zero[:size]
		case sl.has(seq):
			if lenPrefix+len(sl.buf) > size {
				// The parity says the block's longest packet is shorter than this one.
				r.stats.malformed.Add(1)
				r.dropParity(first)
				return
			}
			b := sc.buf(i, size)
			binary.BigEndian.PutUint16(b, uint16(len(sl.buf)))
			copy(b[lenPrefix:], sl.buf)
			clear(b[lenPrefix+len(sl.buf):])
			views[i] = b
		default:
			views[i] = sc.buf(i, size)[:0]
		}
	}
	for j := range m {
		views[k+j] = parity[j]
	}
	codec, err := sc.codecs.get(shape.k, shape.m)
	if err == nil {
		err = codec.ReconstructData(views)
	}
	r.dropParity(first)
	if err != nil {
		r.stats.malformed.Add(1)
		return
	}
	for i := range count {
		seq := first + uint32(i)
		if r.slot(seq).has(seq) {
			continue
		}
		pkt, ok := unpad(views[i])
		if !ok {
			// Forged or mismatched parity: nothing it rebuilt is trusted.
			r.stats.corrupt.Add(1)
			continue
		}
		r.store(seq, pkt, now, true)
	}
}

// unpad returns the packet inside a rebuilt shard: its length, the packet, zeros. It
// refuses a shard whose length or padding is wrong, or whose packet cannot be QUIC.
func unpad(shard []byte) ([]byte, bool) {
	if len(shard) < lenPrefix {
		return nil, false
	}
	n := int(binary.BigEndian.Uint16(shard))
	if n == 0 || lenPrefix+n > len(shard) {
		return nil, false
	}
	for _, b := range shard[lenPrefix+n:] {
		if b != 0 {
			return nil, false
		}
	}
	pkt := shard[lenPrefix : lenPrefix+n]
	return pkt, isQUIC(pkt)
}
