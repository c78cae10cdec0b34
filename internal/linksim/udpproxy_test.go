package linksim

import (
	"context"
	"encoding/binary"
	"math"
	"net"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

func TestProxyDelivery(t *testing.T) {
	tests := []struct {
		name  string
		imp   Impairment
		n     int
		check func(t *testing.T, n int, seqs []uint64, st DirStats)
	}{
		{
			name: "clean link delivers every packet in order",
			imp:  Impairment{},
			n:    200,
			check: func(t *testing.T, n int, seqs []uint64, st DirStats) {
				want := make([]uint64, n)
				for i := range want {
					want[i] = uint64(i)
				}
				if !slices.Equal(seqs, want) {
					t.Errorf("got %d packets with %d out of order, want %d in order", len(seqs), inversions(seqs), n)
				}
			},
		},
		{
			name: "loss of 0.3 delivers about 70 percent",
			imp:  Impairment{Loss: 0.3},
			n:    1000,
			check: func(t *testing.T, n int, seqs []uint64, st DirStats) {
				// Six standard deviations of the binomial either side of n·0.7.
				mean, sd := 0.7*float64(n), math.Sqrt(float64(n)*0.3*0.7)
				lo, hi := int(mean-6*sd), int(mean+6*sd)
				if got := len(seqs); got < lo || got > hi {
					t.Errorf("got %d of %d delivered, want %d..%d", got, n, lo, hi)
				}
				if got, want := st.Dropped.Loss, uint64(n-len(seqs)); got != want {
					t.Errorf("got %d loss drops, want %d", got, want)
				}
			},
		},
		{
			name: "gilbert-elliott loses packets in bursts",
			imp:  Impairment{PGoodToBad: 0.05, PBadToGood: 0.3},
			n:    1000,
			check: func(t *testing.T, n int, seqs []uint64, st DirStats) {
				// Mean burst 1/PBadToGood ≈ 3.3; independent loss would give ≈ 1.2.
				if got := meanGap(seqs, n); got <= 1.5 {
					t.Errorf("got mean loss burst %.2f packets, want > 1.5", got)
				}
			},
		},
		{
			name: "duplicate of 0.5 delivers about half the packets twice",
			imp:  Impairment{Duplicate: 0.5},
			n:    200,
			check: func(t *testing.T, n int, seqs []uint64, st DirStats) {
				if got := distinct(seqs); got != n {
					t.Errorf("got %d distinct packets, want %d", got, n)
				}
				if extra := len(seqs) - n; extra < n/4 || extra > 3*n/4 {
					t.Errorf("got %d duplicates, want %d..%d", extra, n/4, 3*n/4)
				}
			},
		},
		{
			name: "reorder of 0.2 delivers some packets out of order",
			imp:  Impairment{Reorder: 0.2},
			n:    200,
			check: func(t *testing.T, n int, seqs []uint64, st DirStats) {
				if got := distinct(seqs); got != n {
					t.Errorf("got %d distinct packets, want %d", got, n)
				}
				if got := inversions(seqs); got < 5 {
					t.Errorf("got %d out-of-order arrivals, want >= 5", got)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startSink(t, false)
			p, _ := newTestProxy(t, s, tt.imp, Impairment{})
			c := dial(t, p)
			send(t, c, p, 0, tt.n, testPayload)
			st := settle(t, p, s)
			tt.check(t, tt.n, s.seqs(), st.Up)
		})
	}
}

// meanGap returns the mean length of the runs of sequence numbers below n missing
// from seqs, which arrive in order.
func meanGap(seqs []uint64, n int) float64 {
	runs, missing := 0, 0
	next := uint64(0)
	for _, s := range append(seqs, uint64(n)) {
		if s > next {
			runs++
			missing += int(s - next)
		}
		next = s + 1
	}
	if runs == 0 {
		return 0
	}
	return float64(missing) / float64(runs)
}

func TestProxyDelayAddsOneWayDelay(t *testing.T) {
	const (
		pings = 5
		// slack allows for scheduling on a loaded two-core machine under -race.
		slack = 250 * time.Millisecond
	)
	tests := []struct {
		name           string
		imp            Impairment
		minRTT, maxRTT time.Duration
	}{
		{
			name:   "delay of 25ms each way adds at least 50ms to the round trip",
			imp:    Impairment{Delay: 25 * time.Millisecond},
			minRTT: 50 * time.Millisecond,
			maxRTT: 50*time.Millisecond + slack,
		},
		{
			name:   "jitter keeps the round trip within delay plus or minus jitter",
			imp:    Impairment{Delay: 30 * time.Millisecond, Jitter: 10 * time.Millisecond},
			minRTT: 40 * time.Millisecond,
			maxRTT: 80*time.Millisecond + slack,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startSink(t, true)
			p, _ := newTestProxy(t, s, tt.imp, tt.imp)
			c := dial(t, p)
			buf := make([]byte, maxDatagramSize)
			for i := range pings {
				start := time.Now()
				if _, err := c.Write(datagram(uint64(i), testPayload)); err != nil {
					t.Fatalf("write: %v", err)
				}
				_ = c.SetReadDeadline(start.Add(settleTimeout))
				if _, err := c.Read(buf); err != nil {
					t.Fatalf("ping %d: got %v, want an echo", i, err)
				}
				rtt := time.Since(start)
				if rtt < tt.minRTT || rtt > tt.maxRTT {
					t.Errorf("ping %d: got RTT %v, want %v..%v", i, rtt, tt.minRTT, tt.maxRTT)
				}
			}
		})
	}
}

func TestProxyRateCapBoundsThroughput(t *testing.T) {
	const tolerance = 0.3
	tests := []struct {
		name    string
		rate    int64
		n, size int
	}{
		{name: "1 Mbit/s spaces 1000-byte datagrams about 8ms apart", rate: 1_000_000, n: 60, size: 1000},
		{name: "4 Mbit/s spaces 500-byte datagrams about 1ms apart", rate: 4_000_000, n: 300, size: 500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startSink(t, false)
			imp := Impairment{RateBitsPerSec: tt.rate, QueuePackets: tt.n}
			p, _ := newTestProxy(t, s, imp, Impairment{})
			c := dial(t, p)
			send(t, c, p, 0, tt.n, tt.size)
			settle(t, p, s)

			got := s.arrivals()
			if len(got) != tt.n {
				t.Fatalf("got %d datagrams, want %d", len(got), tt.n)
			}
			elapsed := got[len(got)-1].at.Sub(got[0].at)
			want := time.Duration(tt.n-1) * serialization(tt.size+ipv4UDPOverhead, tt.rate)
			lo := time.Duration(float64(want) * (1 - tolerance))
			hi := time.Duration(float64(want) * (1 + tolerance))
			if elapsed < lo || elapsed > hi {
				t.Errorf("got %d datagrams in %v, want %v..%v", tt.n, elapsed, lo, hi)
			}
		})
	}
}

