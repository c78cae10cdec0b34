package fecconn

import (
	"net"
	"testing"
)

// onePacket is a PacketConn that reads one datagram, then fails.
type onePacket struct {
	net.PacketConn
	pkt  []byte
	read bool
}

func (o *onePacket) ReadFrom(b []byte) (int, net.Addr, error) {
	if o.read {
		return 0, nil, net.ErrClosed
	}
	o.read = true
	return copy(b, o.pkt), &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 4242}, nil
}

// FuzzReadFrom hands a Conn any datagram: it must not panic, must return a packet with
// QUIC's fixed or long-header bit exactly as it came, and never returns anything for a
// datagram shorter than a prefix (an empty one comes back empty).
func FuzzReadFrom(f *testing.F) {
	f.Add([]byte{0x41, 1, 2, 3})
	f.Add([]byte{kindHello, 26, 0, 1, 0, 0})
	f.Add([]byte{kindBlock, 26, 0, 1, 0, 0, 0, 0, 0, 8, 2, 0x41, 9})
	f.Add([]byte{kindSmall, 0, 0, 2, 0, 0, 0, 0, 9, 8, 2, 1, 0x41})
	f.Add([]byte{kindBlock, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, pkt []byte) {
		src := &onePacket{pkt: pkt}
		c := New(src, Config{})
		buf := make([]byte, readBufferLen)
		n, _, err := c.ReadFrom(buf)
		if len(pkt) > 0 && pkt[0]&(quicFixedBit|quicLongBit) != 0 {
			if err != nil || string(buf[:n]) != string(pkt) {
				t.Fatalf("QUIC packet % x came back as % x (%v)", pkt, buf[:n], err)
			}
			return
		}
		if err == nil && n > 0 && len(pkt) < prefixLen {
			t.Fatalf("datagram of %d bytes returned % x", len(pkt), buf[:n])
		}
	})
}
