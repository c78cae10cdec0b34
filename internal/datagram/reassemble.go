package datagram

import (
	"errors"
	"fmt"
	"time"
)

// Reassembler defaults; see ReassemblerConfig.
const (
	// DefaultDeadline is how long an incomplete message waits for its other fragments.
	// Telemetry and video older than this are stale, and a lost fragment is never
	// retransmitted: QUIC datagrams are unreliable.
	DefaultDeadline = 500 * time.Millisecond
	// DefaultMaxMessages caps incomplete messages per Reassembler.
	DefaultMaxMessages = 64
	// DefaultMaxBytes caps buffered payload per Reassembler: four largest messages.
	DefaultMaxBytes = 4 * MaxMessageSize

	// recentComplete is how many completed message IDs are remembered, so a late
	// duplicate fragment counts as a duplicate instead of starting a ghost message.
	recentComplete = 64
	// maxRetainedSlab is the largest per-message buffer kept for reuse after its
	// message completes or is dropped; bigger ones go to the garbage collector so
	// idle reassemblers hold little memory.
	maxRetainedSlab = 8 << 10
)

// ErrCountMismatch means a fragment's count differs from that of earlier fragments
// with the same message ID.
var ErrCountMismatch = errors.New("datagram: fragment count differs within message")

// ReassemblerConfig tunes a Reassembler. The zero value means every default.
type ReassemblerConfig struct {
	// Deadline is how long an incomplete message is kept, counted from its first
	// fragment; then it is dropped and counted in DroppedIncomplete.
	// Zero means DefaultDeadline.
	Deadline time.Duration
	// MaxMessages caps incomplete messages held at once; a new message beyond it evicts
	// the oldest, counted in DroppedEvicted. Zero means DefaultMaxMessages.
	MaxMessages int
	// MaxBytes caps payload bytes buffered across incomplete messages; a fragment that
	// would exceed it evicts the oldest messages first. Set it to at least
	// MaxMessageSize or the largest messages can never complete.
	// Zero means DefaultMaxBytes.
	MaxBytes int
	// Now returns the current time; tests pass a fake clock. Nil means time.Now.
	Now func() time.Time
}

// Stats counts what a Reassembler has seen since it was made.
type Stats struct {
	// Delivered counts messages returned by Add, unfragmented ones included.
	Delivered uint64
	// Fragments counts fragments whose header decoded, an unfragmented message being
	// one; those later refused (count mismatch, oversize) also count in Malformed.
	Fragments uint64
	// DroppedIncomplete counts messages dropped because Deadline passed first.
	DroppedIncomplete uint64
	// DroppedEvicted counts incomplete messages evicted to respect MaxMessages or
	// MaxBytes.
	DroppedEvicted uint64
	// Duplicates counts fragments already held or already delivered, ignored.
	Duplicates uint64
	// Malformed counts fragments refused: bad header, count mismatch, or a message
	// growing past MaxMessageSize.
	Malformed uint64
}

// Reassembler rebuilds messages from the fragments of one circuit direction.
// It is not safe for concurrent use: give each circuit direction its own, owned by the
// goroutine that receives that direction's datagrams.
//
// Unfragmented messages pass straight through without being buffered; replay
// protection is the sealing layer's job (its sequence number), not the Reassembler's.
type Reassembler struct {
	deadline    time.Duration
	maxMessages int
	maxBytes    int
	now         func() time.Time

	byID  map[uint64]*partial
	head  *partial // oldest first fragment: first to expire, first to evict
	tail  *partial
	bytes int      // payload bytes buffered in incomplete messages
	free  *partial // recycled partials, linked through next
	out   []byte   // the last message delivered from fragments

	recent     [recentComplete]completed
	recentNext int

	stats Stats
}

// partial is an incomplete message.
type partial struct {
	id         uint64
	count      uint8
	have       uint64 // bit i set: fragment i held
	held       int    // fragments held
	first      time.Time
	data       []byte // fragment payloads in arrival order
	spans      [MaxFragments]span
	prev, next *partial
}

// span locates one fragment's payload in partial.data.
type span struct{ start, end int32 }

// completed remembers a delivered fragmented message.
type completed struct {
	id    uint64
	at    time.Time
	valid bool
}

// NewReassembler returns a Reassembler tuned by cfg.
func NewReassembler(cfg ReassemblerConfig) *Reassembler {
	r := &Reassembler{
		deadline:    cfg.Deadline,
		maxMessages: cfg.MaxMessages,
		maxBytes:    cfg.MaxBytes,
		now:         cfg.Now,
		byID:        make(map[uint64]*partial),
	}
	if r.deadline <= 0 {
		r.deadline = DefaultDeadline
	}
	if r.maxMessages <= 0 {
		r.maxMessages = DefaultMaxMessages
	}
	if r.maxBytes <= 0 {
		r.maxBytes = DefaultMaxBytes
	}
	if r.now == nil {
		r.now = time.Now
	}
	return r
}

