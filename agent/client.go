package agent

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
)

// Dial opens a TCP circuit to service, on whichever identity the controller picks
// among those hosting it. It waits for a router link if none is up yet. A service that
// does not exist and one this identity may not dial fail alike. The circuit outlives
// ctx, which bounds only its setup (30 seconds when ctx has no deadline); it resumes on
// a new path when its path breaks, and ends with Close (or the agent's).
func (a *Agent) Dial(ctx context.Context, service string) (*Conn, error) {
	return a.dial(ctx, DialSpec{Service: service, Proto: ProtoTCP})
}

// DialHost is Dial to the service as hosted by the identity named host, for a service
// that several devices host.
func (a *Agent) DialHost(ctx context.Context, service, host string) (*Conn, error) {
	return a.dial(ctx, DialSpec{Service: service, Host: host, Proto: ProtoTCP})
}

// dial opens the TCP circuit of spec.
func (a *Agent) dial(ctx context.Context, spec DialSpec) (*Conn, error) {
	tc, _, err := a.setUpDial(ctx, spec)
	if err != nil {
		return nil, err
	}
	return newConn(tc, spec.Service, a.id.Name, nil), nil
}

// setUpDial sets up the circuit of spec for Dial and DialPacket, within
// dialSetupTimeout unless ctx has a deadline of its own.
func (a *Agent) setUpDial(ctx context.Context, spec DialSpec) (*tls.Conn, uint64, error) {
	if a.runCtx.Err() != nil {
		return nil, 0, errAgentClosed
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, dialSetupTimeout)
		defer cancel()
	}
	tc, cid, err := a.openRetrying(ctx, spec)
	if err != nil {
		// The error names no service: an unauthorized dial and a dial of a service that
		// does not exist must read the same.
		return nil, 0, fmt.Errorf("agent: %w", err)
	}
	return tc, cid, nil
}

// Dialer dials services by name for libraries that take a dial function: its
// DialContext fits net/http's Transport.DialContext, so an http.Client reaches a dark
// HTTP service at http://SERVICE/ (the URL's host is the service's name, its port is
// ignored).
type Dialer struct {
	// Agent is the agent that dials.
	Agent *Agent
	// Host, when set, picks the hosting identity of that name, as DialHost does.
	Host string
}

// Dialer returns a Dialer on a for any hosting identity.
func (a *Agent) Dialer() *Dialer { return &Dialer{Agent: a} }

// DialContext opens a circuit to the service named by address's host (SERVICE or
// SERVICE:PORT, the port ignored): a TCP one (a *Conn) for network "tcp", "tcp4" or
// "tcp6", a UDP one (a *PacketConn) for "udp", "udp4" or "udp6".
func (d *Dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	service := address
	if h, _, err := net.SplitHostPort(address); err == nil {
		service = h
	}
	switch network {
	case "tcp", "tcp4", "tcp6":
		c, err := d.Agent.dial(ctx, DialSpec{Service: service, Host: d.Host, Proto: ProtoTCP})
		if err != nil {
			return nil, err
		}
		return c, nil
	case "udp", "udp4", "udp6":
		c, err := d.Agent.dialPacket(ctx, DialSpec{Service: service, Host: d.Host, Proto: ProtoUDP}, nil)
		if err != nil {
			return nil, err
		}
		return c, nil
	}
	return nil, fmt.Errorf("agent: dial %s: network %q: want tcp or udp", address, network)
}
