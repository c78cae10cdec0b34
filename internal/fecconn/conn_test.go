package fecconn

import (
	"context"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/umbranet/umbra/internal/linksim"
)

// pair is two Conns, a's packets to b crossing an emulated link.
type pair struct {
	a, b   *Conn
	toB    net.Addr // b, as a sends to it: the proxy
	toA    net.Addr
	bGot   atomic.Int64
	bSeen  []atomic.Bool
	stopRx chan struct{}
}

// newPair starts b reading (recording which numbered packets arrive) and answering a
// with a short QUIC-like packet every 5 ms, as acknowledgements would.
func newPair(t *testing.T, ctx context.Context, up, down linksim.Impairment, n int) *pair {
	t.Helper()
	bpc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bpc.(*net.UDPConn).SetReadBuffer(8 << 20)
	link, err := linksim.NewLink(up, down)
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := linksim.NewUDPProxy(ctx, "127.0.0.1:0", bpc.LocalAddr().String(), link)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	apc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &pair{a: New(apc, Config{}), b: New(bpc, Config{}), toB: proxy.Addr(), bSeen: make([]atomic.Bool, n)}
	t.Cleanup(func() { p.a.Close(); p.b.Close() })
	var from atomic.Pointer[net.Addr]
	go func() {
		buf := make([]byte, 2048)
		for {
			m, addr, err := p.b.ReadFrom(buf)
			if err != nil {
				return
			}
			from.Store(&addr)
			if m >= 5 && buf[0] == 0x41 {
				if i := int(binary.BigEndian.Uint32(buf[1:])); i < n && !p.bSeen[i].Swap(true) {
					p.bGot.Add(1)
				}
			}
		}
	}()
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := p.a.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	go func() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				if addr := from.Load(); addr != nil {
					p.b.WriteTo([]byte{0x42, 0, 0, 0, 0}, *addr)
				}
			}
		}
	}()
	return p
}

// send writes n numbered packets of size bytes from a, one every gap.
func (p *pair) send(t *testing.T, n, size int, gap time.Duration) {
	t.Helper()
	pkt := make([]byte, size)
	pkt[0] = 0x41
	next := time.Now()
	for i := range n {
		binary.BigEndian.PutUint32(pkt[1:], uint32(i))
		if _, err := p.a.WriteTo(pkt, p.toB); err != nil {
			t.Fatal(err)
		}
		next = next.Add(gap)
		time.Sleep(time.Until(next))
	}
}

// TestRebuildsLostPackets sends 8,000 packets across a link losing 10 % each way: the
// receiver rebuilds the lost ones from parity, and all but a few arrive.
func TestRebuildsLostPackets(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	lossy := linksim.Impairment{Loss: 0.10, Delay: 20 * time.Millisecond}
	const n = 8000
	p := newPair(t, ctx, lossy, lossy, n)
	p.send(t, n, 1200, 250*time.Microsecond)
	deadline := time.Now().Add(10 * time.Second)
	for p.bGot.Load() < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	a, b := p.a.Stats(), p.b.Stats()
	t.Logf("got %d of %d; a %+v b %+v", p.bGot.Load(), n, a, b)
	// Packets sent before a heard b's prefix went plain and are lost at 10 %; the rest
	// went in blocks, and a block that loses more than its parity can rebuild is rare.
	if a.Protected < n*9/10 {
		t.Fatalf("%d of %d packets protected, want nine in ten: a never heard b speak the prefix", a.Protected, n)
	}
	if b.Recovered < a.Protected/20 {
		t.Errorf("b rebuilt %d packets of %d protected at 10 %% loss, want about a tenth", b.Recovered, a.Protected)
	}
	if b.Unrecovered > a.Protected/50 {
		t.Errorf("b lost %d of %d protected packets for good, want under 2 %% (a block lost to a burst of the race detector's pauses costs a few)", b.Unrecovered, a.Protected)
	}
}

