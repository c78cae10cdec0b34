// Package congestion is umbra's congestion controller for QUIC: one controller for every
// hop, wired or radio, plugged into the in-module quic-go through its Config.Congestion
// hook (third_party/quic-go/UMBRA.md).
//
// It is model-based, as BBR is: the path's bottleneck rate is the largest delivery rate
// of the last round trips, its base round trip the least one of the last seconds, and
// the connection paces at the model's rate, probing above it for one round trip in
// eight and draining what the probe queued in the next. What a radio needs on top:
//
//   - Random loss is not congestion. While the share of packets a round trip loses stays
//     at or below Config.LossTolerance and no queue is building, the lost bytes count as
//     carried by the link, so steady radio loss neither shrinks the model nor stalls it.
//     A round trip that loses more than that cuts the rate.
//   - A rising queue is congestion. When the least round trip of three round trips in a
//     row sits above the base by more than a quarter of it, the model falls to the rate
//     the path now delivers.
//   - A trickle is not the path's rate. A packet the controller did not hold back (neither
//     window nor pacer refused since the last one) was limited by the application, so an
//     idle link's model is neither cut by a queue signal nor taken as the path's rate:
//     startup keeps searching until a bulk transfer fills the pipe, and a base round trip
//     that rose while the connection only trickled, or by more than its packets in
//     flight could queue (a longer route), is taken as the new base after queueRounds,
//     not read as a queue; a base several times the old one is a new path, whose rate
//     startup searches afresh. Startup's window grows only by what it carried (sent
//     half used or more), and it paces at most at startupGain times half that window a
//     round trip, so a rate measured elsewhere (bursts on a shorter hop) never sends a
//     bulk write into the radio's queue in one burst.
//   - A blackout is not congestion either. A silence (no acknowledgement for several
//     base round trips) freezes the model; what was lost in it does not count, and the
//     connection resumes at the rate it had.
//
// It owns only the decision of how fast to send; loss detection, retransmission and the
// round-trip statistics stay quic-go's. It must not block or allocate per packet beyond
// one map entry per packet in flight.
package congestion

import (
	"math"
	"time"

	"github.com/umbranet/umbra/third_party/quic-go"
)

