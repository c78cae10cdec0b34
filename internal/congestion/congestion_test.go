package congestion

import (
	"fmt"
	"testing"
	"time"
)

// mbit is a rate in bits per second.
const mbit = 1e6

// radioTolerance is the radio profile's loss tolerance (transport.Radio).
const radioTolerance = 0.5

// TestRateFollowsPath runs the controller over simulated paths and checks that what it
// delivers, and the rate it models, stay within a band of what the path carries.
func TestRateFollowsPath(t *testing.T) {
	for _, tc := range []struct {
		name       string
		path       path
		cfg        Config
		from, to   time.Duration // the window checked
		minShare   float64       // goodput over what the path delivers, at least
		bwLo, bwHi float64       // modelled rate over the path's, within
	}{
		{
			name: "clean-10mbit-50ms",
			path: path{rate: 10 * mbit, delay: 25 * time.Millisecond, queue: 200},
			from: 5 * time.Second, to: 20 * time.Second, minShare: 0.9, bwLo: 0.85, bwHi: 1.3,
		},
		{
			name: "clean-10mbit-800ms",
			path: path{rate: 10 * mbit, delay: 400 * time.Millisecond, queue: 200},
			from: 10 * time.Second, to: 30 * time.Second, minShare: 0.85, bwLo: 0.85, bwHi: 1.3,
		},
		{
			name: "random-loss-10pct-200ms-keeps-the-rate",
			path: path{rate: 10 * mbit, delay: 100 * time.Millisecond, loss: 0.10, queue: 200},
			cfg:  Config{LossTolerance: radioTolerance},
			from: 5 * time.Second, to: 30 * time.Second, minShare: 0.85, bwLo: 0.8, bwHi: 1.3,
		},
		{
			name: "random-loss-10pct-with-default-tolerance",
			path: path{rate: 10 * mbit, delay: 100 * time.Millisecond, loss: 0.10, queue: 200},
			from: 5 * time.Second, to: 30 * time.Second, minShare: 0.85, bwLo: 0.8, bwHi: 1.3,
		},
		{
			name: "random-loss-30pct-800ms-on-a-radio",
			path: path{rate: 10 * mbit, delay: 400 * time.Millisecond, loss: 0.30, queue: 200},
			cfg:  Config{LossTolerance: radioTolerance},
			// Startup alone takes ten 800 ms round trips to find 10 Mbit/s, and a
			// 30 % share judged over 50 packets now and then reads above the tolerance.
			// The queue (240 ms) hides under a quarter of 800 ms: its overflow passes for
			// random loss and the model overshoots by up to a third.
			from: 20 * time.Second, to: 45 * time.Second, minShare: 0.75, bwLo: 0.55, bwHi: 1.4,
		},
		{
			// At 64 kbit/s the least window (four packets) is a queue of 600 ms by itself,
			// and the base RTT the model re-measures includes it: the band is wider.
			name: "telemetry-radio-64kbit",
			path: path{rate: 64_000, delay: 100 * time.Millisecond, loss: 0.05, queue: 16},
			cfg:  Config{LossTolerance: radioTolerance},
			from: 10 * time.Second, to: 60 * time.Second, minShare: 0.8, bwLo: 0.6, bwHi: 1.5,
		},
		{
			name: "rate-step-down-10-to-2mbit",
			path: path{rate: 10 * mbit, delay: 50 * time.Millisecond, queue: 200,
				steps: []rateStep{{at: 10 * time.Second, rate: 2 * mbit}}},
			from: 15 * time.Second, to: 30 * time.Second, minShare: 0.85, bwLo: 0.75, bwHi: 1.4,
		},
		{
			name: "rate-step-up-2-to-10mbit",
			path: path{rate: 2 * mbit, delay: 50 * time.Millisecond, queue: 200,
				steps: []rateStep{{at: 10 * time.Second, rate: 10 * mbit}}},
			from: 14 * time.Second, to: 30 * time.Second, minShare: 0.85, bwLo: 0.8, bwHi: 1.3,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSim(tc.path, tc.cfg, 1)
			s.run(tc.to)
			rate := s.rateAt(tc.from)
			want := tc.minShare * rate * (1 - tc.path.loss)
			if got := s.goodput(tc.from, tc.to); got < want {
				t.Errorf("goodput %.2f Mbit/s, want >= %.2f (%.0f %% of the %.2f the path delivers)%s",
					got/mbit, want/mbit, tc.minShare*100, rate*(1-tc.path.loss)/mbit, s.trace())
			}
			lo, hi := s.bwBetween(tc.from, tc.to)
			if lo < tc.bwLo*rate || hi > tc.bwHi*rate {
				t.Errorf("modelled rate %.2f to %.2f Mbit/s, want within %.2f to %.2f%s",
					lo/mbit, hi/mbit, tc.bwLo*rate/mbit, tc.bwHi*rate/mbit, s.trace())
			}
		})
	}
}

