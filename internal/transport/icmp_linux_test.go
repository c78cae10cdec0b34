package transport

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestUnreachableNamesThePortNobodyListensOn sends from a watched socket to a loopback
// port whose socket just closed: the host answers port unreachable, Unreachable names
// that address, and the socket still sends and receives.
func TestUnreachableNamesThePortNobodyListensOn(t *testing.T) {
	uc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	c, err := WatchUnreachable(uc)
	if err != nil {
		t.Fatal(err)
	}
	gone, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	dead := gone.LocalAddr().(*net.UDPAddr)
	gone.Close()
	alive, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer alive.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	found := make(chan netip.AddrPort, 16)
	go c.Unreachable(ctx, 10*time.Millisecond, func(ap netip.AddrPort) { found <- ap })
	if _, err := c.WriteTo([]byte("anyone?"), dead); err != nil {
		t.Fatalf("first send: %v", err)
	}
	select {
	case ap := <-found:
		if ap != dead.AddrPort() {
			t.Errorf("got unreachable %v, want %v", ap, dead.AddrPort())
		}
	case <-ctx.Done():
		t.Fatal("no port unreachable reported within 10 s")
	}
	// The error the kernel also keeps for the socket does not fail the next send.
	if _, err := c.WriteTo([]byte("again"), dead); err != nil {
		t.Errorf("second send to the dead port: %v, want it sent", err)
	}
	if _, err := c.WriteTo([]byte("hello"), alive.LocalAddr()); err != nil {
		t.Errorf("send to a live port: %v", err)
	}
	alive.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 16)
	if n, _, err := alive.ReadFrom(buf); err != nil || string(buf[:n]) != "hello" {
		t.Errorf("the live port read %q, %v; want \"hello\"", buf[:n], err)
	}
}