// TestPeerWithoutItGetsPlainQUIC sends from a Conn to a bare UDP socket, as to a peer
// whose QUIC stack has no fecconn under it: every packet arrives as it was written,
// beside a hello now and then, which a QUIC stack drops for its cleared fixed bit.
func TestPeerWithoutItGetsPlainQUIC(t *testing.T) {
	bare, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer bare.Close()
	apc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := New(apc, Config{HelloEvery: time.Nanosecond})
	defer a.Close()
	const n = 50
	for i := range n {
		if _, err := a.WriteTo([]byte{0x41, byte(i), 1, 2, 3}, bare.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	bare.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 2048)
	var plain, hellos int
	for plain < n {
		m, _, err := bare.ReadFrom(buf)
		if err != nil {
			t.Fatalf("after %d plain packets and %d hellos: %v", plain, hellos, err)
		}
		switch {
		case m == prefixLen && buf[0] == kindHello:
			hellos++
		case m == 5 && buf[0] == 0x41 && buf[1] == byte(plain):
			plain++
		default:
			t.Fatalf("packet % x: want a plain packet or a hello", buf[:m])
		}
	}
	if hellos == 0 {
		t.Error("no hello: the peer could never learn this end speaks the prefix")
	}
	if st := a.Stats(); st.Protected != 0 || st.Plain != n {
		t.Errorf("stats %+v: want %d plain, none protected", st, n)
	}
}

// TestCodes checks the code chosen for each reported loss: one parity packet in 64 on a
// clean link, more as the loss grows, and 15 at 10 % on a path of 400 ms or more, or
// unknown; a shorter path never takes more parity than a longer one: 13 at 200 ms, 9 at
// 50 ms, whose holes QUIC repairs 75 ms later.
func TestCodes(t *testing.T) {
	c := New(nil, Config{})
	if got := c.codes[0][0]; got != (code{63, 1}) {
		t.Errorf("clean link: code %+v, want {63 1}", got)
	}
	if got := c.codes[0][lossByte(0.10)]; got.m != 15 || got.k+got.m != 64 {
		t.Errorf("10 %% loss: code %+v, want 15 parity in 64", got)
	}
	for step := range c.codes {
		for v := 1; v < len(c.codes[step]); v++ {
			if c.codes[step][v].m < c.codes[step][v-1].m {
				t.Fatalf("step %d, loss %d/256: %d parity, fewer than the %d at %d/256", step, v, c.codes[step][v].m, c.codes[step][v-1].m, v-1)
			}
			if step > 0 && c.codes[step][v].m > c.codes[step-1][v].m {
				t.Fatalf("step %d, loss %d/256: %d parity, more than the longer path's %d", step, v, c.codes[step][v].m, c.codes[step-1][v].m)
			}
		}
	}
	addr := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}
	for _, tc := range []struct {
		rtt  time.Duration
		step int
		m    int // parity in 64 at 10 % loss
	}{{0, 0, 15}, {800 * time.Millisecond, 0, 15}, {400 * time.Millisecond, 0, 15}, {399 * time.Millisecond, 0, 15},
		{200 * time.Millisecond, 1, 13}, {100 * time.Millisecond, 2, -1}, {50 * time.Millisecond, 3, 9}, {time.Millisecond, rttSteps - 1, 9}} {
		c.BaseRTT(addr)(tc.rtt)
		p := c.peerFor(addr, time.Now())
		step := c.rttStep(p)
		if step != tc.step {
			t.Errorf("base RTT %v: step %d, want %d", tc.rtt, step, tc.step)
		}
		if got := c.codes[step][lossByte(0.10)]; tc.m >= 0 && got.m != tc.m {
			t.Errorf("base RTT %v, 10 %% loss: code %+v, want %d parity in 64", tc.rtt, got, tc.m)
		}
	}
}

// TestLossCountSkipsAFullQueue feeds the loss counter 10 % random loss at no queueing
// delay, then a queue's overflow: every other packet dropped while the delay is 200 ms
// over the base. It reports the first and not the second.
func TestLossCountSkipsAFullQueue(t *testing.T) {
	var s seqCounter
	now := time.Now()
	var seq uint16
	var samples []lossSample
	for i := range 5000 {
		now = now.Add(time.Millisecond)
		seq++
		if i%10 == 3 { // one in ten lost, alone
			continue
		}
		if v, ok := s.add(seq, 50, now); ok {
			samples = append(samples, v)
		}
	}
	last := samples[len(samples)-1]
	got := lossOfGaps(float64(last.gaps) / float64(last.numbers))
	if got < 0.08 || got > 0.12 {
		t.Fatalf("random loss of 10 %% counted as %.3f", got)
	}
	queued := 0
	for i := range 5000 {
		now = now.Add(time.Millisecond)
		seq++
		if i%2 == 0 {
			continue // the queue overflows
		}
		if _, ok := s.add(seq, 250, now); ok {
			queued++
		}
	}
	if queued > 0 {
		t.Errorf("%d loss samples taken while the queue overflowed, want none", queued)
	}
}