// TestQueueStaysShort checks that after startup the controller's own queue stays a
// fraction of the base round trip: pacing at the model drains it.
func TestQueueStaysShort(t *testing.T) {
	s := newSim(path{rate: 10 * mbit, delay: 25 * time.Millisecond, queue: 1000}, Config{}, 2)
	s.run(20 * time.Second)
	var worst time.Duration
	for _, x := range s.samples {
		if x.at >= 5*time.Second {
			worst = max(worst, x.rtt)
		}
	}
	if limit := 50*time.Millisecond + 50*time.Millisecond; worst > limit {
		t.Errorf("smoothed RTT up to %v on a 50 ms path, want <= %v%s", worst, limit, s.trace())
	}
}

// TestParityLeavesTheLinkItsShare runs the controller over a 10 Mbit/s path on which,
// from 10 s on, every packet brings 30 % more beside it, sent outside the controller:
// fecconn's parity once the radio starts losing 10 %. Told the overhead, the controller
// slows at once and keeps its queue short; not told, it keeps the rate its filter
// remembers for ten round trips and fills the queue.
func TestParityLeavesTheLinkItsShare(t *testing.T) {
	p := path{rate: 10 * mbit, delay: 100 * time.Millisecond, queue: 200, overhead: 0.3, overheadFrom: 10 * time.Second}
	var told *sim
	told = newSim(p, Config{LossTolerance: radioTolerance, Overhead: func() float64 { return p.overheadAt(told.elapsed()) }}, 3)
	told.run(30 * time.Second)
	blind := newSim(p, Config{LossTolerance: radioTolerance}, 3)
	blind.run(30 * time.Second)
	worstRTT := func(s *sim) time.Duration {
		var worst time.Duration
		for _, x := range s.samples {
			if x.at >= 10*time.Second && x.at < 15*time.Second {
				worst = max(worst, x.rtt)
			}
		}
		return worst
	}
	t.Logf("smoothed RTT after the parity began: up to %v told, %v not told", worstRTT(told), worstRTT(blind))
	if worst, limit := worstRTT(told), 200*time.Millisecond+75*time.Millisecond; worst > limit {
		t.Errorf("told of the parity: smoothed RTT up to %v on a 200 ms path, want <= %v%s", worst, limit, told.trace())
	}
	fit := 10 * mbit / 1.3
	if got := told.goodput(15*time.Second, 30*time.Second); got < 0.8*fit || got > 1.05*fit {
		t.Errorf("goodput %.2f Mbit/s told of 30 %% parity, want within 0.8–1.05 of %.2f%s", got/mbit, fit/mbit, told.trace())
	}
}