// The model's constants. Gains are multiples of the modelled rate (pacing) or of the
// bandwidth-delay product (window).
const (
	// startupGain (2/ln 2) is the least gain that doubles the delivery rate every round
	// trip, as BBR's startup: a 10 Mbit/s radio is found from the initial window in about
	// six round trips.
	startupGain = 2.885
	// drainGain empties, in about one round trip, the queue startup built.
	drainGain = 1 / startupGain
	// cwndGain leaves room for two bandwidth-delay products in flight: acknowledgements
	// a radio delays or bunches must not stall a window that pacing already bounds.
	cwndGain = 2.0
	// startupCwndGain is the window's gain in startup, where the model lags the rate.
	startupCwndGain = startupGain
	// probeUpGain probes 25 % above the model for one base round trip; probeDownGain
	// drains in the next what the probe queued if the path had no more to give.
	probeUpGain   = 1.25
	probeDownGain = 0.75
	// probeCycle is the number of base round trips in a probing cycle: one up, one
	// down, six at the model's rate, as BBR's ProbeBW.
	probeCycle = 8
	// probeCruiseIndex is the phase a connection enters the cycle at: cruising, so that
	// a fresh model is neither probed above nor drained below at once.
	probeCruiseIndex = 2
	// bwWindowRounds is how many round trips the bottleneck rate is the maximum of: a
	// probing cycle and two more, so that a probe's sample lasts until the next probe.
	bwWindowRounds = probeCycle + 2
	// minRTTWindow is how long the base round trip holds before it is probed again.
	minRTTWindow = 10 * time.Second
	// probeRTTDuration is how long the window stays at half the bandwidth-delay product
	// when the base round trip is probed: long enough to drain a queue the connection
	// built itself (BBRv2's ProbeRTT).
	probeRTTDuration = 200 * time.Millisecond
	// probeRTTCwndGain is the window's gain while the base round trip is probed.
	probeRTTCwndGain = 0.5
	// plateauGrowth and plateauRounds end startup: when the bottleneck rate grew less
	// than 25 % in three round trips in a row, the pipe is full.
	plateauGrowth = 1.25
	plateauRounds = 3
	// probeFoundGrowth is what a probe up must find for the path to count as grown (and
	// the next probe to follow at once): most of probeUpGain, more than the noise of
	// delivery samples.
	probeFoundGrowth = 1.2
	// queueFraction and queueMinDelay say when a queue is building: a round trip's least
	// RTT above the base by more than a quarter of it, and by at least 5 ms (less is
	// jitter and timer noise on a fast path).
	queueFraction = 0.25
	queueMinDelay = 5 * time.Millisecond
	// queueRounds is how many round trips in a row must show a queue before the model
	// falls: a probe's own queue lasts one, and the next round trip drains it.
	queueRounds = 3
	// queueSlack is how much longer than its packets in flight take to drain a queue
	// may delay a round trip and still be the connection's own (ownQueue): delivery
	// samples bunch, and the model lags a rate that fell.
	queueSlack = 2.0
	// newPathRTTs is how many times the base a round trip must rise to, with no queue
	// of the connection's own to explain it, for the path to count as a new one whose
	// rate startup searches afresh (restart): a radio hop that moved from 1 to 800 ms.
	newPathRTTs = 2
	// lossBackoff is what a round trip that lost more than the tolerance leaves of the
	// rate, unless the path delivered more than that in it (BBRv2's beta).
	lossBackoff = 0.7
	// blackoutRTTs and blackoutMinSilence say when a silence is a blackout, not a slow
	// path: no acknowledgement for four base round trips and at least half a second.
	blackoutRTTs       = 4
	blackoutMinSilence = 500 * time.Millisecond
	// initialWindowPackets is quic-go's own initial window, in packets.
	initialWindowPackets = 32
	// minWindowPackets is the least window, and the least pacing rate that many packets
	// a base round trip: enough for a probe and the control frames to flow when the model
	// is smallest.
	minWindowPackets = 4
	// initialRTT stands in for the base round trip before the first sample, as quic-go's
	// own default.
	initialRTT = 100 * time.Millisecond
	// maxBurstPackets is the pacer's largest burst, and minPacingDelay the least gap it
	// waits (timers are not finer), both quic-go's own pacer's.
	maxBurstPackets = 10
	minPacingDelay  = time.Millisecond
	// maxRecords bounds the per-packet send records: packets quic-go forgets without
	// acknowledging or losing them (a dropped handshake space) are pruned beyond it.
	maxRecords = 1 << 16
	// lossMinPackets is the least number of packets a loss share is taken over.
	lossMinPackets = 20
	// appLimitedShare: a packet sent with less than half the model's bandwidth-delay
	// product in flight (counted as at least minWindowPackets) was held back by the
	// application, not by the controller. So was one the controller did not hold back
	// (neither the window nor the pacer refused since the last packet): the model
	// cannot tell a trickle from the path's rate by what is in flight alone once the
	// model is the trickle's own rate.
	appLimitedShare = 0.5
	// minSampleInterval is the least interval a delivery-rate sample may span: shorter
	// ones measure how acknowledgements bunched, not the path.
	minSampleInterval = time.Millisecond
)

// DefaultLossTolerance is Config.LossTolerance when it is zero: the share of packets a
// round trip may lose before loss is taken for congestion. A wired path that loses a
// fifth of its packets is congested; a radio that loses that many is merely bad, so the
// radio profile raises it.
const DefaultLossTolerance = 0.2

// Config tunes a Controller. The zero value is the default on every path.
type Config struct {
	// LossTolerance is the share of packets (0 to 1) a round trip may lose and still be
	// read as random loss, which neither shrinks the rate nor stalls it. A round trip that
	// loses more cuts the rate by lossBackoff. Zero means DefaultLossTolerance.
	LossTolerance float64
	// Overhead, when set, says how many bytes go on the wire beside each byte the
	// connection sends, now (0.25: a quarter more): the prefixes, headers and parity
	// internal/fecconn adds under QUIC. The model keeps the path's rate in bytes on
	// the wire, each delivery sample scaled by the overhead as its packet left, and
	// paces the connection at that rate over 1 + the overhead now: more parity slows
	// the connection at once, not after the rate filter forgets its larger samples.
	Overhead func() float64
	// BaseRTT, when set, is told the model's base round trip at the end of each round
	// trip in which it changed: internal/fecconn sizes its parity by it.
	BaseRTT func(time.Duration)
}

func (c Config) lossTolerance() float64 {
	if c.LossTolerance <= 0 {
		return DefaultLossTolerance
	}
	return min(c.LossTolerance, 0.9)
}

