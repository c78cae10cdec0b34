package linksim

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// Netns test budgets.
const (
	// tcpTransfer is how much each TCP test sends through the link and back.
	tcpTransfer = 1 << 20
	// rttSlack allows for scheduling on a loaded two-core machine under -race.
	rttSlack = 250 * time.Millisecond
	// blackoutProbe is how long a ping during a blackout waits for the reply that must not come.
	blackoutProbe = 300 * time.Millisecond
)

// requireNetns skips the test unless this process can build a NetnsLink.
func requireNetns(t testing.TB) {
	t.Helper()
	if err := CheckNetns(); err != nil {
		t.Skipf("skipping the network-namespace test: %v", err)
	}
}

// newTestNetnsLink builds a NetnsLink with fresh namespaces whose link starts with up
// and down; it is torn down when the test ends, whatever happened.
func newTestNetnsLink(t testing.TB, cfg NetnsConfig, up, down Impairment) (*NetnsLink, *Link) {
	t.Helper()
	requireNetns(t)
	link, err := NewLink(up, down)
	if err != nil {
		t.Fatalf("NewLink: %v", err)
	}
	l, err := NewNetnsLink(context.Background(), cfg, link)
	if err != nil {
		t.Fatalf("NewNetnsLink: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return l, link
}

// nsSink is a sink on side B that knows how many packets Up had delivered before it.
type nsSink struct {
	*sink
	// outBase is Stats().Up.PacketsOut when the sink started.
	outBase uint64
}

// netnsSink starts a UDP sink on side B's address.
func netnsSink(t testing.TB, l *NetnsLink, echo bool) *nsSink {
	t.Helper()
	c, err := l.ListenPacket(SideB, "udp", netip.AddrPortFrom(l.Addr(SideB), 0).String())
	if err != nil {
		t.Fatalf("listen on side b: %v", err)
	}
	// A packet counts as out once the pump's write to the TUN returns, which can be after
	// the answer to it came back (a ping's reply), so the base waits for the counters to
	// balance: taken early, it missed the ping and the sink seemed a packet short.
	var st Stats
	waitFor(t, settleTimeout, "the link to settle before the sink starts", func() bool {
		st = l.Stats()
		return balanced(st.Up) && balanced(st.Down)
	})
	return &nsSink{sink: serveSink(t, c.(*net.UDPConn), echo), outBase: st.Up.PacketsOut}
}

// netnsDial returns a UDP socket on side A connected to s.
func netnsDial(t testing.TB, l *NetnsLink, s *nsSink) *net.UDPConn {
	t.Helper()
	c, err := l.DialContext(context.Background(), SideA, "udp", s.addr())
	if err != nil {
		t.Fatalf("dial from side a: %v", err)
	}
	uc := c.(*net.UDPConn)
	tuneBuffers(uc)
	t.Cleanup(func() { uc.Close() })
	return uc
}

// netnsSend writes n datagrams numbered from first from side A, waiting after each
// sendWindow for the link to have read them, so no kernel queue overflows.
func netnsSend(t testing.TB, c *net.UDPConn, l *NetnsLink, first uint64, n, size int) {
	t.Helper()
	base := l.Stats().Up.PacketsIn
	for i := range n {
		if _, err := c.Write(datagram(first+uint64(i), size)); err != nil {
			t.Fatalf("write: %v", err)
		}
		if sent := i + 1; sent%sendWindow == 0 || sent == n {
			waitFor(t, settleTimeout, "the link to read what was sent", func() bool {
				return l.Stats().Up.PacketsIn-base >= uint64(sent)
			})
		}
	}
}

// netnsSettle waits until nothing is in flight and s has every packet Up delivered
// since it started.
func netnsSettle(t testing.TB, l *NetnsLink, s *nsSink) Stats {
	t.Helper()
	var st Stats
	waitFor(t, settleTimeout, "the link to drain", func() bool {
		st = l.Stats()
		return balanced(st.Up) && balanced(st.Down) && uint64(s.count()) == st.Up.PacketsOut-s.outBase
	})
	return st
}

func TestNetnsLinkCarriesTraffic(t *testing.T) {
	tests := []struct {
		name string
		cfg  NetnsConfig
		ping bool
	}{
		{name: "ipv4 link on one subnet", cfg: NetnsConfig{}, ping: true},
		{
			name: "ipv4 peers on different subnets get a host route",
			cfg:  NetnsConfig{AddrA: netip.MustParsePrefix("10.78.0.1/32"), AddrB: netip.MustParsePrefix("192.168.78.1/32")},
			ping: true,
		},
		{
			name: "ipv6 link",
			cfg:  NetnsConfig{AddrA: netip.MustParsePrefix("fd77::1/64"), AddrB: netip.MustParsePrefix("fd77::2/64")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, _ := newTestNetnsLink(t, tt.cfg, Impairment{}, Impairment{})
			if tt.ping {
				t.Run("ping from a is answered by b", func(t *testing.T) {
					if _, err := ping(l, SideA, l.Addr(SideB), 1, settleTimeout); err != nil {
						t.Errorf("got %v, want an echo reply", err)
					}
				})
			}
			t.Run("udp datagrams arrive once each, in order", func(t *testing.T) {
				const n = 200
				s := netnsSink(t, l, false)
				before := l.Stats().Up.PacketsIn
				netnsSend(t, netnsDial(t, l, s), l, 0, n, testPayload)
				st := netnsSettle(t, l, s)
				want := make([]uint64, n)
				for i := range want {
					want[i] = uint64(i)
				}
				if got := s.seqs(); !slices.Equal(got, want) {
					t.Errorf("got %d datagrams with %d out of order, want %d in order", len(got), inversions(got), n)
				}
				if tt.cfg.AddrA.Addr().Is4() || !tt.cfg.AddrA.IsValid() {
					// IPv4 links carry nothing but what the test sent: no IPv6 chatter.
					if got := st.Up.PacketsIn - before; got != n {
						t.Errorf("got %d packets into the link, want %d", got, n)
					}
				}
			})
			// TCP goes last: its closing ACKs may still sit in the TUN queue when it
			// returns, and would count as strays in the datagram test's totals.
			t.Run("tcp carries 1 MiB there and back", func(t *testing.T) {
				tcpRoundTrip(t, l)
			})
		})
	}
}

// tcpRoundTrip sends tcpTransfer bytes from side A to an echo server on side B and
// checks every byte comes back.
func tcpRoundTrip(t *testing.T, l *NetnsLink) {
	t.Helper()
	tcpRoundTripN(t, l, tcpTransfer)
}

// tcpRoundTripN is tcpRoundTrip with n bytes.
func tcpRoundTripN(t *testing.T, l *NetnsLink, n int) {
	t.Helper()
	ln, err := l.Listen(SideB, "tcp", netip.AddrPortFrom(l.Addr(SideB), 0).String())
	if err != nil {
		t.Fatalf("listen on side b: %v", err)
	}
	defer ln.Close()
	served := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		defer c.Close()
		_, err = io.Copy(c, c)
		served <- err
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := l.DialContext(ctx, SideA, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("dial from side a: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	want := make([]byte, n)
	for i := range want {
		want[i] = byte(i * 7)
	}
	wrote := make(chan error, 1)
	go func() {
		_, err := c.Write(want)
		c.(*net.TCPConn).CloseWrite()
		wrote <- err
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read the echo: %v", err)
	}
	if err := <-wrote; err != nil {
		t.Fatalf("write: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("got %d bytes back, want the %d sent", len(got), len(want))
	}
	if err := <-served; err != nil {
		t.Errorf("echo server: %v", err)
	}
}

// ping sends one ICMP echo request from side from to addr (IPv4) and returns the
// round-trip time of its reply, or an error if none comes within timeout.
func ping(l *NetnsLink, from Side, to netip.Addr, seq uint16, timeout time.Duration) (time.Duration, error) {
	const id = 0x756d // "um"
	c, err := l.ListenPacket(from, "ip4:icmp", l.Addr(from).String())
	if err != nil {
		return 0, err
	}
	defer c.Close()
	msg := make([]byte, 8+testPayload)
	msg[0] = 8 // echo request
	binary.BigEndian.PutUint16(msg[4:], id)
	binary.BigEndian.PutUint16(msg[6:], seq)
	binary.BigEndian.PutUint16(msg[2:], icmpChecksum(msg))
	start := time.Now()
	if _, err := c.WriteTo(msg, &net.IPAddr{IP: to.AsSlice()}); err != nil {
		return 0, err
	}
	_ = c.SetReadDeadline(start.Add(timeout))
	buf := make([]byte, 1500)
	for {
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			return 0, err
		}
		// The kernel hands raw ICMPv4 sockets every ICMP message: keep our reply.
		if n >= 8 && buf[0] == 0 && binary.BigEndian.Uint16(buf[4:]) == id && binary.BigEndian.Uint16(buf[6:]) == seq {
			return time.Since(start), nil
		}
	}
}

// icmpChecksum is the Internet checksum (RFC 1071) of b.
func icmpChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

func TestNetnsLinkLossMatchesSetting(t *testing.T) {
	const (
		n    = 2000
		loss = 0.2
	)
	l, _ := newTestNetnsLink(t, NetnsConfig{}, Impairment{Loss: loss}, Impairment{})
	s := netnsSink(t, l, false)
	netnsSend(t, netnsDial(t, l, s), l, 0, n, testPayload)
	st := netnsSettle(t, l, s)

	// Six standard deviations of the binomial either side of n·(1−loss).
	mean, sd := (1-loss)*n, math.Sqrt(n*loss*(1-loss))
	lo, hi := int(mean-6*sd), int(mean+6*sd)
	got := distinct(s.seqs())
	t.Logf("delivered %d of %d: measured loss %.3f, set %.2f", got, n, 1-float64(got)/n, loss)
	if got < lo || got > hi {
		t.Errorf("got %d of %d delivered (measured loss %.3f), want %d..%d", got, n, 1-float64(got)/n, lo, hi)
	}
	if want := uint64(n - got); st.Up.Dropped.Loss != want {
		t.Errorf("got %d loss drops counted, want %d (what did not arrive)", st.Up.Dropped.Loss, want)
	}
}

func TestNetnsLinkTCPSurvivesLossAndReordering(t *testing.T) {
	const n = 256 << 10
	imp := Impairment{Loss: 0.05, Delay: 5 * time.Millisecond, Jitter: 2 * time.Millisecond, Reorder: 0.02, Duplicate: 0.01}
	l, _ := newTestNetnsLink(t, NetnsConfig{}, imp, imp)
	start := time.Now()
	tcpRoundTripN(t, l, n)
	st := l.Stats()
	t.Logf("%d KiB there and back in %v; up: %v", n>>10, time.Since(start).Round(time.Millisecond), st.Up)
	if st.Up.Dropped.Loss == 0 || st.Down.Dropped.Loss == 0 {
		t.Errorf("got loss drops up %d, down %d, want TCP to have met loss both ways", st.Up.Dropped.Loss, st.Down.Dropped.Loss)
	}
}

func TestNetnsLinkBlackoutDropsThenRecovers(t *testing.T) {
	const n = 50
	l, link := newTestNetnsLink(t, NetnsConfig{}, Impairment{}, Impairment{})
	s := netnsSink(t, l, false)
	c := netnsDial(t, l, s)

	link.SetBlackout(true)
	netnsSend(t, c, l, 0, n, testPayload)
	st := netnsSettle(t, l, s)
	if got := s.count(); got != 0 {
		t.Errorf("during blackout: got %d delivered, want 0", got)
	}
	if got := st.Up.Dropped.Blackout; got != n {
		t.Errorf("during blackout: got %d blackout drops, want %d", got, n)
	}
	if _, err := ping(l, SideA, l.Addr(SideB), 1, blackoutProbe); err == nil {
		t.Errorf("during blackout: got a ping reply, want none")
	}

	link.SetBlackout(false)
	netnsSend(t, c, l, n, n, testPayload)
	netnsSettle(t, l, s)
	if got := s.count(); got != n {
		t.Errorf("after blackout: got %d delivered, want %d", got, n)
	}
	if _, err := ping(l, SideA, l.Addr(SideB), 2, settleTimeout); err != nil {
		t.Errorf("after blackout: got %v, want a ping reply", err)
	}
	t.Run("tcp works again", func(t *testing.T) { tcpRoundTrip(t, l) })
}

func TestNetnsLinkDelayShowsInRTT(t *testing.T) {
	const (
		pings = 5
		delay = 40 * time.Millisecond
	)
	imp := Impairment{Delay: delay}
	l, _ := newTestNetnsLink(t, NetnsConfig{}, imp, imp)
	minRTT, maxRTT := 2*delay, 2*delay+rttSlack

	t.Run("icmp echo", func(t *testing.T) {
		for i := range pings {
			rtt, err := ping(l, SideA, l.Addr(SideB), uint16(i), settleTimeout)
			if err != nil {
				t.Fatalf("ping %d: got %v, want a reply", i, err)
			}
			t.Logf("ping %d: RTT %v", i, rtt)
			if rtt < minRTT || rtt > maxRTT {
				t.Errorf("ping %d: got RTT %v, want %v..%v", i, rtt, minRTT, maxRTT)
			}
		}
	})
	t.Run("udp echo", func(t *testing.T) {
		s := netnsSink(t, l, true)
		c := netnsDial(t, l, s)
		buf := make([]byte, maxDatagramSize)
		for i := range pings {
			start := time.Now()
			if _, err := c.Write(datagram(uint64(i), testPayload)); err != nil {
				t.Fatalf("write: %v", err)
			}
			_ = c.SetReadDeadline(start.Add(settleTimeout))
			if _, err := c.Read(buf); err != nil {
				t.Fatalf("echo %d: got %v, want a reply", i, err)
			}
			if rtt := time.Since(start); rtt < minRTT || rtt > maxRTT {
				t.Errorf("echo %d: got RTT %v, want %v..%v", i, rtt, minRTT, maxRTT)
			}
		}
	})
}

func TestNetnsLinkCountsWholeIPPackets(t *testing.T) {
	const (
		mtu = 500
		// ipUDP is what an IPv4 UDP datagram adds to its payload on the wire.
		ipUDP = 20 + 8
	)
	t.Run("mtu", func(t *testing.T) {
		tests := []struct {
			name      string
			payload   int
			delivered bool
		}{
			{name: "datagram whose ip packet exactly fits the mtu is delivered", payload: mtu - ipUDP, delivered: true},
			{name: "datagram whose ip packet is one byte over is dropped", payload: mtu - ipUDP + 1, delivered: false},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				l, _ := newTestNetnsLink(t, NetnsConfig{}, Impairment{MTU: mtu}, Impairment{})
				s := netnsSink(t, l, false)
				netnsSend(t, netnsDial(t, l, s), l, 0, 1, tt.payload)
				st := netnsSettle(t, l, s).Up
				if got := s.count() == 1; got != tt.delivered {
					t.Errorf("got delivered %v, want %v", got, tt.delivered)
				}
				if got, want := st.BytesIn, uint64(tt.payload+ipUDP); got != want {
					t.Errorf("got %d bytes counted in, want %d (the whole IP packet)", got, want)
				}
			})
		}
	})
	t.Run("rate cap of 1 Mbit/s spaces 1000-byte datagrams by their ip size", func(t *testing.T) {
		const (
			n         = 60
			size      = 1000
			rate      = 1_000_000
			tolerance = 0.3
		)
		l, _ := newTestNetnsLink(t, NetnsConfig{}, Impairment{RateBitsPerSec: rate, QueuePackets: n}, Impairment{})
		s := netnsSink(t, l, false)
		netnsSend(t, netnsDial(t, l, s), l, 0, n, size)
		netnsSettle(t, l, s)
		got := s.arrivals()
		if len(got) != n {
			t.Fatalf("got %d datagrams, want %d", len(got), n)
		}
		elapsed := got[len(got)-1].at.Sub(got[0].at)
		want := time.Duration(n-1) * serialization(size+ipUDP, rate)
		lo, hi := time.Duration(float64(want)*(1-tolerance)), time.Duration(float64(want)*(1+tolerance))
		if elapsed < lo || elapsed > hi {
			t.Errorf("got %d datagrams in %v, want %v..%v", n, elapsed, lo, hi)
		}
	})
}

func TestNetnsLinkCommandRunsInNamespace(t *testing.T) {
	l, _ := newTestNetnsLink(t, NetnsConfig{}, Impairment{}, Impairment{})
	for _, side := range []Side{SideA, SideB} {
		t.Run("side "+side.String(), func(t *testing.T) {
			out, err := l.Command(side, "ip", "-o", "addr", "show", "dev", DefaultNetnsDev).CombinedOutput()
			if err != nil {
				t.Fatalf("ip addr show: %v: %s", err, out)
			}
			if want := l.Addr(side).String() + "/"; !strings.Contains(string(out), want) {
				t.Errorf("got %q, want the device to have %s", out, want)
			}
		})
	}
}

func TestNetnsLinkCleansUp(t *testing.T) {
	requireNetns(t)
	exists := func(ns string) bool {
		_, err := os.Stat(filepath.Join(netnsDir, ns))
		return err == nil
	}
	t.Run("namespaces it created are deleted and a given one is kept", func(t *testing.T) {
		// The caller's namespace for side A; side B's is made by the link.
		own := fmt.Sprintf("%sown-%08x", freshNamePrefix, rand.Uint32())
		if err := runIP(context.Background(), nil, "netns", "add", own); err != nil {
			t.Fatalf("make namespace: %v", err)
		}
		t.Cleanup(func() { _ = runIP(context.Background(), nil, "netns", "del", own) })
		link, _ := NewLink(Impairment{}, Impairment{})
		l, err := NewNetnsLink(context.Background(), NetnsConfig{NSA: own}, link)
		if err != nil {
			t.Fatalf("NewNetnsLink: %v", err)
		}
		made := l.Namespace(SideB)
		if !exists(made) {
			t.Fatalf("got no namespace %s while the link is up, want it", made)
		}
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if exists(made) {
			t.Errorf("got namespace %s after Close, want it deleted", made)
		}
		if !exists(own) {
			t.Errorf("got namespace %s deleted by Close, want it kept", own)
		}
		out, err := exec.Command("ip", "-n", own, "-o", "link", "show").CombinedOutput()
		if err != nil {
			t.Fatalf("ip link show: %v: %s", err, out)
		}
		if strings.Contains(string(out), DefaultNetnsDev) {
			t.Errorf("got %q in %s after Close, want the TUN device gone", out, own)
		}
	})
	t.Run("link closes when its context ends", func(t *testing.T) {
		link, _ := NewLink(Impairment{}, Impairment{})
		ctx, cancel := context.WithCancel(context.Background())
		l, err := NewNetnsLink(ctx, NetnsConfig{}, link)
		if err != nil {
			t.Fatalf("NewNetnsLink: %v", err)
		}
		t.Cleanup(func() { l.Close() })
		cancel()
		waitFor(t, 2*ipCommandTimeout, "the namespaces to be deleted", func() bool {
			return !exists(l.Namespace(SideA)) && !exists(l.Namespace(SideB))
		})
	})
	t.Run("failed setup leaves nothing behind", func(t *testing.T) {
		link, _ := NewLink(Impairment{}, Impairment{})
		// The loopback device is no TUN device: the second step fails, after the
		// namespaces have been made.
		fresh := fmt.Sprintf("%sfail-%08x-", freshNamePrefix, rand.Uint32())
		cfg := NetnsConfig{NSA: fresh + "a", NSB: fresh + "b", Dev: "lo"}
		l, err := NewNetnsLink(context.Background(), cfg, link)
		if err == nil {
			l.Close()
			t.Fatalf("got a link with device lo, want an error")
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("got a multi-line error %q, want one line", err)
		}
		for _, ns := range []string{cfg.NSA, cfg.NSB} {
			if exists(ns) {
				t.Errorf("got namespace %s after the failure (%v), want it deleted", ns, err)
				_ = runIP(context.Background(), nil, "netns", "del", ns)
			}
		}
	})
}

func TestNetnsConfigRejectsBadInput(t *testing.T) {
	tests := []struct {
		name string
		cfg  NetnsConfig
	}{
		{"same namespace on both sides", NetnsConfig{NSA: "x", NSB: "x"}},
		{"namespace name with a slash", NetnsConfig{NSA: "../etc"}},
		{"mixed address families", NetnsConfig{AddrA: netip.MustParsePrefix("10.0.0.1/24"), AddrB: netip.MustParsePrefix("fd00::2/64")}},
		{"same address on both sides", NetnsConfig{AddrA: netip.MustParsePrefix("10.0.0.1/24"), AddrB: netip.MustParsePrefix("10.0.0.1/24")}},
		{"mtu below the ipv4 minimum", NetnsConfig{MTU: 60}},
		{"device name too long for the kernel", NetnsConfig{Dev: "a-very-long-device-name"}},
	}
	link, _ := NewLink(Impairment{}, Impairment{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := NewNetnsLink(context.Background(), tt.cfg, link)
			if err == nil {
				l.Close()
				t.Fatalf("got a link, want an error")
			}
			if !strings.HasPrefix(err.Error(), "linksim: ") {
				t.Errorf("got error %q, want it to start with linksim:", err)
			}
		})
	}
	t.Run("nil link", func(t *testing.T) {
		if _, err := NewNetnsLink(context.Background(), NetnsConfig{}, nil); !errors.Is(err, errNilLink) {
			t.Errorf("got %v, want %v", err, errNilLink)
		}
	})
}

// BenchmarkNetnsLinkTCP measures bulk TCP throughput from side A to side B through a
// clean netns link: the ceiling of the emulator itself, before any impairment.
func BenchmarkNetnsLinkTCP(b *testing.B) {
	const chunk = 64 << 10
	l, _ := newTestNetnsLink(b, NetnsConfig{}, Impairment{}, Impairment{})
	ln, err := l.Listen(SideB, "tcp", netip.AddrPortFrom(l.Addr(SideB), 0).String())
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	received := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			received <- 0
			return
		}
		defer c.Close()
		n, _ := io.Copy(io.Discard, c)
		received <- n
	}()
	c, err := l.DialContext(context.Background(), SideA, "tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, chunk)
	b.SetBytes(chunk)
	b.ResetTimer()
	for range b.N {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	c.(*net.TCPConn).CloseWrite()
	if got, want := <-received, int64(b.N)*chunk; got != want {
		b.Fatalf("got %d bytes at side b, want %d", got, want)
	}
	b.StopTimer()
	c.Close()
	st := l.Stats()
	b.ReportMetric(float64(st.Up.PacketsOut)/b.Elapsed().Seconds(), "pkts/s")
}
