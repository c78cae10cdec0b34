package lane

import (
	"net"
	"testing"
)

// FuzzReceive feeds a server lane arbitrary packets: none may panic, be taken as data,
// or move where the server sends.
func FuzzReceive(f *testing.F) {
	f.Add([]byte{Marker, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Add([]byte{Marker})
	f.Add([]byte{0x40, 0, 0})
	f.Fuzz(func(t *testing.T, pkt []byte) {
		_, server, _, _ := wirePair(&testing.T{})
		before := server.peer.Load().String()
		d, err := server.Receive(nil, pkt, &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1})
		if err == nil && d != nil {
			t.Fatalf("forged packet delivered %q", d)
		}
		if server.peer.Load().String() != before {
			t.Fatal("forged packet moved the server's peer")
		}
	})
}
