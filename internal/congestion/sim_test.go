package congestion

import (
	"container/heap"
	"math/rand/v2"
	"time"

	"github.com/umbranet/umbra/third_party/quic-go"
)

// The simulated path: a sender with endless data behind the controller, one direction
// rate-capped with a tail-drop queue, random loss, a fixed delay, blackouts and rate
// steps; the receiver acknowledges every packet at once and acknowledgements are never
// lost (QUIC's are cumulative). Loss detection and probe timeouts follow quic-go's:
// a packet is lost three packets or 9/8 of a round trip behind the largest acknowledged,
// and a probe timeout sends one probe past the window and declares the oldest packet
// lost. Everything runs in virtual time, from a seeded random source.

// path is the simulated path's description.
type path struct {
	rate  float64       // bits per second, before the first step
	delay time.Duration // one way, each direction
	loss  float64       // share of packets the link loses after carrying them
	queue int           // packets the rate cap queues before tail drop
	steps []rateStep
	// delaySteps change the one-way delay from a time on (the radio's route changed),
	// for packets sent from then.
	delaySteps []delayStep
	blackout   []window
	// trickle are the windows in which the application sends only one packet every
	// trickleEvery (an idle link's heartbeats and echoes), not endless data.
	trickle []window
	// trickleBurst, if not zero, makes each of a trickle's messages this many full
	// packets written at once (a status sync), not one small packet.
	trickleBurst int
	// appWindow, if not zero, is the most the application has unacknowledged: a bulk
	// transfer that something past the controller paces (an echo's round trip, a
	// receive window).
	appWindow quic.ByteCount
	// overhead is the share of its own size each packet takes of the link beside it:
	// the parity internal/fecconn sends under QUIC, which the controller never sees.
	overhead float64
	// overheadFrom is when the overhead starts (the radio started losing).
	overheadFrom time.Duration
}

// overheadAt is the path's overhead at t.
func (p path) overheadAt(t time.Duration) float64 {
	if t < p.overheadFrom {
		return 0
	}
	return p.overhead
}

// trickleEvery and trickleSize are the application's packets in a trickle window: the
// bench's echo of 64 bytes every 50 ms, in a packet of about 150 bytes once TLS, the
// resume framing and QUIC's headers are added.
const (
	trickleEvery = 50 * time.Millisecond
	trickleSize  = 150
)

type rateStep struct {
	at   time.Duration
	rate float64
}

type delayStep struct {
	at    time.Duration
	delay time.Duration
}

// delayAt is the one-way delay at t.
func (p path) delayAt(t time.Duration) time.Duration {
	d := p.delay
	for _, st := range p.delaySteps {
		if t >= st.at {
			d = st.delay
		}
	}
	return d
}

type window struct{ from, to time.Duration }

// simMSS is the simulated packet size.
const simMSS = 1200

// epoch is virtual time zero: monotonic times are never zero in quic-go.
const epoch = quic.MonoTime(1e9)

type event struct {
	at   quic.MonoTime
	kind int // evArrive, evAck
	pn   quic.PacketNumber
	seq  int
}

const (
	evArrive = iota // a packet reaches the receiver
	evAck           // its acknowledgement reaches the sender
)

type events []event

func (e events) Len() int { return len(e) }
func (e events) Less(i, j int) bool {
	if e[i].at != e[j].at {
		return e[i].at < e[j].at
	}
	return e[i].seq < e[j].seq
}
func (e events) Swap(i, j int) { e[i], e[j] = e[j], e[i] }
func (e *events) Push(x any)   { *e = append(*e, x.(event)) }
func (e *events) Pop() any {
	old := *e
	x := old[len(old)-1]
	*e = old[:len(old)-1]
	return x
}

type outstanding struct {
	sent quic.MonoTime
	size quic.ByteCount
}

// sim runs a controller over a path.
type sim struct {
	p   path
	c   *Controller
	rng *rand.Rand
	now quic.MonoTime
	ev  events
	seq int

	pn          quic.PacketNumber
	out         map[quic.PacketNumber]outstanding
	inFlight    quic.ByteCount
	largest     quic.PacketNumber
	srtt        time.Duration
	linkFree    quic.MonoTime // when the rate cap has sent everything queued
	queued      []quic.MonoTime
	lastAckTime quic.MonoTime
	ptoCount    int

	appSent   quic.MonoTime // when the application last gave a packet, in a trickle window
	burstLeft int           // full packets of the trickle's current burst still to send

	acked   []ackedAt // cumulative bytes acknowledged, for goodput windows
	total   quic.ByteCount
	samples []sample
}

