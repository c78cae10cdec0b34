package agent

import (
	"net"

	"github.com/umbranet/umbra/third_party/quic-go"
)

// streamConn presents a QUIC stream as a net.Conn, so that the circuit's end-to-end TLS
// runs over it.
type streamConn struct {
	*quic.Stream
	conn *quic.Conn
}

func (s streamConn) LocalAddr() net.Addr  { return s.conn.LocalAddr() }
func (s streamConn) RemoteAddr() net.Addr { return s.conn.RemoteAddr() }