// State is the phase of the model.
type State int

// The phases, as BBR names them.
const (
	Startup  State = iota // doubling the rate every round trip until the pipe is full
	Drain                 // emptying the queue startup built
	ProbeBW               // cruising at the model's rate, probing above it one round in eight
	ProbeRTT              // holding the window at half the model to re-measure the base RTT
)

func (s State) String() string {
	switch s {
	case Startup:
		return "startup"
	case Drain:
		return "drain"
	case ProbeBW:
		return "probe-bw"
	case ProbeRTT:
		return "probe-rtt"
	}
	return "unknown"
}

// record is what the controller remembers of one packet in flight, for the
// delivery-rate sample its acknowledgement gives.
type record struct {
	sent          quic.MonoTime
	size          quic.ByteCount
	delivered     quic.ByteCount // delivered when it was sent
	lost          quic.ByteCount // lost (counted) when it was sent
	deliveredTime quic.MonoTime  // when delivered last grew, as of its send
	firstSent     quic.MonoTime  // send time of the packet that began its sample
	appLimited    bool           // sent with less than half the model's pipe in flight
	windowUsed    bool           // sent with at least half the window in flight
	wireFactor    float64        // bytes on the wire per byte sent, as of its send
	deliveredWire float64        // deliveredWire when it was sent
	lostWire      float64        // lostWire when it was sent
}

// Controller is one connection's congestion controller and pacer. quic-go calls it from
// the connection's goroutine only; its exported getters are for that goroutine or tests.
type Controller struct {
	tolerance float64
	mss       quic.ByteCount

	records map[quic.PacketNumber]record
	largest quic.PacketNumber
	// lostSizes are the sizes of packets counted lost, for OnSpuriousLoss.
	lostSizes map[quic.PacketNumber]quic.ByteCount

	// The delivery-rate estimator's running state; the wire's counts are in bytes on
	// the wire (Config.Overhead).
	delivered     quic.ByteCount
	lost          quic.ByteCount
	deliveredWire float64
	lostWire      float64
	deliveredTime quic.MonoTime
	firstSent     quic.MonoTime
	inFlight      quic.ByteCount

	// Round trips: a round ends when a packet sent after the last round's end is acked.
	round          int
	nextRound      quic.ByteCount
	roundAcked     quic.ByteCount // acknowledged since the loss share was last judged
	roundBytes     quic.ByteCount // acknowledged in this round
	roundLost      quic.ByteCount
	roundMinRTT    time.Duration
	roundMaxSample float64 // largest uncorrected delivery rate in the round
	// roundMaxInFlight is the most in flight when a packet of the round was sent.
	roundMaxInFlight quic.ByteCount
	// roundAppLimited: the round's last sample was sent with the pipe far from full,
	// so the round says what the application wrote, not what the path carries.
	roundAppLimited bool

	// The model.
	bw         [bwWindowRounds]float64 // per-round largest delivery rate, bytes/s
	minRTT     time.Duration
	minRTTTime quic.MonoTime
	queued     int     // round trips in a row that showed a queue
	risen      int     // trickle round trips (trickleRound) in a row above the base RTT
	lossShare  float64 // the loss share of the last judgements, averaged

	state       State
	filled      bool // startup found the pipe full once
	bulkSeen    bool // a round carried twice the initial window unlimited (loadedModel)
	fullBw      float64
	fullBwCount int
	phase       int
	phaseStart  quic.MonoTime
	probeFrom   float64 // the bottleneck rate when the last probe up began
	probeRTTEnd quic.MonoTime
	probeMin    time.Duration
	prior       State // the state ProbeRTT returns to

	// Silences.
	lastAck  quic.MonoTime
	lastSeen quic.MonoTime
	resumed  quic.MonoTime // end of the last blackout: losses sent before it are not counted

	// The pacer: a token bucket at pacingRate.
	budget   quic.ByteCount
	lastSent quic.MonoTime
	// heldBack: the window or the pacer refused a packet since the last one was sent,
	// so the application had more to send than the controller let go.
	heldBack bool

	cwnd quic.ByteCount
	// startupWindow is the initial window plus every byte acknowledged of a packet
	// sent with the window at least half used (as TCP's cwnd validation, RFC 7661):
	// startup's window grows by what it carried, doubling a round trip, not by what
	// the application trickled.
	startupWindow quic.ByteCount

	overhead func() float64 // Config.Overhead, or nil
	// baseRTT is Config.BaseRTT, or nil; toldRTT the base round trip it was last told.
	baseRTT func(time.Duration)
	toldRTT time.Duration
}

