package lane

import (
	"sync"
	"sync/atomic"
	"time"
)

// The breaker: a token bucket with no limit until the round trip shows a queue building
// (queueing delay over queueLimit or half the base round trip, whichever is more), then
// half the rate the lane was sending at, never below the floor; it grows back by a
// quarter a second once the queue is gone and lifts the limit when it no longer binds.
// Random loss leaves the round trip alone, so it never trips the breaker.
const (
	queueLimit   = 100 * time.Millisecond
	growEvery    = time.Second
	growFactor   = 1.25
	cutFactor    = 0.5
	burstTime    = 100 * time.Millisecond
	meterWindow  = time.Second
	minBurst     = 16 << 10
	liftHeadroom = 4 // lift the limit once it is this many times the rate sent
)

// breaker limits what a lane sends when the path shows real congestion.
type breaker struct {
	floor     float64
	throttled atomic.Uint64

	mu     sync.Mutex
	rate   float64 // bytes a second allowed; 0 is no limit
	tokens float64
	filled time.Time // when tokens were last topped up
	// The meter of what was sent: bytes in the current window and the last window's rate.
	meterStart time.Time
	meterBytes float64
	sendRate   float64
	changed    time.Time // when rate last changed
}

func newBreaker(floor float64) *breaker { return &breaker{floor: floor} }

// allow reports whether n more bytes may be sent now, and counts them if so.
func (b *breaker) allow(n int, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if el := now.Sub(b.meterStart); el >= meterWindow {
		b.sendRate = b.meterBytes / el.Seconds()
		b.meterStart, b.meterBytes = now, 0
	}
	if b.rate > 0 {
		burst := max(b.rate*burstTime.Seconds(), minBurst)
		b.tokens = min(burst, b.tokens+b.rate*now.Sub(b.filled).Seconds())
		b.filled = now
		if b.tokens < float64(n) {
			b.throttled.Add(1)
			return false
		}
		b.tokens -= float64(n)
	}
	b.meterBytes += float64(n)
	return true
}

// observe takes the path's standing (jitter taken out) and base round trip and moves the limit.
func (b *breaker) observe(rtt, minRTT time.Duration, now time.Time) {
	if rtt <= 0 || minRTT <= 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	queued := rtt - minRTT
	switch {
	case queued > max(queueLimit, minRTT/2):
		if now.Sub(b.changed) < max(rtt, 200*time.Millisecond) {
			return // one cut per round trip: the last one has not shown yet
		}
		sending := max(b.sendRate, b.meterBytes/max(now.Sub(b.meterStart).Seconds(), 0.001))
		if b.rate > 0 {
			sending = min(sending, b.rate)
		}
		b.rate = max(b.floor, sending*cutFactor)
		b.tokens = min(b.tokens, b.rate*burstTime.Seconds())
		b.filled, b.changed = now, now
	case b.rate > 0 && now.Sub(b.changed) >= growEvery:
		b.rate *= growFactor
		b.changed = now
		if b.rate > liftHeadroom*max(b.sendRate, b.floor) {
			b.rate = 0
		}
	}
}

// limit is the current rate limit, 0 for none.
func (b *breaker) limit() float64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.rate
}