type ackedAt struct {
	at    quic.MonoTime
	total quic.ByteCount
}

// sample is the model as seen every 100 ms of virtual time.
type sample struct {
	at     time.Duration
	bw     float64 // bits per second
	pacing float64 // bits per second
	rtt    time.Duration
	state  State
	cwnd   quic.ByteCount
}

func newSim(p path, cfg Config, seed uint64) *sim {
	s := &sim{p: p, c: New(cfg), rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), now: epoch,
		out: map[quic.PacketNumber]outstanding{}, srtt: 100 * time.Millisecond}
	s.c.SetMaxDatagramSize(simMSS)
	return s
}

func (s *sim) elapsed() time.Duration { return s.now.Sub(epoch) }

func (s *sim) rateAt(t time.Duration) float64 {
	r := s.p.rate
	for _, st := range s.p.steps {
		if t >= st.at {
			r = st.rate
		}
	}
	return r
}

func (s *sim) dark(t time.Duration) bool {
	for _, w := range s.p.blackout {
		if t >= w.from && t < w.to {
			return true
		}
	}
	return false
}

func (s *sim) trickling(t time.Duration) bool {
	for _, w := range s.p.trickle {
		if t >= w.from && t < w.to {
			return true
		}
	}
	return false
}

// appReady is when the application next has a packet to send: now, with endless data,
// or trickleEvery after the last one in a trickle window.
func (s *sim) appReady() quic.MonoTime {
	if s.p.appWindow > 0 && s.inFlight+simMSS > s.p.appWindow {
		return s.now.Add(time.Millisecond) // until an acknowledgement makes room
	}
	if !s.trickling(s.elapsed()) || s.appSent == 0 || s.burstLeft > 0 {
		return s.now
	}
	return max(s.now, s.appSent.Add(trickleEvery))
}

func (s *sim) push(at quic.MonoTime, kind int, pn quic.PacketNumber) {
	s.seq++
	heap.Push(&s.ev, event{at: at, kind: kind, pn: pn, seq: s.seq})
}

// send puts one full packet on the link.
func (s *sim) send() { s.sendSized(simMSS) }

// sendSized puts one packet of size bytes on the link: into the rate cap's queue, or
// dropped.
func (s *sim) sendSized(size quic.ByteCount) {
	s.pn++
	pn := s.pn
	s.inFlight += size
	s.out[pn] = outstanding{sent: s.now, size: size}
	s.c.OnPacketSent(s.now, s.inFlight, pn, size, true)
	// The queue holds the packets whose transmission has not finished.
	for len(s.queued) > 0 && s.queued[0] <= s.now {
		s.queued = s.queued[1:]
	}
	if s.dark(s.elapsed()) || len(s.queued) >= s.p.queue {
		return
	}
	start := max(s.now, s.linkFree)
	tx := time.Duration(float64(size*8) * (1 + s.p.overheadAt(s.elapsed())) / s.rateAt(start.Sub(epoch)) * float64(time.Second))
	s.linkFree = start.Add(tx)
	s.queued = append(s.queued, s.linkFree)
	if s.rng.Float64() < s.p.loss {
		return
	}
	s.push(s.linkFree.Add(s.p.delayAt(s.elapsed())), evArrive, pn)
}

// lose declares pn lost.
func (s *sim) lose(pn quic.PacketNumber) {
	o := s.out[pn]
	delete(s.out, pn)
	prior := s.inFlight
	s.inFlight -= o.size
	s.c.OnCongestionEvent(pn, o.size, prior)
}

// detectLosses applies quic-go's packet and time thresholds.
func (s *sim) detectLosses() {
	threshold := s.now.Add(-s.srtt * 9 / 8)
	for pn, o := range s.out {
		if pn+3 <= s.largest || (pn < s.largest && o.sent < threshold) {
			s.lose(pn)
		}
	}
}

