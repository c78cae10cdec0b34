package lane

import (
	"sync"
	"time"
)

// The window of a lane's streams: how many KCP packets they may have in flight, shared
// evenly among them. It grows while the round trip stays near its base and shrinks when
// a queue builds, like TCP Vegas: loss leaves the round trip alone and so never shrinks
// it. The round trip it reads is the standing one, the least of the last second's, so
// that a radio's jitter does not read as a queue. Both ends move it on the same figures,
// the client's measures of the lane.
const (
	minWindow     = 32
	maxWindow     = 4096
	initialWindow = 128
	windowGrow    = 1.15
	windowStep    = 4
	windowShrink  = 0.85
	// A queue is building when the round trip exceeds its base by more than queueHigh
	// (or a quarter of the base); it is gone under queueLow (or a tenth).
	queueHigh = 40 * time.Millisecond
	queueLow  = 15 * time.Millisecond
)

// windowControl sizes the windows of a lane's streams. It sets the windows from its own
// goroutine: a KCP session holds its lock while it flushes, and the lane's reader, which
// moves the window, must never wait for that.
type windowControl struct {
	mu      sync.Mutex
	total   float64
	streams map[*Stream]struct{}
	kick    chan struct{} // the window changed
	done    <-chan struct{}
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

// observe moves the window on the standing (jitter taken out) and base round trips.
func (w *windowControl) observe(standing, minRTT time.Duration) {
	if standing <= 0 || minRTT <= 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	queued := standing - minRTT
	switch {
	case queued > max(queueHigh, minRTT/4):
		w.total = max(minWindow, w.total*windowShrink)
	case queued < max(queueLow, minRTT/10):
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