var _ quic.CongestionControl = (*Controller)(nil)

// New returns a controller for one connection.
func New(cfg Config) *Controller {
	c := &Controller{
		tolerance:   cfg.lossTolerance(),
		overhead:    cfg.Overhead,
		baseRTT:     cfg.BaseRTT,
		mss:         1200,
		records:     make(map[quic.PacketNumber]record),
		lostSizes:   make(map[quic.PacketNumber]quic.ByteCount),
		roundMinRTT: math.MaxInt64,
		probeMin:    math.MaxInt64,
	}
	c.cwnd = initialWindowPackets * c.mss
	c.startupWindow = c.cwnd
	return c
}

// BottleneckRate is the model's bottleneck rate in bytes per second of the connection's
// own packets (zero before the first sample): the path's rate on the wire, less what
// Config.Overhead takes of it.
func (c *Controller) BottleneckRate() float64 { return c.wireRate() / c.wireFactor() }

// wireRate is the model's bottleneck rate in bytes per second on the wire.
func (c *Controller) wireRate() float64 {
	var m float64
	for _, b := range c.bw {
		m = max(m, b)
	}
	return m
}

// wireFactor is the bytes on the wire per byte the connection sends, now.
func (c *Controller) wireFactor() float64 {
	if c.overhead == nil {
		return 1
	}
	return 1 + max(0, c.overhead())
}

// BaseRTT is the model's base round trip (zero before the first sample).
func (c *Controller) BaseRTT() time.Duration { return c.minRTT }

// State is the model's phase.
func (c *Controller) State() State { return c.state }

// PacingRate is the rate the connection paces at now, in bytes per second.
func (c *Controller) PacingRate() float64 {
	floor := float64(minWindowPackets*c.mss) / c.rtt().Seconds()
	bw := c.BottleneckRate()
	if c.state == Startup {
		// Startup's window doubles a round trip, so half of it is what the last
		// round trip delivered: pacing above startupGain times that would send a
		// window the model made elsewhere (bursts, a shorter path) as one burst.
		bw = min(bw, float64(c.startupWindow)/2/c.rtt().Seconds())
	}
	if bw == 0 || c.state == Startup && !c.filled {
		// Before the model has a sample, and in the first startup until the pipe is
		// full, the rate never falls below the initial window's: a connection whose
		// application sends little (the receiving end of a bulk transfer, whose window
		// updates are all it sends) must not pace those at the trickle it measured.
		floor = max(floor, startupGain*float64(initialWindowPackets*c.mss)/c.rtt().Seconds())
	}
	return max(floor, c.gain()*bw)
}

func (c *Controller) rtt() time.Duration {
	if c.minRTT == 0 {
		return initialRTT
	}
	return c.minRTT
}

// gain is the pacing gain of the current phase.
func (c *Controller) gain() float64 {
	switch c.state {
	case Startup:
		return startupGain
	case Drain:
		return drainGain
	case ProbeBW:
		switch c.phase {
		case 0:
			return probeUpGain
		case 1:
			return probeDownGain
		}
	}
	return 1
}

// bdp is the model's bandwidth-delay product.
func (c *Controller) bdp() quic.ByteCount {
	return quic.ByteCount(c.BottleneckRate() * c.rtt().Seconds())
}

// updateWindow sets the congestion window from the model.
func (c *Controller) updateWindow() {
	bdp := c.bdp()
	var w quic.ByteCount
	switch c.state {
	case Startup:
		// Grown by what the window itself let through (startupWindow), as BBR's: a
		// model the connection did not fill (a few bursts on a shorter path) must not
		// let the first bulk write dump a whole window into the radio's queue at once.
		w = max(initialWindowPackets*c.mss, min(quic.ByteCount(startupCwndGain*float64(bdp)), c.startupWindow))
	case ProbeRTT:
		w = quic.ByteCount(probeRTTCwndGain * float64(bdp))
	default:
		w = quic.ByteCount(cwndGain * float64(bdp))
	}
	c.cwnd = max(w, minWindowPackets*c.mss)
}

