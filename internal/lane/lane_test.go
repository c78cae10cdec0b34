package lane

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/umbranet/umbra/internal/linksim"
)

// TestLaneBesideQUIC carries datagrams both ways on a real QUIC connection's sockets,
// beside QUIC, with keys and id both ends derive from its TLS session.
func TestLaneBesideQUIC(t *testing.T) {
	p := newQUICPair(t, nil)
	client, server := p.lanes(t, Config{PingEvery: 20 * time.Millisecond})
	if client.ID() != server.ID() {
		t.Fatalf("ids differ: %x, %x", client.ID(), server.ID())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	atServer := make(chan []byte, 16)
	atClient := make(chan []byte, 16)
	go readLane(ctx, p.serverTr, server, func(d []byte) { atServer <- d })
	go readLane(ctx, p.clientTr, client, func(d []byte) { atClient <- d })
	go client.Run(ctx)

	for i := range 200 {
		up := fmt.Appendf(nil, "telemetry %d", i)
		if err := client.Send(up); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-atServer:
			if !bytes.Equal(got, up) {
				t.Fatalf("server got %q, want %q", got, up)
			}
		case <-ctx.Done():
			t.Fatalf("datagram %d never reached the server", i)
		}
		down := fmt.Appendf(nil, "command %d", i)
		if err := server.Send(down); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-atClient:
			if !bytes.Equal(got, down) {
				t.Fatalf("client got %q, want %q", got, down)
			}
		case <-ctx.Done():
			t.Fatalf("datagram %d never reached the client", i)
		}
	}
	// The client measures the round trip over the lane with its pings.
	for client.Stats().RTT == 0 {
		if ctx.Err() != nil {
			t.Fatal("no round trip measured")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The QUIC connection is untouched by its lane.
	if p.client.Context().Err() != nil || p.server.Context().Err() != nil {
		t.Fatal("QUIC connection closed")
	}
}

// wirePair is two lanes joined by functions: what one writes, the test holds.
func wirePair(t *testing.T) (client, server *Lane, toServer, toClient *[][]byte) {
	t.Helper()
	key := func(b byte) []byte { return bytes.Repeat([]byte{b}, chacha20poly1305.KeySize) }
	a1, _ := chacha20poly1305.New(key(1))
	a2, _ := chacha20poly1305.New(key(2))
	b1, _ := chacha20poly1305.New(key(1))
	b2, _ := chacha20poly1305.New(key(2))
	toServer, toClient = new([][]byte), new([][]byte)
	var mu sync.Mutex
	capture := func(into *[][]byte) WriteFunc {
		return func(b []byte, _ net.Addr) (int, error) {
			mu.Lock()
			*into = append(*into, bytes.Clone(b))
			mu.Unlock()
			return len(b), nil
		}
	}
	id := ID{1, 2, 3, 4, 5, 6, 7, 8}
	serverAddr := &net.UDPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 4000}
	clientAddr := &net.UDPAddr{IP: net.IPv4(10, 0, 0, 2), Port: 5000}
	client = newLane(id, true, a1, a2, capture(toServer), serverAddr, Config{})
	server = newLane(id, false, b2, b1, capture(toClient), clientAddr, Config{})
	t.Cleanup(func() {
		client.Close()
		server.Close()
	})
	return client, server, toServer, toClient
}

// TestRefusals: tampered, replayed, foreign and oversized packets are refused with an
// error, and none of them changes what the lane accepts next or where it sends.
func TestRefusals(t *testing.T) {
	client, server, toServer, _ := wirePair(t)
	from := &net.UDPAddr{IP: net.IPv4(10, 0, 0, 2), Port: 5000}
	elsewhere := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 66), Port: 666}
	client.Send([]byte("one"))
	client.Send([]byte("two"))
	one, two := (*toServer)[0], (*toServer)[1]

	tampered := bytes.Clone(two)
	tampered[len(tampered)-3] ^= 0x40
	if _, err := server.Receive(nil, tampered, elsewhere); err == nil {
		t.Fatal("tampered packet accepted")
	}
	foreign := bytes.Clone(two)
	foreign[1] ^= 1
	if _, err := server.Receive(nil, foreign, elsewhere); !errors.Is(err, ErrNotLane) {
		t.Fatalf("foreign id: err = %v", err)
	}
	if _, err := server.Receive(nil, append(bytes.Clone(two), make([]byte, MaxPacket)...), elsewhere); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized: err = %v", err)
	}
	if _, err := server.Receive(nil, []byte{Marker}, elsewhere); !errors.Is(err, ErrNotLane) {
		t.Fatalf("truncated: err = %v", err)
	}
	if got := server.peer.Load(); got.String() != from.String() {
		t.Fatalf("refused packets moved the server's peer to %v", got)
	}
	if d, err := server.Receive(nil, two, from); err != nil || string(d) != "two" {
		t.Fatalf("two after refusals: %q, %v", d, err)
	}
	if d, err := server.Receive(nil, one, from); err != nil || string(d) != "one" {
		t.Fatalf("one, late: %q, %v", d, err)
	}
	if _, err := server.Receive(nil, two, elsewhere); err == nil {
		t.Fatal("replay accepted")
	}
	if got := server.peer.Load(); got.String() != from.String() {
		t.Fatalf("a replay moved the server's peer to %v", got)
	}
	if s := server.Stats(); s.Rejected != 2 || s.Received != 2 {
		t.Fatalf("stats = %+v, want 2 rejected (tampered, replay) and 2 received", s)
	}
}