// TestBlackoutResumesAtTheRate checks that a connection coming back from a blackout
// sends at the rate it had, not from a slow start.
func TestBlackoutResumesAtTheRate(t *testing.T) {
	for _, dark := range []time.Duration{2 * time.Second, 10 * time.Second, 30 * time.Second} {
		t.Run(fmt.Sprint(dark), func(t *testing.T) {
			const at = 10 * time.Second
			p := path{rate: 10 * mbit, delay: 100 * time.Millisecond, loss: 0.05, queue: 200,
				blackout: []window{{from: at, to: at + dark}}}
			s := newSim(p, Config{LossTolerance: radioTolerance}, 3)
			s.run(at + dark + 20*time.Second)
			_, before := s.bwBetween(at-time.Second, at)
			lo, _ := s.bwBetween(at+dark, at+dark+5*time.Second)
			if lo < 0.8*before {
				t.Errorf("modelled rate fell to %.2f Mbit/s after the blackout, want >= %.2f (80 %% of the %.2f before)%s",
					lo/mbit, 0.8*before/mbit, before/mbit, s.trace())
			}
			// From the first acknowledgement after the return (when quic-go's probe
			// timeout next fires, which is not the controller's), the connection
			// delivers most of the path again within a second.
			back := s.firstAckAfter(at + dark)
			if back < 0 {
				t.Fatalf("no acknowledgement after the blackout%s", s.trace())
			}
			want := 0.7 * p.rate * (1 - p.loss)
			if got := s.goodput(back+time.Second, back+3*time.Second); got < want {
				t.Errorf("goodput %.2f Mbit/s from 1 to 3 s after the first acknowledgement (%v), want >= %.2f%s",
					got/mbit, back, want/mbit, s.trace())
			}
		})
	}
}

// TestBulkAfterIdleFindsTheRate checks that a long-lived connection (an agent's link to
// its router) whose model was last fed by a trickle of echoes finds the path's rate within
// a few round trips once a bulk transfer starts, instead of growing a quarter per probing
// cycle from the trickle's rate, and without a model above the path's rate, which would
// fill its queue.
func TestBulkAfterIdleFindsTheRate(t *testing.T) {
	const maxModelShare = 1.5
	for _, tc := range []struct {
		name     string
		path     path
		idleFrom time.Duration // bulk before it, if not zero
		minShare float64       // goodput over what the path delivers, at least
	}{
		{"clean-10mbit-200ms-never-filled", path{rate: 10 * mbit, delay: 100 * time.Millisecond, queue: 200}, 0, 0.75},
		{"random-loss-10pct-200ms-never-filled", path{rate: 10 * mbit, delay: 100 * time.Millisecond, loss: 0.10, queue: 200}, 0, 0.75},
		{"random-loss-10pct-200ms-after-bulk", path{rate: 10 * mbit, delay: 100 * time.Millisecond, loss: 0.10, queue: 200}, 10 * time.Second, 0.75},
		// Startup from the initial window takes six 800 ms round trips to reach
		// 10 Mbit/s, half of them before the counted window opens: what is asserted is
		// that startup runs, not that it is done.
		{"random-loss-10pct-800ms-never-filled", path{rate: 10 * mbit, delay: 400 * time.Millisecond, loss: 0.10, queue: 200}, 0, 0.55},
		// The link came up on a path of a tenth of a millisecond whose delay then rose
		// to 100 ms each way while the connection only echoed (the bench's rows).
		{"rtt-rose-while-idle", path{rate: 10 * mbit, delay: 50 * time.Microsecond, loss: 0.10, queue: 200,
			delaySteps: []delayStep{{at: 19 * time.Second, delay: 100 * time.Millisecond}}}, 0, 0.75},
		// A link that came up on a short 3 Mbit/s hop, where a status sync of three
		// packets every 50 ms measured a rate, then moved to a 10 Mbit/s radio of 800 ms
		// while it idled: a new path, whose rate startup must search, not take from
		// the bursts (which once ended startup on them, and left the window under four
		// packets, draining for ever, at 0.05 Mbit/s).
		{"rtt-rose-to-800ms-while-idle", path{rate: 3 * mbit, delay: 50 * time.Microsecond, queue: 200, trickleBurst: 3,
			steps:      []rateStep{{at: 19 * time.Second, rate: 10 * mbit}},
			delaySteps: []delayStep{{at: 19 * time.Second, delay: 400 * time.Millisecond}}}, 0, 0.55},
		// A bulk transfer on a 20 Mbit/s hop of 50 ms, then echoes while the path
		// became a 10 Mbit/s radio of 200 ms, then a transfer the application keeps
		// to a window (the bench's echo): the restart on the new path forgets the old
		// rate, which the rounds the application limited once brought back, pacing
		// at twice the path into its queue.
		{"rate-fell-and-rtt-rose-while-idle", path{rate: 20 * mbit, delay: 25 * time.Millisecond, queue: 200, appWindow: 560 << 10,
			steps:      []rateStep{{at: 19 * time.Second, rate: 10 * mbit}},
			delaySteps: []delayStep{{at: 19 * time.Second, delay: 100 * time.Millisecond}}}, 10 * time.Second, 0.75},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A trickle until 30 s (longer than the base RTT's 10 s window), after
			// bulk or from the start, then bulk, measured as the bench's goodput matrix
			// does: a warm-up of 1.5 s or three round trips, then 3 s or six round trips.
			const bulkAgain = 30 * time.Second
			p := tc.path
			p.trickle = []window{{from: tc.idleFrom, to: bulkAgain}}
			s := newSim(p, Config{LossTolerance: radioTolerance}, 5)
			rtt := 2 * p.delayAt(bulkAgain)
			from := bulkAgain + max(1500*time.Millisecond, 3*rtt)
			to := from + max(3*time.Second, 6*rtt)
			s.run(to)
			want := tc.minShare * s.rateAt(bulkAgain) * (1 - p.loss)
			if got := s.goodput(from, to); got < want {
				t.Errorf("goodput %.2f Mbit/s from %v to %v after the idle spell, want >= %.2f (%.0f %% of what the path delivers)%s",
					got/mbit, from, to, want/mbit, tc.minShare*100, s.trace())
			}
			// Whatever it measured before, the model must not outrun the path now: that
			// fills the queue.
			if _, hi := s.bwBetween(from, to); hi > maxModelShare*s.rateAt(bulkAgain) {
				t.Errorf("modelled rate up to %.2f Mbit/s from %v to %v on a path of %.2f, want <= %.0f %% of it%s",
					hi/mbit, from, to, s.rateAt(bulkAgain)/mbit, maxModelShare*100, s.trace())
			}
		})
	}
}

