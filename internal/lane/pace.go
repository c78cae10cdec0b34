package lane

import (
	"sync"
	"time"
)

// Pacing: a burst (a large datagram split into fragments, a video frame) leaves at most
// paceBurst packets back to back, then one every paceGap (about 50 MB/s of full
// packets). The receiving socket's queue of non-QUIC packets holds only 256 in quic-go (32 upstream),
// and a radio modem's buffer often fewer, so an unpaced burst of 60 loses a third.
const (
	paceBurst = 16
	paceGap   = 50 * time.Microsecond
)

// pacer hands out send slots.
type pacer struct {
	mu     sync.Mutex
	tokens float64 // packets that may leave now; negative when slots are reserved ahead
	filled time.Time
	gap    time.Duration // between packets beyond a burst, if longer than paceGap
}

// setGap spaces packets beyond a burst by gap, or by paceGap if that is longer.
func (p *pacer) setGap(gap time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.gap = gap
}

// reserve takes the next slot and says how long to wait for it.
func (p *pacer) reserve(now time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	gap := max(paceGap, p.gap)
	if p.filled.IsZero() {
		p.tokens = paceBurst
	} else {
		p.tokens = min(paceBurst, p.tokens+float64(now.Sub(p.filled))/float64(gap))
	}
	p.filled = now
	p.tokens--
	if p.tokens >= 0 {
		return 0
	}
	return time.Duration(-p.tokens * float64(gap))
}

// Packet buffers: every packet the lane seals, opens or hands to a stream passes through
// one, so they come from a pool rather than the heap each time.
var packetPool = sync.Pool{New: func() any { return new([MaxPacket + 1]byte) }}

// getPacket returns an empty buffer with room for any lane packet.
func getPacket() []byte { return packetPool.Get().(*[MaxPacket + 1]byte)[:0] }

// putPacket returns a buffer from getPacket to the pool.
func putPacket(b []byte) {
	if cap(b) == MaxPacket+1 {
		packetPool.Put((*[MaxPacket + 1]byte)(b[:MaxPacket+1]))
	}
}
