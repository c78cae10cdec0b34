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
		w.observeLocked(start.Add(t), standing, standing, base, true, false)
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
		w := newWindowControl(make(chan struct{}), nil)
		if got := windowRun(w, start, 20*time.Second, steady(base, base)); got != maxWindow {
			t.Errorf("got a window of %d packets, want %d", got, maxWindow)
		}
	})
	t.Run("jitter below the queue threshold does not shrink it", func(t *testing.T) {
		w := newWindowControl(make(chan struct{}), nil)
		jitter := func(now time.Time) (time.Duration, time.Duration) {
			// The standing round trip wanders up to 30 ms over the base.
			return base + time.Duration(now.UnixMilli()%31)*time.Millisecond, base
		}
		if got := windowRun(w, start, 20*time.Second, jitter); got < initialWindow {
			t.Errorf("got a window of %d packets, want at least the initial %d", got, initialWindow)
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

// ackRun feeds a window control the acknowledgements of one segment every 2 ms for d,
// each segment having taken rtt(its send time) to be acknowledged, as a lane's streams
// do, and returns the window at the end.
func ackRun(w *windowControl, zero time.Time, from, d time.Duration, rtt func(time.Duration) time.Duration) int {
	for at := from; at < from+d; at += 2 * time.Millisecond {
		sentAt := at - rtt(at)
		seg := kcpSegment{ts: uint32(sentAt / time.Millisecond)}
		w.mu.Lock()
		w.sentLocked(seg, zero.Add(sentAt))
		w.ackedLocked(seg, zero.Add(at))
		w.mu.Unlock()
	}
	return w.window()
}

// TestWaitToLeaveIsNotTheRoundTrip: a segment that waited for its pacing slot comes
// back with a round trip less that wait, so that the window never reads its own
// pacer's queue as the path's; another stream's segment of the same number does not.
func TestWaitToLeaveIsNotTheRoundTrip(t *testing.T) {
	zero := time.Unix(3000, 0)
	w := newWindowControl(make(chan struct{}), nil)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.sentLocked(kcpSegment{conv: 1, ts: 0, sn: 0}, zero) // KCP's clock
	waited := kcpSegment{conv: 1, ts: 1000, sn: 1}
	w.sentLocked(waited, zero.Add(1080*time.Millisecond)) // 80 ms in the pacer
	w.ackedLocked(waited, zero.Add(1230*time.Millisecond))
	if got := w.baseNow; got != 150*time.Millisecond {
		t.Errorf("got a round trip of %v for a segment that waited 80 ms of 230, want 150ms", got)
	}
	w.ackedLocked(kcpSegment{conv: 2, ts: 1000, sn: 1}, zero.Add(1240*time.Millisecond))
	if got := w.roundMost; got != 240*time.Millisecond {
		t.Errorf("got a round trip of %v for another stream's segment 1, want its own 240ms", got)
	}
}

// fixedRTT is a path on which every segment takes d to be acknowledged.
func fixedRTT(d time.Duration) func(time.Duration) time.Duration {
	return func(time.Duration) time.Duration { return d }
}

// filledWindow returns a window control whose streams always fill the window.
func filledWindow() *windowControl {
	w := newWindowControl(make(chan struct{}), nil)
	w.heldBack = func() bool { return true }
	return w
}

// setWindow sets w's window to packets.
func setWindow(w *windowControl, packets float64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.total = packets
}

func TestWindowFromAcknowledgements(t *testing.T) {
	zero := time.Unix(2000, 0)
	base := 150 * time.Millisecond

	t.Run("a queue in the acknowledged round trips shrinks it within seconds", func(t *testing.T) {
		// The streams do not fill the window, so it cannot tell whether the queue
		// follows it: it takes the queue for its own.
		w := newWindowControl(make(chan struct{}), nil)
		ackRun(w, zero, time.Second, 5*time.Second, fixedRTT(base))
		if got := ackRun(w, zero, 6*time.Second, 4*time.Second, fixedRTT(base+150*time.Millisecond)); got != minWindow {
			t.Errorf("got a window of %d packets after 4 s of a 150 ms queue, want %d", got, minWindow)
		}
	})
	t.Run("a queue that follows the window shrinks it until the queue is gone", func(t *testing.T) {
		// Every packet over 200 in flight waits 1 ms in the queue: the window settles
		// where the queue is under queueHigh, and the base stays the path's (before, the
		// standing queue aged into the base, which crept up 30 ms every 10 s).
		w := filledWindow()
		ackRun(w, zero, time.Second, 2*time.Second, fixedRTT(base))
		setWindow(w, 1000)
		queue := func(time.Duration) time.Duration {
			return base + time.Duration(max(0, w.total-200))*time.Millisecond
		}
		got := ackRun(w, zero, 3*time.Second, 20*time.Second, queue)
		if got < 150 || got > 245 {
			t.Errorf("got a window of %d packets, want 150–245 (a queue of 0–45 ms)", got)
		}
		if b := w.baseLocked(); b != base {
			t.Errorf("got a base round trip of %v, want the path's %v", b, base)
		}
	})
	t.Run("a round trip that rises for good becomes the base within a second", func(t *testing.T) {
		// 50 ms, then 250 ms that no window changes (a longer route): the window halves,
		// finds the delay did not follow, and grows again on the new base. Before, it sat
		// at its floor until the 50 ms samples aged out 5–10 s later.
		w := filledWindow()
		ackRun(w, zero, time.Second, 6*time.Second, fixedRTT(50*time.Millisecond))
		grown := w.window()
		got := ackRun(w, zero, 7*time.Second, 3*time.Second, fixedRTT(250*time.Millisecond))
		if b := w.baseLocked(); b != 250*time.Millisecond {
			t.Errorf("got a base round trip of %v 3 s after the path's rose to 250 ms, want 250ms", b)
		}
		if got < grown/4 {
			t.Errorf("got a window of %d packets 3 s after the round trip rose, want at least a quarter of the %d before", got, grown)
		}
	})
	t.Run("a long path's window opens in a few round trips", func(t *testing.T) {
		// 800 ms with no queue: the growth speeds up round by round to doubling. At
		// ×1.15 a round the window was 380 packets after these seven rounds.
		w := filledWindow()
		if got := ackRun(w, zero, time.Second, 6*time.Second, fixedRTT(800*time.Millisecond)); got < 1000 {
			t.Errorf("got a window of %d packets after 6 s at 800 ms with no queue, want at least 1000", got)
		}
	})
	t.Run("a queue ends the ramp at what the path delivered", func(t *testing.T) {
		// After the ramp, a queue appears: the window falls to the segments the path
		// delivered in the round (an acknowledgement every 2 ms, 75 a 150 ms round),
		// and grows from there no faster than ×1.15 a round though the queue drains.
		w := filledWindow()
		ackRun(w, zero, time.Second, 1600*time.Millisecond, fixedRTT(base))
		setWindow(w, 1000)
		ackRun(w, zero, 2600*time.Millisecond, 400*time.Millisecond, fixedRTT(base+30*time.Millisecond))
		if got := w.window(); got > 80 {
			t.Errorf("got a window of %d packets when a ramp met a queue, want what a round delivered, 75", got)
		}
		if got := ackRun(w, zero, 3*time.Second, 800*time.Millisecond, fixedRTT(base)); got > 250 {
			t.Errorf("got a window of %d packets five rounds after the queue drained, want no more than ×1.15 a round (under 250)", got)
		}
	})
	t.Run("a window its streams do not fill does not grow", func(t *testing.T) {
		// No stream is held back by the window (there is none): an idle or
		// application-limited lane, whose round trips say nothing about a larger window.
		w := newWindowControl(make(chan struct{}), nil)
		if got := ackRun(w, zero, time.Second, 10*time.Second, fixedRTT(base)); got != initialWindow {
			t.Errorf("got a window of %d packets, want the initial %d", got, initialWindow)
		}
	})
	t.Run("round trips spread by jitter past the queue threshold do not shrink it", func(t *testing.T) {
		// LTE-like: 100 ms of jitter in every round, whose least sample sits 60 ms over
		// the base (over queueHigh and a quarter of the base), with no queue behind it.
		w := newWindowControl(make(chan struct{}), nil)
		ackRun(w, zero, time.Second, 200*time.Millisecond, fixedRTT(base))
		jitter := func(at time.Duration) time.Duration {
			return base + 60*time.Millisecond + time.Duration(at.Milliseconds()*37%101)*time.Millisecond
		}
		if got := ackRun(w, zero, 1200*time.Millisecond, 4*time.Second, jitter); got < initialWindow*3/4 {
			t.Errorf("got a window of %d packets, want no less than %d", got, initialWindow*3/4)
		}
	})
}

// TestLossOverTheUsualShare: a round's share of segments sent again counts as a queue's
// overflow only well over the path's usual share, so that a radio's random loss, at any
// steady rate, never shrinks the window.
func TestLossOverTheUsualShare(t *testing.T) {
	rounds := func(w *windowControl, n int, share float64) (congested int) {
		for range n {
			if w.lossCongestedLocked(1000, uint64(share*1000)) {
				congested++
			}
		}
		return congested
	}
	t.Run("steady random loss at any rate is not a queue", func(t *testing.T) {
		for _, share := range []float64{0, 0.03, 0.1, 0.3} {
			w := newWindowControl(make(chan struct{}), nil)
			if got := rounds(w, 100, share); got != 0 {
				t.Errorf("got %d of 100 rounds at a steady %.0f %% read as a queue, want none", got, share*100)
			}
		}
	})
	t.Run("a burst of drops over the usual share is", func(t *testing.T) {
		w := newWindowControl(make(chan struct{}), nil)
		rounds(w, lossRounds, 0.03)
		if rounds(w, 1, 0.08) != 0 {
			t.Error("got a round at 8 % over a usual 3 % read as a queue, want not (under twice it and 3 points)")
		}
		if rounds(w, 1, 0.2) != 1 {
			t.Error("got a round at 20 % over a usual 3 % not read as a queue, want it read as one")
		}
	})
	t.Run("no verdict before the usual share is known, nor on a few segments", func(t *testing.T) {
		w := newWindowControl(make(chan struct{}), nil)
		if got := rounds(w, lossRounds/2, 0.5); got != 0 {
			t.Errorf("got %d of the first %d rounds read as a queue, want none", got, lossRounds/2)
		}
		w = newWindowControl(make(chan struct{}), nil)
		rounds(w, lossRounds, 0)
		if w.lossCongestedLocked(minLossSample-1, minLossSample-1) {
			t.Errorf("got a round of %d segments, all sent again, read as a queue, want too few to tell", minLossSample-1)
		}
	})
	t.Run("a queue's overflow shrinks the window though its delay is under the threshold", func(t *testing.T) {
		w := newWindowControl(make(chan struct{}), nil)
		base := 60 * time.Millisecond
		w.mu.Lock()
		w.observeLocked(time.Unix(1000, 0), base+20*time.Millisecond, base+30*time.Millisecond, base, true, true)
		w.mu.Unlock()
		shrunk := float64(initialWindow) * windowShrink
		if got, want := w.window(), int(shrunk); got != want {
			t.Errorf("got a window of %d packets, want %d", got, want)
		}
	})
}

// TestStreamsPacedAtTheWindowsRate: beyond a burst the streams' packets leave at 1.5
// windows per base round trip, not at the machine's rate, so a window grown at a
// round's end never reaches the radio as one burst.
func TestStreamsPacedAtTheWindowsRate(t *testing.T) {
	var p pacer
	w := newWindowControl(make(chan struct{}), &p)
	ackRun(w, time.Unix(4000, 0), time.Second, time.Second, fixedRTT(200*time.Millisecond))
	w.mu.Lock()
	w.total = 400
	w.applyLocked()
	w.mu.Unlock()
	now := time.Now()
	var wait time.Duration
	for range paceBurst + 300 {
		wait = p.reserve(now)
	}
	// 300 packets past the burst at 600 a round trip of 200 ms: the last waits 100 ms.
	if want := 100 * time.Millisecond; wait < want*95/100 || wait > want*105/100 {
		t.Errorf("got the 300th packet past a burst leaving after %v, want %v (1.5 windows of 400 per 200 ms)", wait, want)
	}
}
