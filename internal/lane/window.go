package lane

import (
	"slices"
	"sync"
	"time"
)

// The window of a lane's streams: how many KCP packets they may have in flight, sent and
// not yet acknowledged, shared evenly among them. It grows while the round trip stays
// near its base and shrinks when a queue builds, like TCP Vegas: a radio's random loss
// leaves the round trip alone and so never shrinks it. The round trips it reads are
// those of the streams' own packets, from the timestamps KCP's acknowledgements echo:
// many a round trip while the streams send, so it sees a queue within a round trip, and
// none while they are idle, so an idle lane's window does not grow. Each round (a base round
// trip, at least minRound) it takes the least sample, so that a radio's jitter does
// not read as a queue, and moves the window once.
//
// A radio's round trip also rises for good (a longer route, a congested cell), and the
// base, the least of the last 5–10 s, would read the new delay as a queue for that long,
// holding the window at its floor: a circuit opened after the change ran at a third of
// the link. A queue the streams built follows their window, shrinking by more than half
// when a window they fill halves; so when packets sent after the window halved (or
// reached its floor), while the streams filled it, come back with the round trip's
// excess over the base not fallen by a quarter, the delay is the path's, and the round's
// least becomes the base. (Judged on packets sent after the halving: a deep queue of our
// own takes its own length to answer a smaller window.)
//
// The other way round, a standing queue of ours under the shrink threshold would age
// into the base as the path's samples left it, and the next window would queue as much
// again over that: the base crept up 30 ms every 10 s. So when the base is about to
// rise, the window halves for two round trips, long enough for such a queue to drain
// and show the path's round trip (BBR's ProbeRTT, gentler), at a cost of a quarter of a
// round trip's data every 5 s.
//
// A lane starts knowing nothing of its path, and growing ×1.15 a round its window took
// 14 rounds, 11 s at 800 ms, to fill a 10 Mbit/s radio (and as long again after the
// path's round trip rose for good). So growth speeds up while rounds show no queue at
// all (their least round trip within queueLow of the base): ×1.15, ×1.3, … up to ×2
// a round, TCP's slow start reached by degrees, so that a short path, which the
// initial window may already fill, never doubles into its queue. The first sign of a
// queue, or of loss over the ramp's usual share (a queue too short to show its delay
// overflows first), takes the window back to what the path delivered in that round (no
// more than before the last growth, which overfilled the path), and ends the ramping
// until the path's round trip rises for good: a queue that drained after an overflow
// would start a ramp into the next (TCP's slow-start threshold, for the same reason).
//
// A window grown at a round's end would leave at once, at the rate of the machine, not
// the radio: doubled, a burst of a whole window into a queue that may hold a tenth of
// it. So the streams' packets are also paced, at paceGain times a window per base
// round trip: no faster than the window lets them go on average, never all at once.
//
// Loss counts only beyond the path's usual share: a queue shorter than the delay the
// window reads as one (a Wi-Fi mesh's 100 packets, 50 ms at 20 Mbit/s, under a
// threshold the path's jitter widened) overflows before its delay shows. So a round
// whose share of segments sent again is over twice the median of the last 16 rounds
// and 3 points more shrinks the window as a queue would: steady random loss at any rate
// does not, an overflowing queue's bursts of drops do.
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
	// minShrinkRounds is the fewest rounds of shrinking before the delay may be taken
	// for the path's own.
	minShrinkRounds = 3
	// waitRing is how many segments' waits to leave are kept: a largest window's.
	waitRing = maxWindow
	// paceGain is how much faster than a window per base round trip the streams'
	// packets may leave.
	paceGain = 1.5
	// A ramp grows the window rampStep more each round than the last, to rampMost; a
	// queue takes back its growth once it has run rampUndoAfter rounds (before, the
	// growth was as small as the shrink that follows).
	rampStep      = 0.15
	rampMost      = 2
	rampUndoAfter = 3
	// rampLossMargin is the points a ramp round's share lost may exceed the ramp's
	// least before it reads as a queue's overflow.
	rampLossMargin = 0.1
	// lossRounds is how many rounds' shares of segments sent again the usual share is
	// the median of; minLossSample, the fewest segments a round must send to count.
	lossRounds    = 16
	minLossSample = 20
	// A round's share sent again reads as a queue's overflow over lossOverUsual times
	// the usual share plus lossMargin.
	lossOverUsual = 2
	lossMargin    = 0.03
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
	pace    *pacer // the streams' data packets'; nil in tests

	// KCP's timestamps count milliseconds from an instant of its own: clockZero is
	// that instant, learned from the timestamps of the streams' outgoing data.
	clockZero time.Time
	// waits holds how long the last waitRing segments sent waited to leave, by
	// sequence number.
	waits             [waitRing]sentWait
	round             time.Time     // when the current round ends
	roundLeast        time.Duration // the least sample of the current round
	roundMost         time.Duration // the greatest sample of the current round
	roundAcked        int           // the segments acknowledged in the current round
	spread            time.Duration // how far a round's samples spread, smoothed: the path's jitter
	baseNow, basePrev time.Duration // the least samples of this and the last baseSpan
	baseEnds          time.Time     // when this baseSpan ends

	// The run of rounds that grew the window with no queue at all, and whether a queue
	// has ended one since the lane began or the path's round trip last rose.
	ramp     rampRun
	rampDone bool

	// The run of rounds that shrank the window; zero when the last round did not.
	shrink shrinkRun
	// A probe of the base round trip: the window it halved, and when it ends (zero
	// when none runs).
	probeSaved float64
	probeEnds  time.Time
	// The streams' segment counts at the last round, the segments sent for the first
	// time in the last round, and the share of segments sent again in each of the last
	// lossRounds rounds (a ring, losses counting them).
	segsAt   map[*Stream][2]uint64
	lastSent uint64
	losses   [lossRounds]float64
	lossN    int
	// heldBack reports whether the window held back any stream's data since the last
	// call: limitedLocked, but for tests.
	heldBack func() bool
}

