package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"

	"github.com/umbranet/umbra/third_party/quic-go"
)

// DialConnected opens a QUIC connection to addr from a UDP socket connected to that one
// peer. A connected socket is not listening: the kernel takes datagrams only from the
// router, and nothing on the network can reach the device through it. This is how an
// agent stays dark while it dials out. The socket and its transport close when the
// connection ends. The profile sets the connection and, with FEC, the socket's wrapper.
func DialConnected(ctx context.Context, addr string, tlsConf *tls.Config, p Profile) (*quic.Conn, error) {
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("transport: %w", err)
	}
	uc, err := net.DialUDP("udp", nil, raddr)
	if err != nil {
		return nil, fmt.Errorf("transport: %w", err)
	}
	sock, conf := p.Socket(connectedUDP{uc})
	tr := &quic.Transport{Conn: sock}
	conn, err := tr.Dial(ctx, raddr, tlsConf, conf)
	if err != nil {
		tr.Close()
		uc.Close()
		return nil, err
	}
	go func() {
		<-conn.Context().Done()
		tr.Close()
		uc.Close()
	}()
	return conn, nil
}

// connectedUDP lets quic-go use a connected UDP socket: writes drop the destination
// (the kernel refuses one on a connected socket), everything else, batch reads and
// segmentation offload included, is the socket's own.
type connectedUDP struct{ *net.UDPConn }

func (c connectedUDP) WriteTo(b []byte, _ net.Addr) (int, error) { return c.UDPConn.Write(b) }

func (c connectedUDP) WriteMsgUDP(b, oob []byte, _ *net.UDPAddr) (int, int, error) {
	return c.UDPConn.WriteMsgUDP(b, oob, nil)
}

// HeardNothing reports whether err is a dial, or a connection, that heard nothing back in
// time (a handshake or idle timeout, or the dial's deadline): the peer is out of reach,
// not refusing. A dial that timed out was paced by its own retransmissions, so the next
// needs no backoff.
func HeardNothing(err error) bool {
	var idle *quic.IdleTimeoutError
	var hs *quic.HandshakeTimeoutError
	return errors.As(err, &idle) || errors.As(err, &hs) || errors.Is(err, context.DeadlineExceeded)
}