func TestProxyMTUDropsOversized(t *testing.T) {
	const mtu = 500
	tests := []struct {
		name      string
		payload   int
		delivered bool
	}{
		{name: "datagram that exactly fits the MTU is delivered", payload: mtu - ipv4UDPOverhead, delivered: true},
		{name: "datagram one byte over the MTU is dropped", payload: mtu - ipv4UDPOverhead + 1, delivered: false},
		{name: "datagram twice the MTU is dropped", payload: 2 * mtu, delivered: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startSink(t, false)
			p, _ := newTestProxy(t, s, Impairment{MTU: mtu}, Impairment{})
			send(t, dial(t, p), p, 0, 1, tt.payload)
			st := settle(t, p, s)
			if got := s.count() == 1; got != tt.delivered {
				t.Errorf("got delivered %v, want %v", got, tt.delivered)
			}
			if got, want := st.Up.Dropped.MTU == 1, !tt.delivered; got != want {
				t.Errorf("got %d MTU drops, want drop %v", st.Up.Dropped.MTU, want)
			}
		})
	}
}

func TestProxyBlackoutOnCommand(t *testing.T) {
	const n = 20
	s := startSink(t, false)
	p, link := newTestProxy(t, s, Impairment{}, Impairment{})
	c := dial(t, p)

	link.SetBlackout(true)
	send(t, c, p, 0, n, testPayload)
	st := settle(t, p, s)
	if got := s.count(); got != 0 {
		t.Errorf("during blackout: got %d delivered, want 0", got)
	}
	if got := st.Up.Dropped.Blackout; got != n {
		t.Errorf("during blackout: got %d blackout drops, want %d", got, n)
	}

	link.SetBlackout(false)
	send(t, c, p, n, n, testPayload)
	settle(t, p, s)
	if got := s.count(); got != n {
		t.Errorf("after blackout: got %d delivered, want %d", got, n)
	}
}

