package heartbeat

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/umbranet/umbra/internal/wire"
)

func TestDead(t *testing.T) {
	cases := []struct {
		name   string
		silent time.Duration
		rtt    time.Duration
		want   bool
	}{
		{"heard-just-now-is-alive", 0, 0, false},
		{"silent-past-the-dead-interval-is-dead", DeadAfter + 100*time.Millisecond, 0, true},
		{"a-slow-link-gets-four-round-trips", DeadAfter + 100*time.Millisecond, 500 * time.Millisecond, false},
		{"a-slow-link-silent-past-four-round-trips-is-dead", 2100 * time.Millisecond, 500 * time.Millisecond, true},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			m := &Monitor{lastHeard: time.Now().Add(-tt.silent), rtt: tt.rtt}
			if _, dead := m.Dead(); dead != tt.want {
				t.Errorf("dead = %v, want %v", dead, tt.want)
			}
		})
	}
}

// TestPingEcho: the dialing side's pings come back, measure a round trip and keep both
// sides alive; the answering side counts each ping as heard.
func TestPingEcho(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pinger, echoer := New(), New()
	go pinger.Ping(ctx, a)
	go func() {
		typ, body, err := wire.Read(b)
		if err != nil || typ != wire.TypeLinkPing {
			return
		}
		echoer.Echo(b, body)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !pinger.Spoke() {
		if time.Now().After(deadline) {
			t.Fatal("no echo within 10s")
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
	if pinger.RTT() <= 0 {
		t.Errorf("rtt = %v after an echo, want > 0", pinger.RTT())
	}
	if _, dead := pinger.Dead(); dead {
		t.Errorf("pinger dead right after an echo")
	}
	if _, dead := echoer.Dead(); dead || !echoer.Spoke() {
		t.Errorf("echoer dead or not spoken to right after a ping")
	}
}

// TestWatch: a silent peer is declared dead, with how long it was silent; one that never
// spoke is not, when the caller waits for it to speak first.
func TestWatch(t *testing.T) {
	silent := &Monitor{lastHeard: time.Now().Add(-2 * DeadAfter), spoke: true}
	if err := silent.Watch(context.Background(), false); !errors.Is(err, ErrDead) {
		t.Errorf("silent peer: got %v, want %v", err, ErrDead)
	}
	mute := &Monitor{lastHeard: time.Now().Add(-2 * DeadAfter)}
	ctx, cancel := context.WithTimeout(context.Background(), 3*Interval)
	defer cancel()
	if err := mute.Watch(ctx, true); err != nil {
		t.Errorf("peer that never spoke, untilSpoke: got %v, want nil at the context's end", err)
	}
}

// TestMissedHeartbeatsAreCounted: a peer heard every interval misses none; a silent one
// misses one each interval from the second on, until Watch declares it dead.
func TestMissedHeartbeatsAreCounted(t *testing.T) {
	for _, tc := range []struct {
		name            string
		talks           bool
		atLeast, atMost int64
	}{
		{"peer-heard-every-interval", true, 0, 0},
		{"silent-peer", false, 2, int64(DeadAfter/Interval) + 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := New()
			var missed atomic.Int64
			m.OnMissed(func() { missed.Add(1) })
			ctx, cancel := context.WithTimeout(context.Background(), 2*DeadAfter)
			defer cancel()
			if tc.talks {
				go func() {
					tick := time.NewTicker(Interval / 4)
					defer tick.Stop()
					for {
						select {
						case <-ctx.Done():
							return
						case <-tick.C:
							m.Heard()
						}
					}
				}()
			}
			m.Watch(ctx, false)
			if got := missed.Load(); got < tc.atLeast || got > tc.atMost {
				t.Errorf("got %d heartbeats missed, want %d to %d", got, tc.atLeast, tc.atMost)
			}
		})
	}
}

// TestDeadAfterOfItsOwn: a monitor made with a longer dead interval (a radio's link)
// does not call a silence of a few seconds dead; one made with zero keeps DeadAfter.
func TestDeadAfterOfItsOwn(t *testing.T) {
	radio := NewDeadAfter(10 * time.Second)
	radio.lastHeard = time.Now().Add(-3 * time.Second)
	if silent, dead := radio.Dead(); dead {
		t.Errorf("10 s monitor silent for %v: dead, want alive", silent)
	}
	lan := NewDeadAfter(0)
	lan.lastHeard = time.Now().Add(-2 * DeadAfter)
	if silent, dead := lan.Dead(); !dead {
		t.Errorf("default monitor silent for %v: alive, want dead", silent)
	}
}

// TestStalledPeerIsHeldNotDead: with OnStall, a peer silent past the dead interval is
// stalled, Watch goes on instead of declaring it dead, and the peer heard again is no
// longer stalled.
func TestStalledPeerIsHeldNotDead(t *testing.T) {
	const deadAfter = 300 * time.Millisecond
	m := NewDeadAfter(deadAfter)
	changes := make(chan bool, 4)
	m.OnStall(func(stalled bool) { changes <- stalled })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	watched := make(chan error, 1)
	go func() { watched <- m.Watch(ctx, false) }()
	want := func(stalled bool) {
		t.Helper()
		select {
		case got := <-changes:
			if got != stalled {
				t.Fatalf("stalled = %v, want %v", got, stalled)
			}
		case err := <-watched:
			t.Fatalf("Watch returned %v, want it to go on watching a stalled peer", err)
		case <-time.After(10 * time.Second):
			t.Fatalf("no change to stalled = %v within 10 s", stalled)
		}
	}
	want(true)
	if _, dead := m.Dead(); !dead {
		t.Error("Dead() = false for a stalled peer, want true (its link is reported down)")
	}
	m.Heard()
	want(false)
	cancel()
	if err := <-watched; err != nil {
		t.Errorf("Watch = %v after ctx ended, want nil", err)
	}
}
