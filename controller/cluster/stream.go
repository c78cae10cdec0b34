package cluster

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/umbranet/umbra/internal/transport"
)

// errLayerClosed is what Accept returns once the layer is closed.
var errLayerClosed = errors.New("cluster: raft stream layer closed")

// acceptBacklog bounds the Raft connections handed over but not yet accepted.
const acceptBacklog = 16

// StreamLayer is Raft's transport over the controller's TCP port: the controller's
// listener completes each TLS handshake and hands connections that chose
// transport.ALPNRaft to Handoff; Dial opens such a connection to another member with
// this member's controller certificate.
type StreamLayer struct {
	addr   advertised
	client *tls.Config
	conns  chan net.Conn

	once   sync.Once
	closed chan struct{}
}

// advertised is the address other members reach this one at.
type advertised string

func (a advertised) Network() string { return "tcp" }
func (a advertised) String() string  { return string(a) }

// newStreamLayer returns a layer that advertises addr and dials with client (which
// must carry this member's certificate and the cluster's roots).
func newStreamLayer(addr string, client *tls.Config) *StreamLayer {
	c := client.Clone()
	c.NextProtos = []string{transport.ALPNRaft}
	return &StreamLayer{addr: advertised(addr), client: c, conns: make(chan net.Conn, acceptBacklog), closed: make(chan struct{})}
}

// Handoff gives the layer an accepted connection whose handshake chose
// transport.ALPNRaft and whose peer the caller has checked. A closed or full layer
// closes it.
func (l *StreamLayer) Handoff(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.closed:
		c.Close()
	default:
		c.Close()
	}
}

// Accept returns the next Raft connection.
func (l *StreamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, errLayerClosed
	}
}

// Close stops Accept; the controller's listener stays open.
func (l *StreamLayer) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

// Addr is the advertised address.
func (l *StreamLayer) Addr() net.Addr { return l.addr }

// Dial opens a Raft connection to the member at address, verifying that its
// certificate is a controller's from this cluster.
func (l *StreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	host, _, err := net.SplitHostPort(string(address))
	if err != nil {
		return nil, fmt.Errorf("cluster: dial %s: %w", address, err)
	}
	conf := l.client.Clone()
	conf.ServerName = host
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: conf}
	c, err := d.Dial("tcp", string(address))
	if err != nil {
		return nil, fmt.Errorf("cluster: dial %s: %w", address, err)
	}
	tc := c.(*tls.Conn)
	if tc.ConnectionState().NegotiatedProtocol != transport.ALPNRaft {
		tc.Close()
		return nil, fmt.Errorf("cluster: %s does not speak %s", address, transport.ALPNRaft)
	}
	if err := CheckController(tc.ConnectionState().PeerCertificates); err != nil {
		tc.Close()
		return nil, fmt.Errorf("cluster: %s: %w", address, err)
	}
	return tc, nil
}