func TestProxyTimedBlackoutEndsByItself(t *testing.T) {
	const (
		blackout = 300 * time.Millisecond
		probe    = 10 * time.Millisecond
	)
	s := startSink(t, false)
	p, link := newTestProxy(t, s, Impairment{}, Impairment{})
	c := dial(t, p)

	start := time.Now()
	link.Blackout(blackout)
	tick := time.NewTicker(probe)
	defer tick.Stop()
	for seq := uint64(0); s.count() == 0; seq++ {
		if time.Since(start) > settleTimeout {
			t.Fatalf("got no packet through %v after a %v blackout, want traffic to resume", settleTimeout, blackout)
		}
		if _, err := c.Write(datagram(seq, testPayload)); err != nil {
			t.Fatalf("write: %v", err)
		}
		<-tick.C
	}
	if got := s.arrivals()[0].at.Sub(start); got < blackout {
		t.Errorf("got first packet %v after the blackout began, want >= %v", got, blackout)
	}
	if got := p.Stats().Up.Dropped.Blackout; got == 0 {
		t.Errorf("got %d blackout drops, want some", got)
	}
}

func TestProxyRebindChangesSourcePort(t *testing.T) {
	s := startSink(t, true)
	p, _ := newTestProxy(t, s, Impairment{}, Impairment{})
	c := dial(t, p)

	ping := func(seq uint64) {
		t.Helper()
		if _, err := c.Write(datagram(seq, testPayload)); err != nil {
			t.Fatalf("write: %v", err)
		}
		_ = c.SetReadDeadline(time.Now().Add(settleTimeout))
		buf := make([]byte, testPayload)
		if _, err := c.Read(buf); err != nil {
			t.Fatalf("ping %d: got %v, want an echo", seq, err)
		}
		if got := binary.BigEndian.Uint64(buf); got != seq {
			t.Fatalf("ping %d: got echo of %d, want %d", seq, got, seq)
		}
	}
	lastFrom := func() uint16 {
		a := s.arrivals()
		return a[len(a)-1].from.Port()
	}

	ping(0)
	before := lastFrom()
	if err := p.Rebind(); err != nil {
		t.Fatalf("Rebind: %v", err)
	}
	ping(1)
	if after := lastFrom(); after == before {
		t.Errorf("got source port %d after Rebind, want a port other than %d", after, before)
	}
}

func TestProxyRuntimeChangeTakesEffect(t *testing.T) {
	const n = 20
	s := startSink(t, false)
	p, link := newTestProxy(t, s, Impairment{}, Impairment{})
	c := dial(t, p)

	phases := []struct {
		name    string
		set     func() error
		deliver int
	}{
		{"clean link delivers everything", func() error { return nil }, n},
		{"setting up loss to 1 drops everything", func() error { return link.SetUp(Impairment{Loss: 1}) }, 0},
		{"setting both clean delivers again", func() error { return link.SetBoth(Impairment{}) }, n},
		{"a down-only blackout leaves up traffic alone", func() error { return link.SetDown(Impairment{Blackout: true}) }, n},
		{"an up blackout drops everything", func() error { return link.SetUp(Impairment{Blackout: true}) }, 0},
	}
	seq := uint64(0)
	for _, ph := range phases {
		if err := ph.set(); err != nil {
			t.Fatalf("%s: %v", ph.name, err)
		}
		before := s.count()
		send(t, c, p, seq, n, testPayload)
		seq += n
		settle(t, p, s)
		if got := s.count() - before; got != ph.deliver {
			t.Errorf("%s: got %d delivered, want %d", ph.name, got, ph.deliver)
		}
	}
}

