package transport

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/umbranet/umbra/third_party/quic-go"

	"github.com/umbranet/umbra/internal/linksim"
)

// TestRadioSendsEveryRepairTwice drops every tenth datagram a client sends and counts the
// datagrams that cross twice, byte for byte: the Radio profile sends each repair of lost
// stream data twice (RadioRetransmitCopies), so that a lost repair does not hold the
// stream for another round trip, and copies nothing else; a profile without copies sends
// none twice.
func TestRadioSendsEveryRepairTwice(t *testing.T) {
	paced := linksim.Impairment{RateBitsPerSec: 20_000_000, QueuePackets: 200}
	for _, tc := range []struct {
		name   string
		copies int
	}{{"radio", RadioRetransmitCopies}, {"no copies", 0}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			serverTLS, clientTLS := testTLS(t)
			ln := listenRadio(t, ctx, serverTLS, countStreams)
			// Behind the relay a 20 Mbit/s link paces the connection as a radio would, so
			// that its repairs do not come in loopback-sized bursts.
			_, proxy := linkTo(t, ctx, ln.Addr(), paced, paced)
			relay := newDropRelay(t, proxy.Addr(), 10)
			p := Radio
			p.RetransmitCopies = tc.copies
			conn, err := quic.DialAddr(ctx, relay.addr(), clientTLS, p.QUIC())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.CloseWithError(0, "")
			s, err := conn.OpenStreamSync(ctx)
			if err != nil {
				t.Fatal(err)
			}
			const n = 2 << 20
			if _, err := s.Write(make([]byte, n)); err != nil {
				t.Fatal(err)
			}
			s.Close()
			// The sink answers with one byte once it has read the whole stream.
			if got, err := io.ReadAll(s); err != nil || len(got) != 1 {
				t.Fatalf("the sink answered %d bytes (%v), want 1 after taking the stream's 2 MiB", len(got), err)
			}
			dropped, twice := relay.counts()
			t.Logf("dropped %d datagrams, %d crossed twice", dropped, twice)
			switch {
			case dropped < 50:
				t.Fatalf("the relay dropped only %d datagrams", dropped)
			case tc.copies > 0 && twice < dropped/5:
				// Not every drop leaves a pair to count: a dropped acknowledgement needs no
				// repair, when a copy or the repair it copies is dropped one crosses, and
				// a burst of repairs can outrun the 64 copies that may wait. Two thirds
				// of the drops left a pair on a quiet machine, two fifths with both cores
				// busy; without copies none does.
				t.Errorf("%d datagrams crossed twice after %d drops, want at least a fifth as many", twice, dropped)
			case tc.copies > 0 && twice > 2*dropped:
				// Only repairs are copied: a copy of every packet would cross twice about
				// ten times as often as the relay drops.
				t.Errorf("%d datagrams crossed twice after %d drops: packets that repaired nothing were copied", twice, dropped)
			case tc.copies == 0 && twice != 0:
				t.Errorf("%d datagrams crossed twice without copies", twice)
			}
		})
	}
}

// countStreams reads every stream of every connection ln accepts to its end and answers
// with one byte.
func countStreams(ctx context.Context, ln *quic.Listener) {
	serveStreams(ctx, ln, func(s *quic.Stream) {
		io.Copy(io.Discard, s)
		s.Write([]byte{1})
		s.Close()
	})
}

// dropRelay forwards datagrams between one client and a server, drops every nth the client
// sends, and counts the client's datagrams it forwards more than once.
type dropRelay struct {
	pc     net.PacketConn
	mu     sync.Mutex
	seen   map[string]bool
	sent   int
	drops  int
	repeat int
}

func newDropRelay(t *testing.T, server net.Addr, nth int) *dropRelay {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up, err := net.Dial("udp", server.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close(); up.Close() })
	r := &dropRelay{pc: pc, seen: map[string]bool{}}
	var client net.Addr
	var clientMu sync.Mutex
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			clientMu.Lock()
			client = from
			clientMu.Unlock()
			if r.forward(buf[:n], nth) {
				up.Write(buf[:n])
			}
		}
	}()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, err := up.Read(buf)
			if err != nil {
				return
			}
			clientMu.Lock()
			to := client
			clientMu.Unlock()
			pc.WriteTo(buf[:n], to)
		}
	}()
	return r
}

// forward counts one datagram from the client and says whether it crosses.
func (r *dropRelay) forward(pkt []byte, nth int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sent++
	if r.sent%nth == 0 {
		r.drops++
		return false
	}
	if r.seen[string(pkt)] {
		r.repeat++
	}
	r.seen[string(pkt)] = true
	return true
}

func (r *dropRelay) addr() string { return r.pc.LocalAddr().String() }

func (r *dropRelay) counts() (dropped, twice int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.drops, r.repeat
}