// TimeUntilSend is when the pacer lets the next packet go; zero means now.
func (c *Controller) TimeUntilSend(quic.ByteCount) quic.MonoTime {
	if c.lastSent == 0 || c.budget >= c.mss {
		return 0
	}
	rate := c.PacingRate()
	d := time.Duration(float64(c.mss-c.budget) / rate * float64(time.Second))
	return c.lastSent.Add(max(minPacingDelay, d))
}

// HasPacingBudget says whether the pacer lets a full packet go at now.
func (c *Controller) HasPacingBudget(now quic.MonoTime) bool {
	ok := c.pacingBudget(now) >= c.mss
	c.heldBack = c.heldBack || !ok
	return ok
}

func (c *Controller) pacingBudget(now quic.MonoTime) quic.ByteCount {
	rate := c.PacingRate()
	burst := max(maxBurstPackets*c.mss, quic.ByteCount(rate*(minPacingDelay).Seconds()*2))
	if c.lastSent == 0 {
		return burst
	}
	added := quic.ByteCount(rate * now.Sub(c.lastSent).Seconds())
	return min(burst, c.budget+max(added, 0))
}

// OnPacketSent records a packet for its delivery-rate sample and charges the pacer.
func (c *Controller) OnPacketSent(sent quic.MonoTime, inFlight quic.ByteCount, pn quic.PacketNumber, size quic.ByteCount, retransmittable bool) {
	b := c.pacingBudget(sent)
	c.budget = max(b-size, 0)
	c.lastSent = sent
	c.lastSeen = max(c.lastSeen, sent)
	if !retransmittable {
		return
	}
	c.inFlight = inFlight
	c.roundMaxInFlight = max(c.roundMaxInFlight, inFlight)
	if inFlight <= size {
		// The pipe was empty: the sample this packet begins starts now.
		c.firstSent = sent
		c.deliveredTime = sent
	}
	c.records[pn] = record{sent: sent, size: size, delivered: c.delivered, lost: c.lost,
		deliveredWire: c.deliveredWire, lostWire: c.lostWire,
		deliveredTime: c.deliveredTime, firstSent: c.firstSent, wireFactor: c.wireFactor(),
		windowUsed: 2*inFlight >= c.cwnd, appLimited: !c.heldBack || inFlight < quic.ByteCount(appLimitedShare*float64(max(c.bdp(), minWindowPackets*c.mss)))}
	c.heldBack = false
	c.largest = max(c.largest, pn)
	if len(c.records) > maxRecords {
		for p := range c.records {
			if p < c.largest-maxRecords/2 {
				delete(c.records, p)
			}
		}
	}
}

// CanSend says whether the window has room.
func (c *Controller) CanSend(inFlight quic.ByteCount) bool {
	ok := inFlight < c.cwnd
	c.heldBack = c.heldBack || !ok
	return ok
}

// MaybeExitSlowStart does nothing: startup ends on the model's plateau, not on a
// round-trip increase.
func (c *Controller) MaybeExitSlowStart() {}

// silence is how long without acknowledgements makes a blackout.
func (c *Controller) silence() time.Duration {
	return max(blackoutMinSilence, blackoutRTTs*c.rtt())
}

// OnPacketAcked takes a packet's delivery-rate and round-trip samples and advances the
// model.
func (c *Controller) OnPacketAcked(pn quic.PacketNumber, size quic.ByteCount, priorInFlight quic.ByteCount, now quic.MonoTime) {
	rec, ok := c.records[pn]
	delete(c.records, pn)
	c.lastSeen = max(c.lastSeen, now)
	if c.lastAck != 0 && now.Sub(c.lastAck) > c.silence() {
		c.afterBlackout(now)
	}
	c.lastAck = now
	c.inFlight = max(priorInFlight-size, 0)
	c.delivered += size
	if ok {
		c.deliveredWire += float64(size) * rec.wireFactor
	} else {
		c.deliveredWire += float64(size) * c.wireFactor()
	}
	c.deliveredTime = now
	c.roundAcked += size
	c.roundBytes += size
	if !ok {
		c.updateWindow()
		return
	}
	if rec.windowUsed {
		c.startupWindow += size
	}
	rtt := now.Sub(rec.sent)
	c.sampleRTT(rtt, now)
	c.roundAppLimited = rec.appLimited

	// The delivery-rate sample (draft-cheng-iccrg-delivery-rate-estimation): bytes
	// delivered since the packet was sent, over the longer of the send and ack intervals.
	c.firstSent = rec.sent
	interval := max(rec.sent.Sub(rec.firstSent), now.Sub(rec.deliveredTime))
	if interval >= max(minSampleInterval, c.minRTT) && rec.sent > c.resumed {
		// In bytes on the wire: the parity beside the connection's packets crossed too,
		// each packet's as much as the overhead when it left.
		dDelivered := c.deliveredWire - rec.deliveredWire
		dLost := c.lostWire - rec.lostWire
		rate := dDelivered / interval.Seconds()
		c.roundMaxSample = max(c.roundMaxSample, rate)
		// Random loss: the link carried the lost bytes too. Credit them while the share
		// lost stays within the tolerance and no queue is building, so that the model
		// is the link's rate, not the goodput loss leaves of it.
		// Not in startup, whose own queue overflows by design.
		if dLost > 0 && dLost <= c.tolerance*(dDelivered+dLost) && c.queued == 0 && !c.queueInRound() && c.state != Startup {
			rate = (dDelivered + dLost) / interval.Seconds()
		}
		i := c.round % bwWindowRounds
		c.bw[i] = max(c.bw[i], rate)
	}

	if rec.delivered >= c.nextRound {
		c.endRound(now)
	}
	c.advance(now)
	c.updateWindow()
}