// Add takes one opened end-to-end part and returns the message it completes, if any,
// with ok true. An unfragmented message is returned as a slice of frag; a reassembled
// one lives in a buffer the Reassembler reuses, valid until the next call to Add. A
// refused fragment returns an error (also counted in Stats.Malformed); duplicates and
// fragments of evicted messages are dropped silently and counted.
func (r *Reassembler) Add(frag []byte) (msg []byte, ok bool, err error) {
	now := r.now()
	r.expire(now)

	f, err := DecodeFragment(frag)
	if err != nil {
		r.stats.Malformed++
		return nil, false, err
	}
	r.stats.Fragments++
	if f.Count == 1 {
		r.stats.Delivered++
		return f.Payload, true, nil
	}

	p := r.byID[f.MessageID]
	switch {
	case p == nil && r.recentlyCompleted(f.MessageID, now):
		r.stats.Duplicates++
		return nil, false, nil
	case p == nil:
		p = r.start(f.MessageID, f.Count, now)
	case p.count != f.Count:
		r.stats.Malformed++
		return nil, false, fmt.Errorf("%w: message %d has %d fragments, fragment %d says %d",
			ErrCountMismatch, f.MessageID, p.count, f.Index, f.Count)
	}
	bit := uint64(1) << f.Index
	if p.have&bit != 0 {
		r.stats.Duplicates++
		return nil, false, nil
	}
	if len(p.data)+len(f.Payload) > MaxMessageSize {
		r.stats.Malformed++
		r.drop(p)
		return nil, false, fmt.Errorf("%w: message %d grows past %d bytes", ErrTooLarge, f.MessageID, MaxMessageSize)
	}
	for r.bytes+len(f.Payload) > r.maxBytes {
		oldest := r.head
		r.stats.DroppedEvicted++
		r.drop(oldest)
		if oldest == p {
			return nil, false, nil // this message alone does not fit MaxBytes
		}
	}

	start := len(p.data)
	p.data = append(p.data, f.Payload...)
	p.spans[f.Index] = span{int32(start), int32(len(p.data))}
	p.have |= bit
	p.held++
	r.bytes += len(f.Payload)
	if p.held < int(p.count) {
		return nil, false, nil
	}

	r.out = r.out[:0]
	for i := range p.count {
		s := p.spans[i]
		r.out = append(r.out, p.data[s.start:s.end]...)
	}
	r.recent[r.recentNext] = completed{id: p.id, at: now, valid: true}
	r.recentNext = (r.recentNext + 1) % recentComplete
	r.drop(p)
	r.stats.Delivered++
	return r.out, true, nil
}

// Expire drops, and counts in DroppedIncomplete, every incomplete message whose
// Deadline has passed. Add calls it; call it from a timer too if the circuit may fall
// silent, to release memory and keep Stats current.
func (r *Reassembler) Expire() { r.expire(r.now()) }

// Stats returns the counters so far.
func (r *Reassembler) Stats() Stats { return r.stats }

// Pending returns the incomplete messages held and their buffered payload bytes.
func (r *Reassembler) Pending() (messages, bytes int) { return len(r.byID), r.bytes }

// expire drops messages from the oldest while their deadline has passed at now.
func (r *Reassembler) expire(now time.Time) {
	for r.head != nil && now.Sub(r.head.first) >= r.deadline {
		r.stats.DroppedIncomplete++
		r.drop(r.head)
	}
}

// recentlyCompleted reports whether message id was delivered within the deadline.
func (r *Reassembler) recentlyCompleted(id uint64, now time.Time) bool {
	for _, c := range r.recent {
		if c.valid && c.id == id && now.Sub(c.at) < r.deadline {
			return true
		}
	}
	return false
}

// start begins a message, evicting the oldest if MaxMessages are already held.
func (r *Reassembler) start(id uint64, count uint8, now time.Time) *partial {
	if len(r.byID) >= r.maxMessages {
		r.stats.DroppedEvicted++
		r.drop(r.head)
	}
	p := r.free
	if p != nil {
		r.free = p.next
		data := p.data[:0]
		*p = partial{data: data}
	} else {
		p = &partial{}
	}
	p.id, p.count, p.first = id, count, now
	p.prev = r.tail
	if r.tail != nil {
		r.tail.next = p
	} else {
		r.head = p
	}
	r.tail = p
	r.byID[id] = p
	return p
}

// drop forgets p and recycles it.
func (r *Reassembler) drop(p *partial) {
	if p.prev != nil {
		p.prev.next = p.next
	} else {
		r.head = p.next
	}
	if p.next != nil {
		p.next.prev = p.prev
	} else {
		r.tail = p.prev
	}
	delete(r.byID, p.id)
	r.bytes -= len(p.data)
	if cap(p.data) > maxRetainedSlab {
		p.data = nil
	}
	p.prev, p.next = nil, r.free
	r.free = p
}