// rampRun is a run of rounds that grew the window with no queue at all: how many, the
// factor of the last growth, and the least share of a round's segments lost in the run
// over how many rounds.
type rampRun struct {
	rounds    int
	factor    float64
	leastLoss float64
	lossRuns  int
}

// sentWait is how long segment sn of stream conv, stamped ts, waited to leave.
type sentWait struct {
	conv, ts, sn uint32
	wait         time.Duration
}

// shrinkRun is a run of rounds that shrank the window: the window and the queue when it
// began, its rounds so far, and when the window had halved.
type shrinkRun struct {
	from     float64
	queue    time.Duration
	rounds   int
	halvedAt time.Time
}

// newWindowControl returns a lane's window control, which paces the streams' data
// packets with pace, until done closes.
func newWindowControl(done <-chan struct{}, pace *pacer) *windowControl {
	w := &windowControl{total: initialWindow, streams: map[*Stream]struct{}{}, kick: make(chan struct{}, 1), done: done, pace: pace}
	w.heldBack = w.limitedLocked
	w.segsAt = map[*Stream][2]uint64{}
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
	delete(w.segsAt, s)
	w.applyLocked()
}

// sentLocked learns KCP's clock from the timestamp of a data segment sent now, and
// keeps how long the segment waited to leave since KCP stamped it: its round trip
// comes back less that wait, which would otherwise read the pacer's queue (a window's
// growth, paced out over a round trip) as the path's.
func (w *windowControl) sentLocked(seg kcpSegment, now time.Time) {
	zero := now.Add(-time.Duration(seg.ts) * time.Millisecond)
	if w.clockZero.IsZero() || zero.Before(w.clockZero) {
		w.clockZero = zero
	}
	*w.waitOf(seg) = sentWait{conv: seg.conv, ts: seg.ts, sn: seg.sn, wait: now.Sub(w.clockZero.Add(time.Duration(seg.ts) * time.Millisecond))}
}

// eachLocked calls f with each segment of the KCP packet b whose command is cmd,
// holding the window's lock, taken once for the packet (which carries up to 48
// acknowledgements) and only if it has such a segment.
func (w *windowControl) eachLocked(b []byte, cmd byte, f func(kcpSegment)) {
	locked := false
	eachSegment(b, func(seg kcpSegment) bool {
		if seg.cmd == cmd {
			if !locked {
				w.mu.Lock()
				locked = true
			}
			f(seg)
		}
		return true
	})
	if locked {
		w.mu.Unlock()
	}
}