// sampleRTT feeds the base round-trip filter and the round's least RTT.
func (c *Controller) sampleRTT(rtt time.Duration, now quic.MonoTime) {
	if rtt <= 0 {
		return
	}
	c.roundMinRTT = min(c.roundMinRTT, rtt)
	if c.state == ProbeRTT {
		c.probeMin = min(c.probeMin, rtt)
	}
	if c.minRTT == 0 || rtt <= c.minRTT {
		c.minRTT = rtt
		c.minRTTTime = now
	}
}

// endRound closes a round trip: the startup plateau, loss above tolerance, a rising
// queue.
func (c *Controller) endRound(now quic.MonoTime) {
	if c.baseRTT != nil && c.minRTT != c.toldRTT {
		c.toldRTT = c.minRTT
		c.baseRTT(c.minRTT)
	}
	c.round++
	c.nextRound = c.delivered
	bw := c.wireRate()

	if !c.roundAppLimited && c.roundBytes >= 2*initialWindowPackets*c.mss {
		c.bulkSeen = true // unless the round turns out to be on a new path (restart)
	}
	switch {
	case c.queueInRound() && (c.trickleRound() || !c.ownQueue(bw)):
		// A trickle cannot have built the queue, nor can a connection build one longer
		// than its packets in flight take to cross at the path's rate: the path's delay
		// rose (a new route, a longer radio hop). After queueRounds of it the base round
		// trip is the new one, without cutting the rate or waiting out minRTTWindow;
		// a base newPathRTTs times the old one is a new path, searched afresh.
		c.queued = 0
		if c.risen++; c.risen >= queueRounds {
			if c.roundMinRTT >= newPathRTTs*c.minRTT {
				c.restart()
			}
			c.minRTT = c.roundMinRTT
			c.minRTTTime = now
			c.risen = 0
		}
	case c.queueInRound():
		c.queued++
		c.risen = 0
	default:
		c.queued = 0
		c.risen = 0
	}
	// The loss share is judged over at least lossMinPackets: on a slow radio a round
	// trip carries a packet or two, and one loss in two is not a share.
	judged := c.roundAcked+c.roundLost >= lossMinPackets*c.mss
	lossy := false
	if judged {
		// A share above the tolerance must hold over two judgements (the average of
		// this one and the last), so that a random share a little above its mean, or a
		// probe timeout's premature verdicts, is not taken for congestion, while a
		// share far above (a rate step down, with the queue tail-dropping) acts at once.
		share := float64(c.roundLost) / float64(c.roundAcked+c.roundLost)
		c.lossShare = (c.lossShare + share) / 2
		lossy = share > c.tolerance && c.lossShare > c.tolerance
	}

	switch {
	case lossy && c.state == Startup:
		// Startup's own queue overflowed: drain it; the model is delivery samples
		// only, never inflated by loss in startup.
		c.enterDrain()
	case lossy:
		// More loss than a radio's: congestion. The model falls to what the path
		// delivered in the round, and at least to lossBackoff of itself.
		cut := lossBackoff * bw
		if c.roundMaxSample > 0 {
			cut = min(cut, c.roundMaxSample)
		}
		c.resetBw(cut)
	case c.queued >= queueRounds && (c.state == ProbeBW):
		// The queue has outlived a probe: the path's rate fell. Drain to what it delivers.
		c.resetBw(max(c.roundMaxSample, lossBackoff*bw))
		c.queued = 0
		c.enterDrain()
	}

	if c.state == Startup && (!c.roundAppLimited || c.loadedModel()) {
		// The round's own rate, not the model's: a model from before (another path,
		// a few bursts) must not make the rounds that ramp up to it look like a plateau.
		if got := c.roundMaxSample; got >= c.fullBw*plateauGrowth {
			c.fullBw = got
			c.fullBwCount = 0
		} else if c.fullBwCount++; c.fullBwCount >= plateauRounds {
			c.enterDrain()
		}
	}

	// The new round's slot starts empty; the max over the window is the model. After a
	// round the application limited, it starts at the model: a connection that sends
	// little for a while keeps the rate it measured (the loss and queue signals lower it).
	// The model as it stands now, after any cut or restart above, or the slot would
	// bring back the rate just cut or forgotten.
	model := c.wireRate()
	c.bw[c.round%bwWindowRounds] = 0
	if c.roundAppLimited {
		c.bw[c.round%bwWindowRounds] = model
	}
	if judged {
		c.roundAcked, c.roundLost = 0, 0
	}
	c.roundMinRTT = math.MaxInt64
	c.roundMaxSample = 0
	c.roundBytes = 0
	c.roundMaxInFlight = 0
}