func (s *sim) ack(pn quic.PacketNumber) {
	o, ok := s.out[pn]
	if !ok {
		return // declared lost already
	}
	delete(s.out, pn)
	rtt := s.now.Sub(o.sent)
	s.srtt = (7*s.srtt + rtt) / 8
	s.largest = max(s.largest, pn)
	s.lastAckTime = s.now
	s.ptoCount = 0
	prior := s.inFlight
	s.inFlight -= o.size
	s.c.OnPacketAcked(pn, o.size, prior, s.now)
	s.total += o.size
	s.acked = append(s.acked, ackedAt{s.now, s.total})
	s.detectLosses()
}

// pto is when the probe timeout fires.
func (s *sim) pto() quic.MonoTime {
	if len(s.out) == 0 {
		return 0
	}
	var newest quic.MonoTime
	for _, o := range s.out {
		newest = max(newest, o.sent)
	}
	return newest.Add((2 * s.srtt) << min(s.ptoCount, 6))
}

// run advances the simulation to d of virtual time.
func (s *sim) run(d time.Duration) {
	end := epoch.Add(d)
	nextSample := s.now
	for s.now < end {
		if s.now >= nextSample {
			s.samples = append(s.samples, sample{at: s.elapsed(), bw: s.c.BottleneckRate() * 8,
				pacing: s.c.PacingRate() * 8, rtt: s.srtt, state: s.c.State(), cwnd: s.c.GetCongestionWindow()})
			nextSample = s.now.Add(100 * time.Millisecond)
		}
		// The application first: quic-go asks the controller only when it has a
		// packet to send, so only then is a refusal the controller holding it back.
		if s.appReady() <= s.now && s.c.CanSend(s.inFlight) && s.c.HasPacingBudget(s.now) {
			switch {
			case s.burstLeft > 0:
				s.burstLeft--
				s.send()
			case s.trickling(s.elapsed()) && s.p.trickleBurst > 0:
				s.appSent = s.now
				s.burstLeft = s.p.trickleBurst - 1
				s.send()
			case s.trickling(s.elapsed()):
				s.appSent = s.now
				s.sendSized(trickleSize)
			default:
				s.send()
			}
			continue
		}
		// The next thing to happen: an event, the pacer, a probe timeout, a sample.
		next := min(end, nextSample)
		if len(s.ev) > 0 {
			next = min(next, s.ev[0].at)
		}
		if ready := s.appReady(); ready > s.now {
			next = min(next, ready)
		} else if s.c.CanSend(s.inFlight) {
			if t := s.c.TimeUntilSend(s.inFlight); t > s.now {
				next = min(next, t)
			} else {
				next = min(next, s.now.Add(minPacingDelay))
			}
		}
		pto := s.pto()
		if pto != 0 {
			next = min(next, pto)
		}
		s.now = max(s.now, next)
		if pto != 0 && s.now >= pto {
			s.ptoCount++
			var oldest quic.PacketNumber = -1
			for pn := range s.out {
				if oldest < 0 || pn < oldest {
					oldest = pn
				}
			}
			s.send() // the probe, past the window
			if oldest >= 0 {
				s.lose(oldest)
			}
		}
		for len(s.ev) > 0 && s.ev[0].at <= s.now {
			e := heap.Pop(&s.ev).(event)
			switch e.kind {
			case evArrive:
				s.push(s.now.Add(s.p.delayAt(s.elapsed())), evAck, e.pn)
			case evAck:
				s.ack(e.pn)
			}
		}
	}
}

// goodput is the acknowledged rate in bits per second between two virtual times.
func (s *sim) goodput(from, to time.Duration) float64 {
	at := func(t time.Duration) quic.ByteCount {
		var b quic.ByteCount
		for _, a := range s.acked {
			if a.at.Sub(epoch) > t {
				break
			}
			b = a.total
		}
		return b
	}
	return float64(at(to)-at(from)) * 8 / (to - from).Seconds()
}

// bwBetween returns the least and largest modelled bottleneck rate sampled in [from, to).
func (s *sim) bwBetween(from, to time.Duration) (lo, hi float64) {
	lo = -1
	for _, x := range s.samples {
		if x.at < from || x.at >= to {
			continue
		}
		if lo < 0 || x.bw < lo {
			lo = x.bw
		}
		hi = max(hi, x.bw)
	}
	return lo, hi
}

// firstAckAfter is when the first acknowledgement after t arrived, or -1.
func (s *sim) firstAckAfter(t time.Duration) time.Duration {
	for _, a := range s.acked {
		if d := a.at.Sub(epoch); d > t {
			return d
		}
	}
	return -1
}
