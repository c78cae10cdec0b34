package linksim

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// Test budgets.
const (
	// pollInterval is how often waitFor looks at its condition.
	pollInterval = time.Millisecond
	// settleTimeout bounds every wait for packets to arrive or drain.
	settleTimeout = 3 * time.Second
	// sendWindow is how many datagrams a test sends before waiting for the proxy to
	// have read them, so bursts never overflow a loopback socket buffer.
	sendWindow = 16
	// testPayload is the default datagram size: a sequence number and padding.
	testPayload = 64
	// seqBytes is the size of the sequence number at the start of a test datagram.
	seqBytes = 8
)

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(pollInterval)
	}
}

// arrival is one datagram received by a sink.
type arrival struct {
	seq  uint64
	size int
	from netip.AddrPort
	at   time.Time
}

// sink is a UDP server on loopback that records what it receives and, if echo is
// set, sends every datagram back to its source.
type sink struct {
	conn *net.UDPConn
	echo bool
	done chan struct{}

	mu  sync.Mutex
	got []arrival
}

func startSink(t testing.TB, echo bool) *sink {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	return serveSink(t, conn, echo)
}

// serveSink records (and echoes, if echo is set) what conn receives until the test ends.
func serveSink(t testing.TB, conn *net.UDPConn, echo bool) *sink {
	t.Helper()
	tuneBuffers(conn)
	s := &sink{conn: conn, echo: echo, done: make(chan struct{})}
	go s.serve()
	t.Cleanup(func() {
		conn.Close()
		<-s.done
	})
	return s
}

func (s *sink) serve() {
	defer close(s.done)
	buf := make([]byte, maxDatagramSize)
	for {
		n, from, err := s.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		a := arrival{size: n, from: from, at: time.Now()}
		if n >= seqBytes {
			a.seq = binary.BigEndian.Uint64(buf)
		}
		s.mu.Lock()
		s.got = append(s.got, a)
		s.mu.Unlock()
		if s.echo {
			_, _ = s.conn.WriteToUDPAddrPort(buf[:n], from)
		}
	}
}

func (s *sink) addr() string { return s.conn.LocalAddr().String() }

func (s *sink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.got)
}

func (s *sink) arrivals() []arrival {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]arrival(nil), s.got...)
}

func (s *sink) seqs() []uint64 {
	var seqs []uint64
	for _, a := range s.arrivals() {
		seqs = append(seqs, a.seq)
	}
	return seqs
}

// newTestProxy starts a proxy in front of s whose link starts with up and down.
func newTestProxy(t testing.TB, s *sink, up, down Impairment) (*UDPProxy, *Link) {
	t.Helper()
	link, err := NewLink(up, down)
	if err != nil {
		t.Fatalf("NewLink: %v", err)
	}
	p, err := NewUDPProxy(context.Background(), "127.0.0.1:0", s.addr(), link)
	if err != nil {
		t.Fatalf("NewUDPProxy: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p, link
}

// dial returns a client socket connected to the proxy.
func dial(t testing.TB, p *UDPProxy) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp", nil, p.Addr().(*net.UDPAddr))
	if err != nil {
		t.Fatalf("dial proxy: %v", err)
	}
	tuneBuffers(c)
	t.Cleanup(func() { c.Close() })
	return c
}

// datagram returns a test datagram of size bytes carrying seq.
func datagram(seq uint64, size int) []byte {
	b := make([]byte, max(size, seqBytes))
	binary.BigEndian.PutUint64(b, seq)
	return b[:size]
}

// send writes n datagrams numbered from first, waiting after each sendWindow for
// the proxy to have read them.
func send(t testing.TB, c *net.UDPConn, p *UDPProxy, first uint64, n, size int) {
	t.Helper()
	base := p.Stats().Up.PacketsIn
	for i := range n {
		if _, err := c.Write(datagram(first+uint64(i), size)); err != nil {
			t.Fatalf("write: %v", err)
		}
		if sent := i + 1; sent%sendWindow == 0 || sent == n {
			waitFor(t, settleTimeout, "the proxy to read what was sent", func() bool {
				return p.Stats().Up.PacketsIn-base >= uint64(sent)
			})
		}
	}
}

// balanced reports whether every packet offered to a direction has left it.
func balanced(d DirStats) bool {
	return d.PacketsIn+d.Duplicated == d.PacketsOut+d.Dropped.Total()+d.SendErrors
}

// settle waits until nothing is in flight in the proxy and the sink has every
// datagram the Up direction delivered.
func settle(t testing.TB, p *UDPProxy, s *sink) Stats {
	t.Helper()
	var st Stats
	waitFor(t, settleTimeout, "the link to drain", func() bool {
		st = p.Stats()
		return balanced(st.Up) && balanced(st.Down) && uint64(s.count()) == st.Up.PacketsOut
	})
	return st
}

// inversions counts arrivals with a lower sequence number than the one before.
func inversions(seqs []uint64) int {
	n := 0
	for i := 1; i < len(seqs); i++ {
		if seqs[i] < seqs[i-1] {
			n++
		}
	}
	return n
}

// distinct counts the different sequence numbers in seqs.
func distinct(seqs []uint64) int {
	seen := make(map[uint64]bool, len(seqs))
	for _, s := range seqs {
		seen[s] = true
	}
	return len(seen)
}