// TestApplicationWindowKeepsTheQueueShort checks a bulk transfer the application paces
// below the path's rate (an echo that keeps a fixed amount in flight): startup's window
// grows only by what the window itself carried, so the windows the application releases
// do not burst into the radio's queue at startupGain, and the transfer gets what the
// application asks for.
func TestApplicationWindowKeepsTheQueueShort(t *testing.T) {
	p := path{rate: 10 * mbit, delay: 100 * time.Millisecond, loss: 0.05, queue: 200, appWindow: 150 << 10}
	s := newSim(p, Config{LossTolerance: radioTolerance}, 6)
	s.run(15 * time.Second)
	for _, x := range s.samples {
		if x.at >= 5*time.Second && x.rtt > 250*time.Millisecond {
			t.Fatalf("smoothed RTT %v at %v under a 150 KiB application window on a 200 ms path, want <= 250 ms%s", x.rtt, x.at, s.trace())
		}
	}
	// 150 KiB a round trip of 200 ms is 6.1 Mbit/s, less what the loss holds up.
	if got, want := s.goodput(5*time.Second, 15*time.Second), 4.5*mbit; got < want {
		t.Errorf("goodput %.2f Mbit/s under a 150 KiB application window, want >= %.2f%s", got/mbit, want/mbit, s.trace())
	}
}

// TestLossAboveToleranceShrinks checks the other side of the tolerance: a path that loses
// more than it is congestion, and the rate falls.
func TestLossAboveToleranceShrinks(t *testing.T) {
	p := path{rate: 10 * mbit, delay: 25 * time.Millisecond, loss: 0.30, queue: 200}
	s := newSim(p, Config{LossTolerance: 0.05}, 4)
	s.run(20 * time.Second)
	_, hi := s.bwBetween(10*time.Second, 20*time.Second)
	if hi > 0.5*p.rate {
		t.Errorf("modelled rate up to %.2f Mbit/s at 30 %% loss with a 5 %% tolerance, want <= %.2f", hi/mbit, 0.5*p.rate/mbit)
	}
}

// traceEvery is how many 100 ms samples a failure's trace skips between lines.
var traceEvery = 10