// ownQueue says whether the round's queue could be the connection's own: a queue
// delays a packet at most by what is in flight ahead of it, drained at the path's rate
// (bw, on the wire). A round trip 800 ms above a base taken on a 1 ms hop, with a few
// packets in flight, is a longer path, not a queue.
func (c *Controller) ownQueue(bw float64) bool {
	if bw <= 0 {
		return true
	}
	excess := c.roundMinRTT - c.minRTT
	drain := time.Duration(float64(c.roundMaxInFlight) * c.wireFactor() / bw * float64(time.Second))
	return excess <= queueSlack*drain
}

// loadedModel says whether a bulk transfer filled the model (a round since startup began
// carried twice the initial window without the application limiting it), so that a
// round the application limited counts towards startup's plateau: something past the
// controller paces the transfer (a receive window, an echo's round trip), and startup
// would otherwise never end. A status sync of a few packets is not a bulk transfer.
func (c *Controller) loadedModel() bool {
	return c.bulkSeen && c.bdp() > initialWindowPackets*c.mss
}

// trickleRound says whether the round the application limited carried fewer than
// lossMinPackets: echoes and heartbeats, too few to build a queue of their own.
func (c *Controller) trickleRound() bool {
	return c.roundAppLimited && c.roundBytes < lossMinPackets*c.mss
}

// queueInRound says whether every round-trip sample of the round so far sat above the
// base by more than a queue's allowance.
func (c *Controller) queueInRound() bool {
	return c.roundMinRTT < math.MaxInt64 && c.minRTT > 0 &&
		c.roundMinRTT > c.minRTT+max(queueMinDelay, time.Duration(queueFraction*float64(c.minRTT)))
}

// restart forgets the model for a new path, as a new connection starts: its rate was
// measured on a path of a fraction of the round trip, by what crossed in bursts, and
// startup paced at a multiple of it would dump the first bulk write into the new
// path's queue.
func (c *Controller) restart() {
	c.resetBw(0)
	c.state = Startup
	c.filled = false
	c.fullBw, c.fullBwCount = 0, 0
	c.bulkSeen = false
	c.startupWindow = initialWindowPackets * c.mss
}

// resetBw makes every round in the window hold rate.
func (c *Controller) resetBw(rate float64) {
	for i := range c.bw {
		c.bw[i] = rate
	}
}

func (c *Controller) enterDrain() {
	c.state = Drain
	c.filled = true
}