// waitOf is the entry in waits for a segment sent or acknowledged.
func (w *windowControl) waitOf(seg kcpSegment) *sentWait {
	return &w.waits[(seg.sn+seg.conv*2654435761)%uint32(len(w.waits))]
}

// ackedLocked takes the round trip of a segment whose acknowledgement (ack, echoing
// its stream, timestamp and sequence number) arrived now.
func (w *windowControl) ackedLocked(ack kcpSegment, now time.Time) {
	if w.clockZero.IsZero() {
		return
	}
	rtt := time.Duration(int32(uint32(now.Sub(w.clockZero)/time.Millisecond)-ack.ts)) * time.Millisecond
	if rtt < 0 || rtt > time.Minute {
		return
	}
	if e := w.waitOf(ack); e.conv == ack.conv && e.sn == ack.sn && e.ts == ack.ts {
		rtt -= e.wait
	}
	rtt = max(rtt, time.Millisecond) // KCP's clock ticks in milliseconds
	if now.After(w.baseEnds) {
		if w.basePrev != 0 && w.baseNow > w.basePrev && w.probeEnds.IsZero() {
			// The base is about to rise: a queue of ours that never drained, or the path.
			// Halve the window for two round trips, so that a queue of ours drains and
			// the path's round trip shows.
			w.probeSaved, w.total, w.probeEnds = w.total, max(minWindow, w.total/2), now.Add(2*rtt)
			w.applyLocked()
		}
		w.basePrev, w.baseNow, w.baseEnds = w.baseNow, 0, now.Add(baseSpan)
	}
	if w.baseNow == 0 || rtt < w.baseNow {
		w.baseNow = rtt
	}
	if w.roundLeast == 0 || rtt < w.roundLeast {
		w.roundLeast = rtt
	}
	w.roundMost = max(w.roundMost, rtt)
	w.roundAcked++
	if now.Before(w.round) {
		return
	}
	base := w.baseLocked()
	switch {
	case w.probeEnds.IsZero():
		w.spread += (w.roundMost - w.roundLeast - w.spread) / 4
		sent, resent := w.roundSegmentsLocked()
		lossy := w.lossCongestedLocked(sent, resent)
		if w.rampLossLocked(sent, resent) {
			lossy = true
		}
		w.observeLocked(now, w.roundLeast, w.roundMost, base, w.heldBack(), lossy)
	case now.After(w.probeEnds):
		w.total, w.probeEnds = w.probeSaved, time.Time{}
		w.shrink = shrinkRun{}
		w.heldBack() // what the halved window held back says nothing of the whole
		w.applyLocked()
	}
	w.round, w.roundLeast, w.roundMost, w.roundAcked = now.Add(max(minRound, base)), 0, 0, 0
}

// roundSegmentsLocked returns the segments the streams sent for the first time, and sent
// again, since the last call.
func (w *windowControl) roundSegmentsLocked() (sent, resent uint64) {
	for s := range w.streams {
		a, b := s.sess.Segments()
		last := w.segsAt[s]
		sent, resent = sent+a-last[0], resent+b-last[1]
		w.segsAt[s] = [2]uint64{a, b}
	}
	return sent, resent
}

// lossCongestedLocked takes a round's segments sent and sent again, and reports whether
// the share sent again stands well over the path's usual share (the median of the last
// lossRounds rounds): over twice it and 3 points. A radio's random loss, steady at
// whatever rate, does not; a queue that overflows before its delay crosses the shrink
// threshold (a short queue, or one whose delay the path's jitter hides) does.
func (w *windowControl) lossCongestedLocked(sent, resent uint64) bool {
	if sent < minLossSample {
		return false
	}
	share := float64(resent) / float64(sent)
	n := min(w.lossN, lossRounds)
	usual := -1.0
	if n >= lossRounds/2 {
		sorted := w.losses // a copy
		slices.Sort(sorted[:n])
		usual = sorted[n/2]
	}
	w.losses[w.lossN%lossRounds] = share
	w.lossN++
	return usual >= 0 && share > lossOverUsual*usual+lossMargin
}

