package lane

import (
	"testing"
	"time"
)

// run sends at rate bytes a second for d in 1,000-byte datagrams, feeding the breaker a
// round trip from rtt at each tenth of a second, and returns the share it allowed.
func runBreaker(b *breaker, start time.Time, d time.Duration, rate float64, rtt func(time.Time) (srtt, minRTT time.Duration)) (share float64, end time.Time) {
	const size = 1000
	step := time.Duration(float64(time.Second) * size / rate)
	allowed, total := 0, 0
	nextObs := start
	for now := start; now.Before(start.Add(d)); now = now.Add(step) {
		if !now.Before(nextObs) {
			srtt, minRTT := rtt(now)
			b.observe(srtt, minRTT, now)
			nextObs = now.Add(100 * time.Millisecond)
		}
		total++
		if b.allow(size, now) {
			allowed++
		}
	}
	return float64(allowed) / float64(total), start.Add(d)
}

// TestBreakerIgnoresLoss: a round trip that stays at its base, whatever the loss, never
// trips the breaker, even at a rate far above the floor.
func TestBreakerIgnoresLoss(t *testing.T) {
	b := newBreaker(32 << 10)
	steady := func(time.Time) (time.Duration, time.Duration) { return 820 * time.Millisecond, 800 * time.Millisecond }
	share, _ := runBreaker(b, time.Unix(1000, 0), 30*time.Second, 2e6, steady)
	if share != 1 || b.limit() != 0 {
		t.Fatalf("allowed %.3f with limit %.0f on a path with no queue", share, b.limit())
	}
}

// TestBreakerTripsOnQueue: a queue that builds (the round trip grows past its base by
// more than the threshold) cuts the rate, never below the floor; once the queue drains
// the limit grows back and is lifted.
func TestBreakerTripsOnQueue(t *testing.T) {
	const floor = 32 << 10
	b := newBreaker(floor)
	queued := func(time.Time) (time.Duration, time.Duration) { return 900 * time.Millisecond, 200 * time.Millisecond }
	share, now := runBreaker(b, time.Unix(1000, 0), 10*time.Second, 1e6, queued)
	if share > 0.5 {
		t.Fatalf("allowed %.2f of a flow while a queue of 700 ms built", share)
	}
	if lim := b.limit(); lim < floor || lim > 100e3 {
		t.Fatalf("limit %.0f B/s after 10 s of queueing; want down near the floor %d", lim, floor)
	}
	// A flow at the floor still goes through in full while the queue persists.
	share, now = runBreaker(b, now, 5*time.Second, floor*0.9, queued)
	if share < 0.99 {
		t.Fatalf("a flow under the floor was throttled to %.2f", share)
	}
	clear := func(time.Time) (time.Duration, time.Duration) { return 210 * time.Millisecond, 200 * time.Millisecond }
	runBreaker(b, now, 20*time.Second, floor*0.9, clear)
	if lim := b.limit(); lim != 0 {
		t.Fatalf("limit %.0f still set 20 s after the queue drained", lim)
	}
}