// trace is the model every second, for a failure's message.
func (s *sim) trace() string {
	out := "\n  t      model   pacing  srtt    window  state"
	for i, x := range s.samples {
		if i%traceEvery != 0 {
			continue
		}
		out += fmt.Sprintf("\n  %-6v %6.2f  %6.2f  %-6v  %6d  %v", x.at.Round(100*time.Millisecond), x.bw/mbit, x.pacing/mbit, x.rtt.Round(time.Millisecond), x.cwnd, x.state)
	}
	return out
}

// TestSpuriousLossIsTakenBack: a packet quic-go declared lost and then saw acknowledged
// does not count against the round's loss share.
func TestSpuriousLossIsTakenBack(t *testing.T) {
	c := New(Config{})
	c.SetMaxDatagramSize(simMSS)
	now := epoch
	c.OnPacketSent(now, simMSS, 1, simMSS, true)
	c.OnPacketSent(now, 2*simMSS, 2, simMSS, true)
	c.OnPacketAcked(1, simMSS, 2*simMSS, now.Add(50*time.Millisecond))
	c.OnCongestionEvent(2, simMSS, simMSS)
	if c.roundLost != simMSS {
		t.Fatalf("round lost %d bytes after a loss, want %d", c.roundLost, simMSS)
	}
	c.OnSpuriousLoss(2)
	if c.roundLost != 0 || c.lost != 0 {
		t.Errorf("after the loss proved spurious: round lost %d, lost %d, want 0 and 0", c.roundLost, c.lost)
	}
}

// TestTellsTheBaseRTT checks Config.BaseRTT: the socket under the connection hears the
// model's base round trip, and hears it again when the path's delay rises.
func TestTellsTheBaseRTT(t *testing.T) {
	var told []time.Duration
	p := path{rate: 10 * mbit, delay: 25 * time.Millisecond, queue: 200, trickle: []window{{from: 5 * time.Second, to: 30 * time.Second}},
		delaySteps: []delayStep{{at: 10 * time.Second, delay: 400 * time.Millisecond}}}
	s := newSim(p, Config{BaseRTT: func(d time.Duration) { told = append(told, d) }}, 7)
	s.run(10 * time.Second)
	if len(told) == 0 || told[len(told)-1] != s.c.BaseRTT() || told[len(told)-1] > 60*time.Millisecond {
		t.Fatalf("told %v by 10 s, want the base round trip %v of a 50 ms path last", told, s.c.BaseRTT())
	}
	s.run(30 * time.Second)
	if last := told[len(told)-1]; last < 800*time.Millisecond || last != s.c.BaseRTT() {
		t.Errorf("told %v by 30 s, want the new base of an 800 ms path (%v) last", told, s.c.BaseRTT())
	}
}

// TestFlowKeepsItsRateWhenTheRoundTripJumps: a telemetry flow of two full packets every
// 50 ms (48 KB/s, more than a trickle) on a link that came up at 1 ms, whose round trip
// then jumps to 800 ms (the drone flew out of Wi-Fi onto its radio). The window the old
// base sized (four packets a round trip, 6 KB/s) held the flow to 0.05 Mbit/s until the
// 10 s base probe, and again after it; four packets in flight cannot queue 800 ms, so the
// new base is taken within a few round trips and the flow gets through whole.
func TestFlowKeepsItsRateWhenTheRoundTripJumps(t *testing.T) {
	p := path{rate: 10 * mbit, delay: 500 * time.Microsecond, queue: 200, trickleBurst: 2,
		trickle:    []window{{from: 0, to: 30 * time.Second}},
		delaySteps: []delayStep{{at: 5 * time.Second, delay: 400 * time.Millisecond}}}
	s := newSim(p, Config{LossTolerance: radioTolerance}, 8)
	s.run(30 * time.Second)
	// From 5 s after the jump (three round trips to see it, a few more to take it),
	// the flow's 48 KB/s.
	want := 0.9 * float64(2*simMSS*8) / trickleEvery.Seconds()
	if got := s.goodput(10*time.Second, 20*time.Second); got < want {
		t.Errorf("goodput %.3f Mbit/s from 10 to 20 s, want >= %.3f (the flow's rate)%s", got/mbit, want/mbit, s.trace())
	}
}
