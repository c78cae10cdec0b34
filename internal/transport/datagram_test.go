package transport

import (
	"context"
	"testing"
	"time"

	"github.com/umbranet/umbra/third_party/quic-go"
)

// datagramPair is a connection pair over loopback with the LAN profile; the server's
// side is returned too, and neither reads datagrams unless the test does.
func datagramPair(t *testing.T, ctx context.Context) (client, server *quic.Conn) {
	t.Helper()
	serverTLS, clientTLS := testTLS(t)
	ln, err := quic.ListenAddr("127.0.0.1:0", serverTLS, LAN.QUIC())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted := make(chan *quic.Conn, 1)
	go func() {
		c, err := ln.Accept(ctx)
		if err == nil {
			accepted <- c
		}
	}()
	client, err = quic.DialAddr(ctx, ln.Addr().String(), clientTLS, LAN.QUIC())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.CloseWithError(0, "") })
	select {
	case server = <-accepted:
	case <-ctx.Done():
		t.Fatal("no connection accepted")
	}
	return client, server
}

// TestDatagramsOnePerPacket: small datagrams queued back to back leave one a packet
// (umbra-datagrams.patch), so a lost packet loses one datagram and FEC across a flow's
// datagrams sees independent losses. Upstream packs as many as fit.
func TestDatagramsOnePerPacket(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client, _ := datagramPair(t, ctx)
	const n = 200
	before := client.ConnectionStats().PacketsSent
	msg := make([]byte, 32)
	for range n {
		if err := client.SendDatagram(msg); err != nil {
			t.Fatal(err)
		}
	}
	// Until the last of them has left (the queue drains at the pacer's rate).
	var sent uint64
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if sent = client.ConnectionStats().PacketsSent - before; sent >= n {
			break
		}
	}
	if sent < n {
		t.Errorf("%d datagrams of 32 bytes left in %d packets, want one a packet (>= %d)", n, sent, n)
	}
}

// TestDatagramsDroppedCounted: datagrams that arrive while quic-go's receive queue is
// full are dropped, and counted (umbra-datagrams.patch), not lost silently.
func TestDatagramsDroppedCounted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client, server := datagramPair(t, ctx)
	const n = 400 // more than the receive queue holds (128); the server reads none
	msg := make([]byte, 32)
	for range n {
		if err := client.SendDatagram(msg); err != nil {
			t.Fatal(err)
		}
	}
	// Loopback may lose a few itself (a full socket buffer), which nobody counts: the
	// test asks that much of the overflow be counted, and no datagram be both counted
	// and delivered.
	var got quic.DatagramDrops
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if got = server.DatagramsDropped(); got.Receiving >= n/4 {
			break
		}
	}
	if got.Receiving < n/4 {
		t.Errorf("server counted %d datagrams dropped of %d sent to an unread queue of 128, want >= %d", got.Receiving, n, n/4)
	}
	received := 0
	for {
		rctx, rcancel := context.WithTimeout(ctx, 100*time.Millisecond)
		_, err := server.ReceiveDatagram(rctx)
		rcancel()
		if err != nil {
			break
		}
		received++
	}
	if received+int(got.Receiving) > n {
		t.Errorf("server received %d and counted %d dropped of %d sent, want no datagram both", received, got.Receiving, n)
	}
}
