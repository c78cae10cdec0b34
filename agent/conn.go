package agent

import (
	"crypto/tls"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/umbranet/umbra/internal/pki"
)

// Network is what Addr.Network returns: the name of umbra's overlay.
const Network = "umbra"

// Addr is one end of a circuit: a service and the identity at that end.
type Addr struct {
	// Service is the circuit's service.
	Service string
	// Identity is the name of the identity at this end: the host of a dialed circuit's
	// remote end, the dialer of an accepted one's.
	Identity string
	// Circuit tells apart several UDP circuits of one identity to one service (the
	// addresses ListenPacket's ReadFrom returns); 0 for TCP circuits.
	Circuit uint64
}

// Network returns "umbra".
func (a *Addr) Network() string { return Network }

// String is SERVICE@IDENTITY, as `umbra-agent run --dial` writes a service on one host,
// with #CIRCUIT after it for a UDP circuit.
func (a *Addr) String() string {
	s := a.Service + "@" + a.Identity
	if a.Circuit != 0 {
		s += "#" + strconv.FormatUint(a.Circuit, 10)
	}
	return s
}

// Conn is one TCP circuit: a byte stream to the agent at its other end, encrypted end to
// end with both identities' certificates and resumed on a new path when the one it ran
// on breaks. Dial returns one; a Listener's Accept yields them.
type Conn struct {
	tc            *tls.Conn
	local, remote Addr
	once          sync.Once
	onClose       func()
}

// newConn wraps a circuit's end-to-end TLS session; onClose (may be nil) runs once
// when it is closed.
func newConn(tc *tls.Conn, service, self string, onClose func()) *Conn {
	return &Conn{tc: tc, local: Addr{Service: service, Identity: self}, remote: Addr{Service: service, Identity: peerName(tc)}, onClose: onClose}
}

// peerName is the identity name in the verified certificate of tc's peer.
func peerName(tc *tls.Conn) string {
	cs := tc.ConnectionState()
	if len(cs.PeerCertificates) == 0 {
		return ""
	}
	subj, err := pki.SubjectOf(cs.PeerCertificates[0])
	if err != nil {
		return ""
	}
	return subj.Name
}

// Identity is the name of the identity at the circuit's other end: the dialer of an
// accepted circuit, the host of a dialed one. The end-to-end handshake proved it.
func (c *Conn) Identity() string { return c.remote.Identity }

// Service is the circuit's service.
func (c *Conn) Service() string { return c.remote.Service }

// Read reads bytes the other end sent.
func (c *Conn) Read(p []byte) (int, error) { return c.tc.Read(p) }

// Write sends p to the other end.
func (c *Conn) Write(p []byte) (int, error) { return c.tc.Write(p) }

// CloseWrite ends the sending direction: the other end reads EOF, and may still answer.
func (c *Conn) CloseWrite() error { return c.tc.CloseWrite() }

// Close ends the circuit.
func (c *Conn) Close() error {
	err := c.tc.Close()
	c.once.Do(func() {
		if c.onClose != nil {
			c.onClose()
		}
	})
	return err
}

// LocalAddr is this end: the service and this agent's identity.
func (c *Conn) LocalAddr() net.Addr { return &c.local }

// RemoteAddr is the other end: the service and the identity there.
func (c *Conn) RemoteAddr() net.Addr { return &c.remote }

// SetDeadline sets the read and write deadlines, as net.Conn does.
func (c *Conn) SetDeadline(t time.Time) error { return c.tc.SetDeadline(t) }

// SetReadDeadline sets the read deadline, as net.Conn does.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.tc.SetReadDeadline(t) }

// SetWriteDeadline sets the write deadline, as net.Conn does.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.tc.SetWriteDeadline(t) }
