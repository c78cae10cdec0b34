package agent

import (
	"fmt"
	"sync"
	"time"
)

// Loss on the router link decides whether UDP circuits add forward error correction
// when Config.UDPFEC leaves it to the agent (autoFEC, udp.go): a clean link pays nothing
// for it, a lossy one gets it within seconds. The probe is the link's heartbeats, one
// every heartbeatEvery, which the router echoes: a fixed-rate sample of the hop's round
// trip, both directions, whatever the circuits carry. They are the hop's one liveness
// mechanism too (link.go, docs/LIVENESS.md).
const (
	// lossWindow is how many of the newest heartbeats the loss test reads: ten seconds.
	lossWindow = 40
	// lossEnter lost heartbeats among the newest lossWindow make the link lossy: 7.5 %
	// of round trips, some 4 % loss each way. A link at 1 % each way (2 % a
	// round trip) reaches it in about one window in twenty; one at 5 % each way within
	// seconds, and at 15 % within about three.
	lossEnter = 3
	// lossClearWindow heartbeats in a row that came back make the link clean again:
	// thirty seconds, three windows, so a link near the threshold does not flap.
	lossClearWindow = 120
	// lossAnswerWithin is the least time a heartbeat's echo is waited for before it
	// counts as lost (four round trips when that is longer): no radio's round trip is
	// near it, so a late echo is not taken for a lost one.
	lossAnswerWithin = time.Second
	// lossMaxPending bounds the heartbeats waiting for their echo; older ones are
	// forgotten uncounted (a link that long silent is stalled, not lossy).
	lossMaxPending = 64
)

// lossWatch keeps the fate of the newest heartbeats of the agent's router link and
// says whether the link is lossy, with hysteresis: lossEnter lost among the newest
// lossWindow make it lossy, lossClearWindow answered in a row make it clean again.
type lossWatch struct {
	mu    sync.Mutex
	ring  [lossClearWindow]bool // true: lost
	n     int                   // outcomes in ring, up to its length
	next  int                   // where the next outcome goes
	lossy bool
}

// record adds one heartbeat's fate and reports whether that changed the verdict.
func (w *lossWatch) record(lost bool) (changed bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ring[w.next] = lost
	w.next = (w.next + 1) % len(w.ring)
	w.n = min(w.n+1, len(w.ring))
	was := w.lossy
	switch {
	case !w.lossy && w.lostLocked(lossWindow) >= lossEnter:
		w.lossy = true
	case w.lossy && w.n == len(w.ring) && w.lostLocked(len(w.ring)) == 0:
		w.lossy = false
	}
	return w.lossy != was
}

// lostLocked counts the lost among the newest k outcomes.
func (w *lossWatch) lostLocked(k int) int {
	lost := 0
	for i := range min(k, w.n) {
		if w.ring[(w.next-1-i+len(w.ring))%len(w.ring)] {
			lost++
		}
	}
	return lost
}

// state returns the verdict and the share of the newest lossWindow heartbeats lost.
func (w *lossWatch) state() (lossy bool, share float64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if n := min(w.n, lossWindow); n > 0 {
		share = float64(w.lostLocked(lossWindow)) / float64(n)
	}
	return w.lossy, share
}

// pendingPing is a heartbeat sent on one connection, waiting for its echo.
type pendingPing struct {
	sent     int64 // unix nanoseconds, as the ping carries them
	answered bool
}

// heartbeatLedger follows the heartbeats of one connection from ping to echo.
type heartbeatLedger struct {
	mu      sync.Mutex
	pending []pendingPing // oldest first
}

// sent notes a ping that went out.
func (h *heartbeatLedger) sent(at int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.pending) == lossMaxPending {
		h.pending = h.pending[1:]
	}
	h.pending = append(h.pending, pendingPing{sent: at})
}

// answered notes the echo of the ping sent at at.
func (h *heartbeatLedger) answered(at int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := range h.pending {
		if h.pending[i].sent == at {
			h.pending[i].answered = true
			return
		}
	}
}

// settle returns the fates (true: lost) of the pings that are decided by now, oldest
// first: answered ones, and unanswered ones older than wait that a later ping's echo
// has overtaken. A ping with no answered one after it stays pending: the link may be
// black, which is the stall detector's business, not loss.
func (h *heartbeatLedger) settle(now time.Time, wait time.Duration) []bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	lastAnswered := -1
	for i, p := range h.pending {
		if p.answered {
			lastAnswered = i
		}
	}
	var fates []bool
	for len(h.pending) > 0 {
		p := h.pending[0]
		overdue := now.Sub(time.Unix(0, p.sent)) > wait && lastAnswered > 0
		if !p.answered && !overdue {
			break
		}
		fates = append(fates, !p.answered)
		h.pending = h.pending[1:]
		lastAnswered--
	}
	return fates
}

// forget drops every pending ping uncounted: the link stalled.
func (h *heartbeatLedger) forget() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.pending = h.pending[:0]
}

// lossWait is how long a heartbeat's echo is waited for on a link with round trip rtt.
func lossWait(rtt time.Duration) time.Duration { return max(lossAnswerWithin, 4*rtt) }

// noteHeartbeats records the fates of conn's settled heartbeats and logs a change of
// the link's verdict, which UDP circuits read for their FEC (autoFEC).
func (a *Agent) noteHeartbeats(fates []bool) {
	changed := false
	for _, lost := range fates {
		if a.loss.record(lost) {
			changed = true
		}
	}
	if !changed {
		return
	}
	lossy, share := a.loss.state()
	a.log.Info("router link loss", "lossy", lossy, "heartbeats_lost", fmt.Sprintf("%.0f%%", 100*share), "udp_fec", a.autoFEC() != nil && lossy)
}