// rampLossLocked takes a round's segments sent and sent again, and reports whether, in
// a ramp, the share of the last round's segments lost (which this round resent) stands
// over the least in the ramp by rampLossMargin: the overflow of a queue too short to
// show its delay, where a radio's random loss is steady.
func (w *windowControl) rampLossLocked(sent, resent uint64) bool {
	last := w.lastSent
	w.lastSent = sent
	if w.ramp.rounds == 0 || last < minLossSample {
		return false
	}
	share := float64(resent) / float64(last)
	least := w.ramp.leastLoss
	if w.ramp.lossRuns == 0 || share < least {
		w.ramp.leastLoss = share
	}
	w.ramp.lossRuns++
	return w.ramp.lossRuns > 1 && share > least+rampLossMargin
}

// baseLocked is the base round trip: the least sample of the last two spans.
func (w *windowControl) baseLocked() time.Duration {
	switch {
	case w.baseNow == 0:
		return w.basePrev
	case w.basePrev == 0:
		return w.baseNow
	}
	return min(w.baseNow, w.basePrev)
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
// trips at now; it grows it only if the window held the streams back (limited). Once a
// run of shrinking rounds has halved the window it holds it until packets sent since
// come back (most, the round's greatest round trip, after), and takes the standing round
// trip as the new base if their delay did not follow the window. A ramp's growth speeds
// up while rounds show no queue at all, and a queue or a ramp's loss ends it.
func (w *windowControl) observeLocked(now time.Time, standing, most, minRTT time.Duration, limited, lossy bool) {
	queued := standing - minRTT
	// A queue builds over high (queueHigh, a quarter of the base or the path's jitter,
	// whichever is most) and is gone under low.
	high, low := max(queueHigh, minRTT/4, w.spread), max(queueLow, minRTT/10, w.spread/2)
	if ramp := w.ramp; ramp.rounds > 0 && (lossy || queued >= queueLow) {
		w.ramp, w.rampDone = rampRun{}, true
		if ramp.rounds >= rampUndoAfter {
			// The ramp's last growth overfilled the path: take it back, to no more than
			// the path delivered in the round, its window without a queue.
			w.total = max(minWindow, min(w.total/ramp.factor, float64(w.roundAcked)))
			w.applyLocked()
			return
		}
	}
	if lossy && queued <= high {
		// A queue that overflows before its delay shows: shrink, outside the run of
		// shrinking rounds, whose delay tells whether the base moved.
		w.total = max(minWindow, w.total*windowShrink)
		w.applyLocked()
		return
	}
	if queued <= high {
		w.shrink = shrinkRun{}
	}
	switch {
	case queued > high:
		if w.shrink.rounds == 0 {
			w.shrink.from, w.shrink.queue = w.total, queued
		}
		w.shrink.rounds++
		if w.shrink.halvedAt.IsZero() && (w.total <= w.shrink.from/2 || w.total == minWindow) {
			w.shrink.halvedAt = now
		}
		if !w.shrink.halvedAt.IsZero() {
			if now.Sub(w.shrink.halvedAt) <= most {
				return // hold the halved window until its packets answer
			}
			if limited && w.shrink.rounds >= minShrinkRounds && queued > w.shrink.queue*3/4 {
				// Not a queue of ours: the path's round trip rose.
				w.baseNow, w.basePrev = standing, standing
				w.shrink = shrinkRun{}
				w.rampDone = false
				return
			}
			// The queue followed the window: ours. Judge the next halving afresh.
			w.shrink = shrinkRun{from: w.total, queue: queued, rounds: w.shrink.rounds}
		}
		w.total = max(minWindow, w.total*windowShrink)
	case queued < low && limited:
		factor := windowGrow
		if queued < queueLow && !w.rampDone {
			w.ramp.rounds++
			factor = min(rampMost, windowGrow+rampStep*float64(w.ramp.rounds-1))
		} else {
			w.ramp = rampRun{}
		}
		w.ramp.factor = factor
		w.total = min(maxWindow, w.total*factor+windowStep)
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
	if base := w.baseLocked(); w.pace != nil && base > 0 {
		w.pace.setGap(time.Duration(float64(base) / (paceGain * w.total)))
	}
	select {
	case w.kick <- struct{}{}:
	default: // already due
	}
}
