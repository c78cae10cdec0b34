package lane

import (
	"sync"
	"time"
)

// The window of a lane's streams: how many KCP packets they may have in flight, sent and
// not yet acknowledged, shared evenly among them. It grows while the round trip stays
// near its base and shrinks when a queue builds, like TCP Vegas: loss leaves the round
// trip alone and so never shrinks it. The round trips it reads are those of the
// streams' own packets, from the timestamps KCP's acknowledgements echo: many a round
// trip while the streams send, so it sees a queue within a round trip, and none while
// they are idle, so an idle lane's window does not grow. Each round (a base round
// trip, at least minRound) it takes the least sample, so that a radio's jitter does
// not read as a queue, and moves the window once.
const (
	minWindow     = 32
	maxWindow     = 4096
	initialWindow = 128
	windowGrow    = 1.15
	windowStep    = 4
	windowShrink  = 0.85
	// A queue is building when the round trip exceeds its base by more than queueHigh
	// (or a quarter of the base, or the path's jitter); it is gone under queueLow (or a
	// tenth, or half the jitter).
	queueHigh = 40 * time.Millisecond
	queueLow  = 15 * time.Millisecond
	// minRound is the shortest round; baseSpan, how long a base round trip is kept (the
	// base is the least of the last two spans' samples).
	minRound = 20 * time.Millisecond
	baseSpan = 5 * time.Second
)

// windowControl sizes the windows of a lane's streams. It sets the windows from its own
// goroutine: a KCP session holds its lock while it flushes (and calls sent from there),
// and the lane's reader, which moves the window, must never wait for that.
type windowControl struct {
	mu      sync.Mutex
	total   float64
	streams map[*Stream]struct{}
	kick    chan struct{} // the window changed
	done    <-chan struct{}

	// KCP's timestamps count milliseconds from an instant of its own: clockZero is
	// that instant, learned from the timestamps of the streams' outgoing data.
	clockZero         time.Time
	round             time.Time     // when the current round ends
	roundLeast        time.Duration // the least sample of the current round
	roundMost         time.Duration // the greatest sample of the current round
	spread            time.Duration // how far a round's samples spread, smoothed: the path's jitter
	baseNow, basePrev time.Duration // the least samples of this and the last baseSpan
	baseEnds          time.Time     // when this baseSpan ends
}

func newWindowControl(done <-chan struct{}) *windowControl {
	w := &windowControl{total: initialWindow, streams: map[*Stream]struct{}{}, kick: make(chan struct{}, 1), done: done}
	go w.run()
	return w
}

// run applies the window to the streams whenever it changes, until the lane closes.
func (w *windowControl) run() {
	for {
		select {
		case <-w.kick:
		case <-w.done:
			return
		}
		w.mu.Lock()
		each := max(minWindow/2, int(w.total)/max(1, len(w.streams)))
		streams := make([]*Stream, 0, len(w.streams))
		for s := range w.streams {
			streams = append(streams, s)
		}
		w.mu.Unlock()
		for _, s := range streams {
			s.setWindow(each)
		}
	}
}

func (w *windowControl) add(s *Stream) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.streams[s] = struct{}{}
	w.applyLocked()
}

func (w *windowControl) remove(s *Stream) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.streams, s)
	w.applyLocked()
}

// sent learns KCP's clock from the timestamp of a data segment sent now.
func (w *windowControl) sent(ts uint32, now time.Time) {
	zero := now.Add(-time.Duration(ts) * time.Millisecond)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.clockZero.IsZero() || zero.Before(w.clockZero) {
		w.clockZero = zero
	}
}

// acked takes the round trip of a segment whose acknowledgement, echoing the segment's
// timestamp ts, arrived now.
func (w *windowControl) acked(ts uint32, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.clockZero.IsZero() {
		return
	}
	rtt := time.Duration(int32(uint32(now.Sub(w.clockZero)/time.Millisecond)-ts)) * time.Millisecond
	if rtt < 0 || rtt > time.Minute {
		return
	}
	rtt = max(rtt, time.Millisecond) // KCP's clock ticks in milliseconds
	if now.After(w.baseEnds) {
		w.basePrev, w.baseNow, w.baseEnds = w.baseNow, 0, now.Add(baseSpan)
	}
	if w.baseNow == 0 || rtt < w.baseNow {
		w.baseNow = rtt
	}
	if w.roundLeast == 0 || rtt < w.roundLeast {
		w.roundLeast = rtt
	}
	w.roundMost = max(w.roundMost, rtt)
	if now.Before(w.round) {
		return
	}
	base := w.baseNow
	if w.basePrev != 0 {
		base = min(base, w.basePrev)
	}
	w.spread += (w.roundMost - w.roundLeast - w.spread) / 4
	w.observeLocked(w.roundLeast, base, w.limitedLocked())
	w.round, w.roundLeast, w.roundMost = now.Add(max(minRound, base)), 0, 0
}

// limitedLocked reports whether the window held back any stream's data since the last
// call: a window its streams do not fill tells nothing about a larger one.
func (w *windowControl) limitedLocked() bool {
	limited := false
	for s := range w.streams {
		if s.windowLimited() {
			limited = true
		}
	}
	return limited
}

// observeLocked moves the window on a round's standing (least) and the base round
// trips; it grows it only if the window held the streams back (limited).
func (w *windowControl) observeLocked(standing, minRTT time.Duration, limited bool) {
	queued := standing - minRTT
	switch {
	case queued > max(queueHigh, minRTT/4, w.spread):
		w.total = max(minWindow, w.total*windowShrink)
	case queued < max(queueLow, minRTT/10, w.spread/2) && limited:
		w.total = min(maxWindow, w.total*windowGrow+windowStep)
	default:
		return
	}
	w.applyLocked()
}

// window is the lane's current window in packets.
func (w *windowControl) window() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return int(w.total)
}

func (w *windowControl) applyLocked() {
	select {
	case w.kick <- struct{}{}:
	default: // already due
	}
}