func TestProxyStatsCountDropsByReason(t *testing.T) {
	const n = 20
	tests := []struct {
		name    string
		imp     Impairment
		payload int
		reason  func(Drops) uint64
		atLeast uint64
	}{
		{"loss of 1 counts every packet as lost", Impairment{Loss: 1}, testPayload, func(d Drops) uint64 { return d.Loss }, n},
		{"blackout counts every packet as blacked out", Impairment{Blackout: true}, testPayload, func(d Drops) uint64 { return d.Blackout }, n},
		{"mtu counts oversized packets", Impairment{MTU: 100}, 200, func(d Drops) uint64 { return d.MTU }, n},
		// 128 wire bytes at 8 kbit/s hold the line for 128 ms, so a one-packet queue
		// overflows on nearly every packet of a burst.
		{"rate cap with a one-packet queue counts tail drops", Impairment{RateBitsPerSec: 8000, QueuePackets: 1}, 100, func(d Drops) uint64 { return d.Queue }, n / 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startSink(t, false)
			p, _ := newTestProxy(t, s, tt.imp, Impairment{})
			send(t, dial(t, p), p, 0, n, tt.payload)
			st := settle(t, p, s).Up
			if got := tt.reason(st.Dropped); got < tt.atLeast {
				t.Errorf("got %d drops for this reason, want >= %d", got, tt.atLeast)
			}
			if got, want := st.Dropped.Total(), tt.reason(st.Dropped); got != want {
				t.Errorf("got %d drops in total, want %d (all for this reason)", got, want)
			}
			if got, want := st.PacketsOut+st.Dropped.Total(), uint64(n); got != want {
				t.Errorf("got delivered+dropped %d, want %d", got, want)
			}
		})
	}
}

func TestProxyIdleSessionsExpire(t *testing.T) {
	s := startSink(t, false)
	link, err := NewLink(Impairment{}, Impairment{})
	if err != nil {
		t.Fatalf("NewLink: %v", err)
	}
	timers := proxyTimers{idleTimeout: 100 * time.Millisecond, sweepEvery: 10 * time.Millisecond}
	p, err := newUDPProxy(context.Background(), "127.0.0.1:0", s.addr(), link, timers)
	if err != nil {
		t.Fatalf("newUDPProxy: %v", err)
	}
	defer p.Close()
	c := dial(t, p)

	send(t, c, p, 0, 1, testPayload)
	if got := p.sessionCount(); got != 1 {
		t.Fatalf("got %d sessions after the first packet, want 1", got)
	}
	waitFor(t, settleTimeout, "the idle session to expire", func() bool { return p.sessionCount() == 0 })
	send(t, c, p, 1, 1, testPayload)
	settle(t, p, s)
	if got := s.count(); got != 2 {
		t.Errorf("got %d delivered across the expiry, want 2", got)
	}
}

func TestProxyClosesWithContext(t *testing.T) {
	tests := []struct {
		name         string
		cancelBefore bool
	}{
		{"proxy closes when its context ends", false},
		{"proxy started with an ended context closes at once", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startSink(t, false)
			link, _ := NewLink(Impairment{}, Impairment{})
			ctx, cancel := context.WithCancel(context.Background())
			if tt.cancelBefore {
				cancel()
			}
			p, err := NewUDPProxy(ctx, "127.0.0.1:0", s.addr(), link)
			if err != nil {
				t.Fatalf("NewUDPProxy: %v", err)
			}
			cancel()
			waitFor(t, settleTimeout, "the proxy to close", func() bool { return p.Rebind() != nil })
			if err := p.Close(); err != nil {
				t.Errorf("got Close() = %v after the context ended, want nil", err)
			}
		})
	}
}

