// Package heartbeat is the liveness check of a QUIC connection between umbra's ground
// programs: the side that dialed pings on one stream of the connection, the other side
// echoes every ping, and a side declares the connection dead once it has heard nothing
// for the dead interval: about a second, where QUIC's idle timeout waits 30. Router links
// and routers' control links to the controller use it. A connection its owner holds
// through a silence (a router link across a radio's blackout: OnStall) is stalled
// instead, until the peer is heard again.
//
// It owns the ping stream's protocol (wire.LinkPing, echoed as wire.LinkPong) and the
// round trip it measures; it must not open, accept or close connections: its callers do.
package heartbeat

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/umbranet/umbra/internal/wire"
)

// Heartbeat timing. A connection is dead once nothing was heard for DeadAfter, or for
// deadRTTs round trips if that is longer (a slow link is not a dead one).
const (
	// Interval is the time between pings.
	Interval = 200 * time.Millisecond
	// DeadAfter is the shortest silence that declares a connection dead.
	DeadAfter = time.Second
	// deadRTTs is the silence, in smoothed round trips, that declares a slow link dead.
	deadRTTs = 4
	// rttWeight is the weight of the old round trip in the smoothed one, out of
	// rttWeight+1.
	rttWeight = 7
	// missedAfter is the silence at which each further Interval counts as a heartbeat
	// missed (OnMissed): two intervals with neither a ping nor an echo from the peer.
	missedAfter = 2 * Interval
)

// Monitor tracks a connection's heartbeats: when the peer was last heard and the round
// trip its echoes measure. The zero Monitor is not ready; use New.
type Monitor struct {
	mu        sync.Mutex
	lastHeard time.Time
	rtt       time.Duration // smoothed; zero until the first echo
	spoke     bool          // the peer sent a ping or echoed one at least once
	onMissed  func()        // called for each heartbeat missed; nil: not counted
	onStall   func(bool)    // called as the peer stalls and is heard again; nil: dead ends Watch
	deadAfter time.Duration // the shortest silence that declares it dead; zero means DeadAfter
}

// OnMissed has Watch call f once for each Interval the peer stays silent past two
// intervals: a heartbeat missed, as the router's metrics count them. Set it before Watch.
func (m *Monitor) OnMissed(f func()) {
	m.mu.Lock()
	m.onMissed = f
	m.mu.Unlock()
}

// OnStall has Watch, instead of returning ErrDead, call f(true) once the peer has been
// silent past the dead interval and f(false) once it is heard again, and watch on: for a
// connection its owner holds through a silence (a router link across a radio's
// blackout), which QUIC's idle timeout ends if the peer never returns. Set it before
// Watch.
func (m *Monitor) OnStall(f func(stalled bool)) {
	m.mu.Lock()
	m.onStall = f
	m.mu.Unlock()
}

// ErrDead is what Watch returns for a peer silent past the dead interval.
var ErrDead = errors.New("heartbeat: peer silent")

// New returns a Monitor that counts the peer as heard now.
func New() *Monitor { return &Monitor{lastHeard: time.Now()} }

// NewDeadAfter is New with a dead interval of its own: d, or DeadAfter when d is zero. A
// radio's link needs a longer one than a LAN's.
func NewDeadAfter(d time.Duration) *Monitor {
	return &Monitor{lastHeard: time.Now(), deadAfter: d}
}

// Heard records that the peer is alive.
func (m *Monitor) Heard() {
	m.mu.Lock()
	m.lastHeard = time.Now()
	m.spoke = true
	m.mu.Unlock()
}

// RTT is the smoothed round trip of the pings, zero before the first echo.
func (m *Monitor) RTT() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.rtt
}

// Spoke reports whether the peer ever sent a ping or echoed one: a peer that does not
// speak the heartbeat protocol never does.
func (m *Monitor) Spoke() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.spoke
}

// Dead reports how long the peer has been silent and whether that declares it dead.
func (m *Monitor) Dead() (time.Duration, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	silent := time.Since(m.lastHeard)
	dead := m.deadAfter
	if dead == 0 {
		dead = DeadAfter
	}
	return silent, silent > max(dead, deadRTTs*m.rtt)
}

// echoed records an echo of a ping sent at sent (the sender's clock, in nanoseconds).
func (m *Monitor) echoed(sent int64) {
	sample := time.Duration(time.Now().UnixNano() - sent)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lastHeard = time.Now()
	m.spoke = true
	if m.rtt == 0 {
		m.rtt = sample
	} else {
		m.rtt = (rttWeight*m.rtt + sample) / (rttWeight + 1)
	}
}

// Watch checks the peer every Interval until ctx ends (it returns nil) or the peer has
// been silent past the dead interval (an error wrapping ErrDead that says how long; with
// OnStall, the peer is stalled instead and Watch goes on). With untilSpoke, a peer that
// never took part in the heartbeats is not held to them: it predates them, and its
// connection relies on QUIC's idle timeout.
func (m *Monitor) Watch(ctx context.Context, untilSpoke bool) error {
	tick := time.NewTicker(Interval)
	defer tick.Stop()
	stalled := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		if untilSpoke && !m.Spoke() {
			continue
		}
		silent, dead := m.Dead()
		m.mu.Lock()
		missed, stall := m.onMissed, m.onStall
		m.mu.Unlock()
		if silent > missedAfter && missed != nil {
			missed()
		}
		switch {
		case dead && stall == nil:
			return fmt.Errorf("%w for %s", ErrDead, silent.Round(time.Millisecond))
		case dead && !stalled:
			stalled = true
			stall(true)
		case !dead && stalled:
			stalled = false
			stall(false)
		}
	}
}

// Ping sends a ping on st every Interval until ctx ends or st fails, and records every
// echo. st is the dialing side's heartbeat stream; its first message tells the peer
// what the stream is.
func (m *Monitor) Ping(ctx context.Context, st io.ReadWriter) {
	go func() {
		for {
			var pong wire.LinkPong
			if err := wire.Expect(st, wire.TypeLinkPong, &pong); err != nil {
				return
			}
			m.echoed(pong.Sent)
		}
	}()
	tick := time.NewTicker(Interval)
	defer tick.Stop()
	for seq := uint64(1); ; seq++ {
		if err := wire.Write(st, wire.TypeLinkPing, wire.LinkPing{Seq: seq, Sent: time.Now().UnixNano()}); err != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Echo answers the pings on st until it fails, counting each one as the peer heard.
// first is the body of the stream's first ping, which its reader has already read to
// learn what the stream is. It returns the error that ended the stream.
func (m *Monitor) Echo(st io.ReadWriter, first []byte) error {
	var ping wire.LinkPing
	if err := wire.Unmarshal(first, &ping); err != nil {
		return err
	}
	for {
		m.Heard()
		if err := wire.Write(st, wire.TypeLinkPong, wire.LinkPong(ping)); err != nil {
			return err
		}
		if err := wire.Expect(st, wire.TypeLinkPing, &ping); err != nil {
			return err
		}
	}
}