// TestServerFollowsRoamingClient: when the client's newest packet comes from a new
// address (LTE to Wi-Fi), the server sends there; a late older packet from the old
// address does not move it back.
func TestServerFollowsRoamingClient(t *testing.T) {
	client, server, toServer, toClient := wirePair(t)
	old := &net.UDPAddr{IP: net.IPv4(10, 0, 0, 2), Port: 5000}
	roamed := &net.UDPAddr{IP: net.IPv4(172, 16, 0, 9), Port: 6000}
	client.Send([]byte("a"))
	client.Send([]byte("b"))
	if _, err := server.Receive(nil, (*toServer)[1], roamed); err != nil {
		t.Fatal(err)
	}
	if _, err := server.Receive(nil, (*toServer)[0], old); err != nil {
		t.Fatal(err)
	}
	var sentTo net.Addr
	server.write = func(b []byte, addr net.Addr) (int, error) {
		sentTo = addr
		*toClient = append(*toClient, bytes.Clone(b)) // b is the lane's buffer, reused once write returns
		return len(b), nil
	}
	server.Send([]byte("reply"))
	if sentTo.String() != roamed.String() {
		t.Fatalf("server sent to %v, want %v", sentTo, roamed)
	}
	if d, err := client.Receive(nil, (*toClient)[0], sentTo); err != nil || string(d) != "reply" {
		t.Fatalf("client got %q, %v", d, err)
	}
}

// TestLossIsNotCongestion sends a 20 KB/s telemetry flow over the lane through an
// emulated radio losing 30 % of packets each way with an 800 ms round trip: it goes out
// at its full rate, nothing throttled, and what the radio lets through arrives.
func TestLossIsNotCongestion(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for several seconds")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	radio, err := linksim.NewLink(linksim.Impairment{}, linksim.Impairment{})
	if err != nil {
		t.Fatal(err)
	}
	var proxy *linksim.UDPProxy
	p := newQUICPair(t, func(server net.Addr) net.Addr {
		proxy, err = linksim.NewUDPProxy(ctx, "127.0.0.1:0", server.String(), radio)
		if err != nil {
			t.Fatal(err)
		}
		return proxy.Addr()
	})
	defer proxy.Close()
	client, server := p.lanes(t, Config{})
	radioLeg := linksim.Impairment{Loss: 0.3, Delay: 400 * time.Millisecond, Jitter: 20 * time.Millisecond}
	if err := radio.SetBoth(radioLeg); err != nil {
		t.Fatal(err)
	}
	var got atomic.Int64
	go readLane(ctx, p.serverTr, server, func([]byte) { got.Add(1) })
	go readLane(ctx, p.clientTr, client, func([]byte) {})
	go client.Run(ctx)

	const (
		perSecond = 200
		size      = 100 // 200 × 100 B = 20 KB/s
		seconds   = 6
	)
	tick := time.NewTicker(time.Second / perSecond)
	defer tick.Stop()
	payload := make([]byte, size)
	sent := 0
	for sent < perSecond*seconds {
		<-tick.C
		if err := client.Send(payload); err != nil {
			t.Fatalf("datagram %d: %v", sent, err)
		}
		sent++
	}
	// Wait out the radio's delay for the last ones: until nothing more arrives for well
	// over the one-way delay.
	deadline := time.Now().Add(10 * time.Second)
	for last, quiet := got.Load(), time.Now(); time.Since(quiet) < 1500*time.Millisecond && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		if n := got.Load(); n != last {
			last, quiet = n, time.Now()
		}
	}
	share := float64(got.Load()) / float64(sent)
	t.Logf("sent %d, delivered %d (%.1f %%) through 30 %% loss; client RTT %v", sent, got.Load(), 100*share, client.Stats().RTT)
	if share < 0.62 || share > 0.78 {
		t.Fatalf("delivered %.1f %% of the flow through a radio losing 30 %%; want about 70 %%", 100*share)
	}
	if th := client.Stats().Throttled; th != 0 {
		t.Fatalf("breaker throttled %d datagrams of a flow that caused no congestion", th)
	}
}
