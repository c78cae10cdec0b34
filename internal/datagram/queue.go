package datagram

import (
	"context"
	"errors"
	"sync"
	"time"
)

// maxRetainedBuffer is the largest buffer a Queue with a byte bound keeps for reuse.
const maxRetainedBuffer = 2048

// DefaultQueueCapacity is a Queue size for one circuit direction: twice quic-go's
// 32-datagram send queue, so a short stall of the sender loses nothing and a long one
// loses the oldest, stalest datagrams.
const DefaultQueueCapacity = 64

// ErrClosed is returned by Pop once the Queue is closed.
var ErrClosed = errors.New("datagram: queue closed")

// Queue is a bounded FIFO of datagrams between a reader that must never block (the
// agent's UDP read loop) and a sender that may (a goroutine calling quic-go's
// SendDatagram, which blocks once 32 datagrams wait). When full, Push drops the oldest
// datagram: for telemetry and video the newest data is worth the most.
//
// Push may be called from any number of goroutines; Pop from one goroutine at a time,
// because the slice it returns is recycled by its next call. Queued datagrams are
// copied into buffers the Queue reuses, so it holds at most capacity of them (each as
// large as the largest pushed) and allocates nothing in steady state.
type Queue struct {
	mu     sync.Mutex
	slots  [][]byte    // ring of queued datagrams
	at     []time.Time // when each slot was pushed, kept only with a maximum age
	maxAge time.Duration
	stale  uint64
	head   int    // oldest queued
	n      int    // queued
	spare  []byte // buffer last returned by Pop, recycled by the next Pop
	bytes  int    // payload bytes queued
	// maxBytes, when set, bounds bytes: Push drops the oldest until the new datagram fits.
	maxBytes int
	dropped  uint64
	closed   bool

	ready chan struct{} // holds a token while datagrams may be waiting
	done  chan struct{} // closed by Close
}

// NewQueue returns a Queue holding up to capacity datagrams; capacity < 1 means
// DefaultQueueCapacity.
func NewQueue(capacity int) *Queue {
	if capacity < 1 {
		capacity = DefaultQueueCapacity
	}
	return &Queue{
		slots: make([][]byte, capacity),
		ready: make(chan struct{}, 1),
		done:  make(chan struct{}),
	}
}

// Push copies b to the back of the queue without blocking, dropping the oldest
// datagram if the queue is full. It returns false, queuing nothing, once the Queue is
// closed.
func (q *Queue) Push(b []byte) bool {
	queued, _ := q.PushEvicting(b)
	return queued
}

// PushEvicting is Push that also reports whether the oldest datagram was dropped to
// make room, so a caller can count its drops where they happen, under the lock Push
// takes anyway.
func (q *Queue) PushEvicting(b []byte) (queued, evicted bool) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return false, false
	}
	for q.n == len(q.slots) || q.n > 0 && q.maxBytes > 0 && q.bytes+len(b) > q.maxBytes {
		q.bytes -= len(q.slots[q.head])
		q.head = (q.head + 1) % len(q.slots)
		q.n--
		q.dropped++
		evicted = true
	}
	tail := (q.head + q.n) % len(q.slots)
	q.slots[tail] = append(q.slots[tail][:0], b...)
	q.bytes += len(b)
	if q.maxAge > 0 {
		q.at[tail] = time.Now()
	}
	q.n++
	q.mu.Unlock()

	select {
	case q.ready <- struct{}{}:
	default: // a token is already waiting
	}
	return true, evicted
}

// Pop removes and returns the oldest datagram, waiting until there is one. The slice is
// valid until the next call to Pop. It returns ctx's error when ctx ends first, and
// ErrClosed once the Queue is closed (datagrams still queued are discarded).
func (q *Queue) Pop(ctx context.Context) ([]byte, error) {
	for {
		q.mu.Lock()
		if q.closed {
			q.mu.Unlock()
			return nil, ErrClosed
		}
		for q.maxAge > 0 && q.n > 0 && time.Since(q.at[q.head]) > q.maxAge {
			q.bytes -= len(q.slots[q.head])
			q.head = (q.head + 1) % len(q.slots) // stale: late telemetry is worse than none
			q.n--
			q.stale++
		}
		if q.n > 0 {
			b := q.slots[q.head]
			q.bytes -= len(b)
			// The slot takes the buffer Pop returned last time, unless that one is larger
			// than a packet: a queue sized for thousands of packets must not keep as many
			// buffers of the largest datagram it once held.
			spare := q.spare[:0]
			if q.maxBytes > 0 && cap(spare) > maxRetainedBuffer {
				spare = nil
			}
			q.slots[q.head] = spare
			q.spare = b
			q.head = (q.head + 1) % len(q.slots)
			q.n--
			q.mu.Unlock()
			return b, nil
		}
		q.mu.Unlock()

		select {
		case <-q.ready:
		case <-q.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// SetMaxAge makes Pop discard datagrams queued for longer than d (0: keep them all), so a
// flow that waited out a blackout resumes with fresh data instead of a backlog of stale
// telemetry.
func (q *Queue) SetMaxAge(d time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if d > 0 && q.at == nil {
		q.at = make([]time.Time, len(q.slots))
		for i := range q.n {
			q.at[(q.head+i)%len(q.slots)] = time.Now()
		}
	}
	q.maxAge = d
}

// SetMaxBytes bounds the bytes of the datagrams queued (0: no bound besides capacity):
// Push drops the oldest until a new datagram fits, as when the queue is full. A queue
// with room for a video flow's bursts (thousands of packets) is bounded in memory by
// this, and in time by SetMaxAge, rather than by a count sized for telemetry. With a
// bound set, Pop keeps no buffer larger than a packet for reuse.
func (q *Queue) SetMaxBytes(n int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.maxBytes = max(n, 0)
}

// OldestAge returns how long the oldest queued datagram has waited: 0 when none waits
// or the Queue has no maximum age (it keeps push times only then).
func (q *Queue) OldestAge() time.Duration {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.n == 0 || q.maxAge == 0 {
		return 0
	}
	return time.Since(q.at[q.head])
}

// Stale returns how many datagrams Pop discarded for their age.
func (q *Queue) Stale() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.stale
}

// Close wakes Pop with ErrClosed and makes Push refuse datagrams. Calling it again
// does nothing.
func (q *Queue) Close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.closed {
		q.closed = true
		close(q.done)
	}
}

// Len returns the number of datagrams queued.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}

// Dropped returns how many datagrams Push has dropped to make room.
func (q *Queue) Dropped() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.dropped
}