// TestLossCountFollowsALongerPath sends a peer's packets at 30 % loss over a 50 ms path,
// then clean over a 200 ms one, as a radio that moved: once the controller tells the
// Conn the longer base round trip, the loss it reports falls to a clean link's within
// 1,200 packets. Without that, the longer one-way delay looks like a queue, no packet
// is counted, and the 30 % stays for up to 20 s.
func TestLossCountFollowsALongerPath(t *testing.T) {
	c := New(nil, Config{})
	addr := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}
	p := c.peerFor(addr, time.Now())
	tell := c.BaseRTT(addr)
	now := time.Now()
	var seq uint16
	pkt := make([]byte, prefixLen)
	hear := func(owd time.Duration) {
		now = now.Add(5 * time.Millisecond)
		pkt[0] = kindSmall
		binary.BigEndian.PutUint16(pkt[2:], seq)
		binary.BigEndian.PutUint16(pkt[4:], uint16(now.Add(-owd).UnixMilli()))
		p.heard(pkt, now)
	}
	tell(50 * time.Millisecond)
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		seq++
		if rng.Float64() < 0.3 {
			continue
		}
		hear(25 * time.Millisecond)
	}
	if got := p.seen.Load(); got < lossByte(0.2) {
		t.Fatalf("30 %% loss seen as %d/256", got)
	}
	tell(200 * time.Millisecond)
	for range 1200 { // 6 s of packets, inside delayWindow
		seq++
		hear(100 * time.Millisecond)
	}
	if got := p.seen.Load(); got > lossByte(0.03) {
		t.Errorf("a clean longer path still seen losing %d/256 after 1,200 packets", got)
	}
}

// TestLossCountFollowsATrickle sends a peer's packets at 30 packets a second, an echo's
// and a heartbeat's, at 30 % loss for a minute and then clean: 11 s later (the bench's
// row settle) the loss it reports is a clean link's. Counted in samples of lossWindow
// packets alone, two would have closed, and the next transfer would start with a
// lossy link's parity.
func TestLossCountFollowsATrickle(t *testing.T) {
	c := New(nil, Config{})
	addr := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}
	p := c.peerFor(addr, time.Now())
	now := time.Now()
	var seq uint16
	pkt := make([]byte, prefixLen)
	rng := rand.New(rand.NewPCG(3, 4))
	send := func(d time.Duration, loss float64) {
		for end := now.Add(d); now.Before(end); {
			now = now.Add(time.Second / 30)
			seq++
			if rng.Float64() < loss {
				continue
			}
			pkt[0] = kindSmall
			binary.BigEndian.PutUint16(pkt[2:], seq)
			binary.BigEndian.PutUint16(pkt[4:], uint16(now.Add(-25*time.Millisecond).UnixMilli()))
			p.heard(pkt, now)
		}
	}
	send(time.Minute, 0.3)
	if got := p.seen.Load(); got < lossByte(0.2) {
		t.Fatalf("30 %% loss seen as %d/256", got)
	}
	send(11*time.Second, 0)
	if got := p.seen.Load(); got > lossByte(0.03) {
		t.Errorf("a clean link still seen losing %d/256 after 11 s", got)
	}
}

// TestOverheadOfAnIdleLink checks the overhead a controller reads once a link has gone
// quiet after a lossy transfer: the code's own for the loss now reported, not the
// transfer's doubling, which the next transfer's first round trips would otherwise be
// scaled by.
func TestOverheadOfAnIdleLink(t *testing.T) {
	c := New(nil, Config{})
	addr := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}
	now := time.Now()
	p := c.peerFor(addr, now)
	p.capable.Store(true)
	overhead := c.Overhead(addr)
	p.overhead.Store(math.Float64bits(0.93))
	p.reported.Store(0)
	for _, tc := range []struct {
		after time.Duration
		bytes int
		low   float64
		high  float64
	}{
		{overheadStale / 2, 2000, 0.93, 0.93},   // too soon: the measure stands
		{overheadStale, 2000, 0.015, 0.03},      // a trickle: one parity in 64, headers
		{overheadStale, overheadMinBytes, 0, 1}, // a transfer: measured (below)
	} {
		p.accountedAt, p.quicBytes, p.wireBytes = now, tc.bytes, tc.bytes
		p.account(c, now.Add(tc.after))
		if got := overhead(); got < tc.low || got > tc.high {
			t.Errorf("%d bytes in %v: overhead %.3f, want %.3f to %.3f", tc.bytes, tc.after, got, tc.low, tc.high)
		}
	}
	if got := overhead(); got >= 0.025 {
		t.Errorf("a measured period without overhead left %.3f", got)
	}
	p.reported.Store(lossByte(0.10))
	p.accountedAt = now
	p.account(c, now.Add(overheadStale))
	if got := overhead(); got < 0.25 || got > 0.4 {
		t.Errorf("idle at 10 %% loss: overhead %.3f, want 15 parity in 49 and headers", got)
	}
}
