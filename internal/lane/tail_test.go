package lane

import (
	"context"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"umbra/internal/linksim"
)

// lossyRelay relays UDP between one client and target, dropping every other packet the
// client sends whose size is in [lo, hi): a radio that loses the first copy of each
// interactive packet, and nothing else.
type lossyRelay struct {
	front, back *net.UDPConn
	client      atomic.Pointer[net.UDPAddr]
	seen        atomic.Uint64
	lo, hi      int
}

func newLossyRelay(t *testing.T, target net.Addr, lo, hi int) *lossyRelay {
	t.Helper()
	front, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	back, err := net.DialUDP("udp", nil, target.(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	r := &lossyRelay{front: front, back: back, lo: lo, hi: hi}
	t.Cleanup(func() { front.Close(); back.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := front.ReadFromUDP(buf)
			if err != nil {
				return
			}
			r.client.Store(from)
			if n >= r.lo && n < r.hi && r.seen.Add(1)%2 == 1 {
				continue
			}
			back.Write(buf[:n])
		}
	}()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, err := back.Read(buf)
			if err != nil {
				return
			}
			if to := r.client.Load(); to != nil {
				front.WriteToUDP(buf[:n], to)
			}
		}
	}()
	return r
}

// TestInteractiveLossCostsNoTimeout: on a 200 ms radio that loses every other packet of
// a keystroke's size, each small write still comes back in about one round trip. KCP
// learns of a lost packet from the acknowledgements of later ones, and a keystroke has
// none after it: without the copy the stream sends of small data packets, every other
// write would wait out a retransmission timeout on top.
func TestInteractiveLossCostsNoTimeout(t *testing.T) {
	const (
		rtt     = 200 * time.Millisecond
		writes  = 10
		size    = 200
		allowed = rtt + rtt/2 // a timeout costs at least a round trip more
	)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	radio, err := linksim.NewLink(linksim.Impairment{}, linksim.Impairment{})
	if err != nil {
		t.Fatal(err)
	}
	p := newQUICPair(t, func(server net.Addr) net.Addr {
		// Lane packets of a 200-byte write are about 300 bytes; pings, pongs and
		// acknowledgements are under 150 and pass.
		relay := newLossyRelay(t, server, 150, 500)
		proxy, err := linksim.NewUDPProxy(ctx, "127.0.0.1:0", relay.front.LocalAddr().String(), radio)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { proxy.Close() })
		return proxy.Addr()
	})
	cl, sl := p.lanes(t, Config{})
	go readLane(ctx, p.serverTr, sl, func([]byte) {})
	go readLane(ctx, p.clientTr, cl, func([]byte) {})
	go cl.Run(ctx)
	client, err := cl.OpenStream(1)
	if err != nil {
		t.Fatal(err)
	}
	server, err := sl.OpenStream(1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Fail(ErrStreamClosed); server.Fail(ErrStreamClosed) })
	radio.SetBoth(linksim.Impairment{Delay: rtt / 2})
	go io.Copy(server, server)

	buf := make([]byte, size)
	client.SetDeadline(time.Now().Add(time.Minute))
	// The first echoes teach KCP the round trip; they are not counted.
	for i := range 3 + writes {
		start := time.Now()
		if _, err := client.Write(buf); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(client, buf); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); i >= 3 && took > allowed {
			t.Errorf("write %d came back in %v, want within %v (one round trip of %v and change)", i-3, took.Round(time.Millisecond), allowed, rtt)
		}
	}
}
