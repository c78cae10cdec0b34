package datagram

import (
	"time"
)

// Orderer defaults; see OrdererConfig.
const (
	// DefaultHold is how long a message that follows a gap waits for the gap to fill:
	// under two frames of 30 fps video, and longer than a forward-error-correction
	// block of one frame takes to bring its parity (the frame's burst and the sender's
	// idle flush, a few milliseconds, plus the trip's jitter).
	DefaultHold = 40 * time.Millisecond
	// DefaultMaxHeld is how many messages may wait at once: a keyframe's burst of
	// tens of packets behind one hole, several times over.
	DefaultMaxHeld = 256
)

// OrdererConfig tunes an Orderer. The zero value means every default.
type OrdererConfig struct {
	// Hold is the longest a message waits for the messages before it; then the gap is
	// given up (counted in Skipped) and what waited is released. Zero: DefaultHold.
	Hold time.Duration
	// MaxHeld caps the messages waiting; a message that would not fit gives up the
	// oldest gaps first. Zero: DefaultMaxHeld.
	MaxHeld int
}

// OrderStats counts what an Orderer did.
type OrderStats struct {
	// Released counts messages returned in order, held or not.
	Released uint64
	// Held counts messages that waited for an earlier one.
	Held uint64
	// Skipped counts message IDs given up: never arrived within Hold, or pushed out
	// by MaxHeld.
	Skipped uint64
	// Late counts messages that arrived after their ID was given up. They are returned
	// all the same, out of order: a receiver with a jitter buffer may still use them.
	Late uint64
}

// Orderer releases the messages of one circuit direction in message-ID order. A
// message that follows a gap (one lost, or rebuilt later by forward error correction
// from parity that comes after it) waits, up to Hold, for the gap to fill. An RTP
// video decoder with no jitter buffer of its own (GStreamer's rtph264depay straight
// from udpsrc) throws away a packet older than one it has seen, so a packet FEC
// rebuilds is worth something only if the packets after it wait for it; on a clean
// link nothing waits.
//
// It is not safe for concurrent use. Messages it returns are valid until the next call;
// a message that waited is a copy, made for it.
type Orderer struct {
	hold    time.Duration
	started bool
	next    uint64 // the ID released next
	slots   []orderSlot
	held    int
	out     [][]byte
	stats   OrderStats
}

type orderSlot struct {
	used bool
	id   uint64
	at   time.Time
	msg  []byte
}

// NewOrderer returns an Orderer tuned by cfg.
func NewOrderer(cfg OrdererConfig) *Orderer {
	if cfg.Hold <= 0 {
		cfg.Hold = DefaultHold
	}
	if cfg.MaxHeld <= 0 {
		cfg.MaxHeld = DefaultMaxHeld
	}
	return &Orderer{hold: cfg.Hold, slots: make([]orderSlot, min(cfg.MaxHeld, MessageIDLimit/2))}
}

// Stats returns the counters so far.
func (o *Orderer) Stats() OrderStats { return o.stats }

// Add takes message id, which arrived at now, and returns the messages it releases, in
// order: none while it waits behind a gap; itself and those that waited for it when it
// fills one. now also releases what waited too long.
func (o *Orderer) Add(id uint64, msg []byte, now time.Time) [][]byte {
	o.out = o.out[:0]
	id %= MessageIDLimit
	if !o.started {
		o.started, o.next = true, id
	}
	o.expire(now)
	d := o.diff(id)
	switch {
	case d < 0:
		o.stats.Late++
		o.stats.Released++
		return append(o.out, msg)
	case d == 0 && o.held == 0:
		o.advance()
		o.stats.Released++
		return append(o.out, msg)
	}
	for d >= len(o.slots) { // beyond what may wait: give up the oldest gaps
		o.skipTo(o.lowest())
		o.release()
		d = o.diff(id)
		if o.held == 0 && d >= len(o.slots) {
			o.stats.Skipped += uint64(d)
			o.next = id
			d = 0
		}
	}
	s := &o.slots[id%uint64(len(o.slots))]
	if s.used {
		return o.out // a duplicate: the seal's replay window makes this rare
	}
	*s = orderSlot{used: true, id: id, at: now, msg: append(s.msg[:0], msg...)}
	o.held++
	if d > 0 {
		o.stats.Held++
	}
	o.release()
	return o.out
}

// Poll releases what has waited Hold at now. Call it at Deadline.
func (o *Orderer) Poll(now time.Time) [][]byte {
	o.out = o.out[:0]
	o.expire(now)
	return o.out
}

// Deadline is when the oldest waiting message's hold ends, false if none waits.
func (o *Orderer) Deadline() (time.Time, bool) {
	if o.held == 0 {
		return time.Time{}, false
	}
	return o.slots[o.lowest()%uint64(len(o.slots))].at.Add(o.hold), true
}

// expire gives up the gaps before every message that has waited Hold, appending what
// that releases to o.out.
func (o *Orderer) expire(now time.Time) {
	for o.held > 0 {
		low := o.lowest()
		if now.Before(o.slots[low%uint64(len(o.slots))].at.Add(o.hold)) {
			return
		}
		o.skipTo(low)
		o.release()
	}
}

// release appends the messages waiting from next on, in order, until a gap.
func (o *Orderer) release() {
	for o.held > 0 {
		s := &o.slots[o.next%uint64(len(o.slots))]
		if !s.used || s.id != o.next {
			return
		}
		s.used = false
		o.held--
		// The buffer goes with the message: a message stored later in this call must not
		// overwrite it. Only messages behind a gap are copied, so this allocates little.
		o.out = append(o.out, s.msg)
		s.msg = nil
		o.stats.Released++
		o.advance()
	}
}

// skipTo gives up the IDs from next up to id.
func (o *Orderer) skipTo(id uint64) {
	if d := o.diff(id); d > 0 {
		o.stats.Skipped += uint64(d)
		o.next = id
	}
}

// lowest is the ID of the earliest message waiting; o.held must be over 0.
func (o *Orderer) lowest() uint64 {
	for i := range uint64(len(o.slots)) {
		id := (o.next + i) % MessageIDLimit
		if s := &o.slots[id%uint64(len(o.slots))]; s.used && s.id == id {
			return id
		}
	}
	return o.next // unreachable while o.held > 0
}

func (o *Orderer) advance() { o.next = (o.next + 1) % MessageIDLimit }

// diff is id's distance ahead of next, negative behind, by serial number arithmetic
// over MessageIDLimit.
func (o *Orderer) diff(id uint64) int {
	d := int((id - o.next + MessageIDLimit) % MessageIDLimit)
	if d >= MessageIDLimit/2 {
		d -= MessageIDLimit
	}
	return d
}
