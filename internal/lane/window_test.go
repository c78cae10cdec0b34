package lane

import (
	"testing"
	"time"
)

// windowRun feeds a window control the standing and base round trips rtt gives, every
// 250 ms for d as a lane's pings do, and returns the window at the end.
func windowRun(w *windowControl, start time.Time, d time.Duration, rtt func(time.Time) (standing, base time.Duration)) int {
	for t := time.Duration(0); t < d; t += 250 * time.Millisecond {
		standing, base := rtt(start.Add(t))
		w.mu.Lock()
		w.observeLocked(standing, base, true)
		w.mu.Unlock()
	}
	return w.window()
}

func steady(standing, base time.Duration) func(time.Time) (time.Duration, time.Duration) {
	return func(time.Time) (time.Duration, time.Duration) { return standing, base }
}

func TestWindow(t *testing.T) {
	base := 200 * time.Millisecond
	start := time.Unix(1000, 0)

	t.Run("a path with no queue lets the window grow to its largest", func(t *testing.T) {
		w := newWindowControl(make(chan struct{}))
		if got := windowRun(w, start, 20*time.Second, steady(base, base)); got != maxWindow {
			t.Errorf("got a window of %d packets, want %d", got, maxWindow)
		}
	})
	t.Run("jitter below the queue threshold does not shrink it", func(t *testing.T) {
		w := newWindowControl(make(chan struct{}))
		jitter := func(now time.Time) (time.Duration, time.Duration) {
			// The standing round trip wanders up to 30 ms over the base.
			return base + time.Duration(now.UnixMilli()%31)*time.Millisecond, base
		}
		if got := windowRun(w, start, 20*time.Second, jitter); got < initialWindow {
			t.Errorf("got a window of %d packets, want at least the initial %d", got, initialWindow)
		}
	})
	t.Run("a standing queue shrinks it to the minimum", func(t *testing.T) {
		w := newWindowControl(make(chan struct{}))
		windowRun(w, start, 10*time.Second, steady(base, base))
		if got := windowRun(w, start.Add(10*time.Second), 15*time.Second, steady(base+150*time.Millisecond, base)); got != minWindow {
			t.Errorf("got a window of %d packets after 15 s of a 150 ms queue, want %d", got, minWindow)
		}
	})
}

// TestJitterIsNotAQueue: round trips spread evenly over 200–300 ms, as a radio with
// ±25 ms of jitter each way gives, with no queue behind them. The smoothed round trip
// sits 50 ms over the least, which a window moved on it read as a queue; the lane's
// standing round trip must not.
func TestJitterIsNotAQueue(t *testing.T) {
	client, _ := newQUICPair(t, nil).lanes(t, Config{})
	for i := range 80 {
		client.sample(200*time.Millisecond + time.Duration(i*37%101)*time.Millisecond)
	}
	client.mu.Lock()
	standing, base := client.standingLocked(), client.minRTTLocked()
	client.mu.Unlock()
	if queued := standing - base; queued > queueHigh {
		t.Errorf("got a standing round trip %v over its base %v, want under %v", queued, base, queueHigh)
	}
	if got := client.brk.limit(); got != 0 {
		t.Errorf("got the breaker limiting to %.0f B/s, want no limit", got)
	}
}