// advance moves between the phases on time and on what is in flight.
func (c *Controller) advance(now quic.MonoTime) {
	switch c.state {
	case Drain:
		if c.inFlight <= max(c.bdp(), minWindowPackets*c.mss) {
			c.enterProbeBW(now)
		}
	case ProbeBW:
		if now.Sub(c.phaseStart) >= c.rtt() {
			c.phase = (c.phase + 1) % probeCycle
			c.phaseStart = now
			// The probe's acknowledgements come back a round trip after it, while the
			// cycle drains. If it found the path faster by most of what it asked, the
			// path grew: probe again at once instead of cruising six round trips.
			if c.phase == probeCruiseIndex && c.probeFrom > 0 && c.wireRate() >= c.probeFrom*probeFoundGrowth {
				c.phase = 0
			}
			if c.phase == 0 {
				c.probeFrom = c.wireRate()
			}
		}
	case ProbeRTT:
		if now >= c.probeRTTEnd {
			if c.probeMin < math.MaxInt64 {
				c.minRTT = c.probeMin
			}
			c.minRTTTime = now
			c.probeMin = math.MaxInt64
			c.state = c.prior
			if c.state == ProbeBW {
				c.enterProbeBW(now)
			}
		}
		return
	}
	if c.state != Startup && c.minRTTTime != 0 && now.Sub(c.minRTTTime) > minRTTWindow {
		c.prior = c.state
		if c.prior == Drain {
			c.prior = ProbeBW
		}
		c.state = ProbeRTT
		c.probeRTTEnd = now.Add(max(probeRTTDuration, c.rtt()))
	}
}

func (c *Controller) enterProbeBW(now quic.MonoTime) {
	c.state = ProbeBW
	c.phase = probeCruiseIndex
	c.phaseStart = now
}

// afterBlackout is the first acknowledgement after a silence: what was lost in it does
// not count, the model stands, and the base RTT's age does not include the silence.
func (c *Controller) afterBlackout(now quic.MonoTime) {
	gap := now.Sub(c.lastAck)
	c.resumed = now
	if c.minRTTTime != 0 {
		c.minRTTTime = c.minRTTTime.Add(gap)
	}
	c.nextRound = c.delivered
	c.roundAcked, c.roundLost = 0, 0
	c.roundMinRTT = math.MaxInt64
	c.queued = 0
	if c.state == ProbeBW {
		c.enterProbeBW(now)
	}
}

// OnCongestionEvent counts a lost packet against the round, unless it was lost to a
// blackout.
func (c *Controller) OnCongestionEvent(pn quic.PacketNumber, size quic.ByteCount, priorInFlight quic.ByteCount) {
	rec, ok := c.records[pn]
	delete(c.records, pn)
	if size == 0 {
		return // an ECN congestion mark: the queue signal covers it
	}
	c.inFlight = max(priorInFlight-size, 0)
	if !ok || rec.sent <= c.resumed || c.lastAck == 0 {
		// Not a packet of this path's model, lost to the last blackout, or lost before
		// the first acknowledgement (a probe timeout on a path slower than the
		// initial RTT guess): none of them says the path is congested.
		return
	}
	if c.lastAck != 0 && c.lastSeen.Sub(c.lastAck) > c.silence() {
		return // in a silence: a blackout, not congestion
	}
	c.lost += size
	c.lostWire += float64(size) * rec.wireFactor
	c.roundLost += size
	if len(c.lostSizes) >= maxRecords {
		clear(c.lostSizes)
	}
	c.lostSizes[pn] = size
}

// OnSpuriousLoss takes back a loss that was not one: the packet's acknowledgement came
// after quic-go declared it lost (acknowledgements a radio lost or delayed). On a path
// that loses 30 % each way these are many, and counted they would read as congestion.
func (c *Controller) OnSpuriousLoss(pn quic.PacketNumber) {
	size, ok := c.lostSizes[pn]
	if !ok {
		return
	}
	delete(c.lostSizes, pn)
	c.lost = max(c.lost-size, 0)
	c.lostWire = max(c.lostWire-float64(size)*c.wireFactor(), 0)
	c.roundLost = max(c.roundLost-size, 0)
}

// OnRetransmissionTimeout does nothing: a timeout is a silence, which the model rides
// out.
func (c *Controller) OnRetransmissionTimeout(bool) {}

// SetMaxDatagramSize sets the packet size the window and pacer count in.
func (c *Controller) SetMaxDatagramSize(s quic.ByteCount) {
	grow := c.cwnd == initialWindowPackets*c.mss
	c.mss = s
	if grow {
		c.cwnd = initialWindowPackets * c.mss
	}
}

// InSlowStart reports startup.
func (c *Controller) InSlowStart() bool { return c.state == Startup }

// InRecovery is always false: the model has no recovery phase.
func (c *Controller) InRecovery() bool { return false }

// GetCongestionWindow is the window.
func (c *Controller) GetCongestionWindow() quic.ByteCount { return c.cwnd }