func TestProxySurvivesRebindAndCloseUnderTraffic(t *testing.T) {
	const (
		n       = 400
		rebinds = 10
	)
	s := startSink(t, true)
	delayed := Impairment{Delay: 2 * time.Millisecond, Jitter: time.Millisecond}
	p, _ := newTestProxy(t, s, delayed, delayed)
	c := dial(t, p)

	done := make(chan struct{})
	go func() {
		defer close(done)
		for range rebinds {
			if err := p.Rebind(); err != nil {
				t.Errorf("Rebind: %v", err)
				return
			}
		}
	}()
	send(t, c, p, 0, n, testPayload)
	<-done
	st := settle(t, p, s)
	if got := st.Up.PacketsOut + st.Up.SendErrors; got != n {
		t.Errorf("got %d delivered or refused, want %d", got, n)
	}
	// Close with echoes possibly still in flight: nothing may leak or race.
	send(t, c, p, n, sendWindow, testPayload)
	if err := p.Close(); err != nil {
		t.Errorf("got Close() = %v, want nil", err)
	}
}

func BenchmarkUDPProxyClean(b *testing.B) {
	const (
		size = 1200
		// window bounds datagrams in flight so the loopback never overflows.
		window = 64
		// stall is how long the sender waits for progress before counting the
		// missing datagrams as lost by the kernel.
		stall = 100 * time.Millisecond
	)
	var received atomic.Int64
	sinkConn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	tuneBuffers(sinkConn)
	defer sinkConn.Close()
	go func() {
		buf := make([]byte, maxDatagramSize)
		for {
			if _, err := sinkConn.Read(buf); err != nil {
				return
			}
			received.Add(1)
		}
	}()
	link, _ := NewLink(Impairment{}, Impairment{})
	p, err := NewUDPProxy(context.Background(), "127.0.0.1:0", sinkConn.LocalAddr().String(), link)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	c, err := net.DialUDP("udp", nil, p.Addr().(*net.UDPAddr))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	msg := make([]byte, size)

	b.SetBytes(size)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	lost := int64(0)
	for i := range b.N {
		for int64(i)-received.Load()-lost >= window {
			waitStart := time.Now()
			before := received.Load()
			for received.Load() == before && time.Since(waitStart) < stall {
				time.Sleep(10 * time.Microsecond)
			}
			if received.Load() == before {
				lost = int64(i) - received.Load()
			}
		}
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
	}
	deadline := time.Now().Add(settleTimeout)
	for received.Load()+lost < int64(b.N) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Microsecond)
	}
	elapsed := time.Since(start)
	b.ReportMetric(float64(received.Load())/elapsed.Seconds(), "pkts/s")
	b.ReportMetric(float64(int64(b.N)-received.Load())/float64(b.N), "lost/op")
}

func TestProxyStrandDropsOldMappingsAndPassesNewOnes(t *testing.T) {
	s := startSink(t, true)
	p, _ := newTestProxy(t, s, Impairment{}, Impairment{})
	old := dial(t, p)
	echoes := func(c *net.UDPConn, seq uint64) bool {
		t.Helper()
		if _, err := c.Write(datagram(seq, testPayload)); err != nil {
			t.Fatalf("write: %v", err)
		}
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		buf := make([]byte, testPayload)
		_, err := c.Read(buf)
		return err == nil && binary.BigEndian.Uint64(buf) == seq
	}
	if !echoes(old, 0) {
		t.Fatal("no echo before Strand")
	}
	p.Strand()
	for seq := uint64(1); seq <= 3; seq++ {
		if echoes(old, seq) {
			t.Fatalf("ping %d from the stranded client echoed, want it dropped", seq)
		}
	}
	fresh := dial(t, p)
	waitFor(t, settleTimeout, "an echo for a client new after Strand", func() bool { return echoes(fresh, 10) })
	if got := p.Stats().Up.Dropped.Blackout; got < 3 {
		t.Errorf("got %d blackout drops, want ≥ 3 (the stranded client's pings)", got)
	}
}
