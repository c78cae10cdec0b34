package agent

import (
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"umbra/internal/fec"
	"umbra/internal/identity"
	"umbra/internal/transport"
)

// Config is what an agent needs to run. cmd/umbra-agent fills it from flags.
type Config struct {
	// Identity is the enrolled identity file.
	Identity *identity.File
	// IdentityPath is where Identity lives; renewed certificates are written there.
	// Empty keeps renewals in memory.
	IdentityPath string
	// Routers pins the edge routers to use, HOST:PORT each; empty asks the controller for
	// the routers this identity's edge-router policies allow.
	Routers []string
	// Dials are local listeners for services, beside every dialable service's intercept.
	Dials []DialSpec
	// Hosts overrides, per service name, where this agent delivers a hosted service
	// (PROTO:ADDR); by default it is the service's own host address.
	Hosts map[string]string
	// StatusSocket is the unix socket `umbra-agent status` reads; empty disables it.
	StatusSocket string
	// Metrics is a loopback HOST:PORT on which the agent serves its metrics at /metrics
	// in the Prometheus text format, for a node exporter on the device; empty serves
	// none (`umbra-agent metrics` reads them over the status socket all the same).
	Metrics string
	// Profile is the QUIC profile of router links; zero means transport.LAN.
	Profile transport.Profile
	// UDPFEC, when its K is set, adds forward error correction to the datagrams this
	// agent sends on UDP circuits: M parity packets per K. The far end decodes whatever
	// arrives, with or without it.
	UDPFEC fec.Config
	// UDPOverQUIC carries UDP circuits' datagrams in QUIC DATAGRAM frames, under QUIC's
	// congestion control, instead of on the datagram lane beside QUIC (internal/lane),
	// which random loss does not throttle. For comparison and for routers without lanes.
	UDPOverQUIC bool
	// TCPOnLane carries the bytes of TCP circuits on streams of the datagram lane (KCP
	// with a delay-based window, internal/lane) instead of QUIC streams, on the agent's
	// hop to its router: on a radio, random loss throttles QUIC's NewReno to a fraction
	// of the link. Needs the lane, so not with UDPOverQUIC.
	TCPOnLane bool
	// Logger receives the agent's logs; nil discards them.
	Logger *slog.Logger
}

// Protocols a service speaks.
const (
	ProtoTCP = "tcp"
	ProtoUDP = "udp"
)

// DialSpec is one local listener that reaches a service: SERVICE[@IDENTITY]=PROTO:ADDR.
type DialSpec struct {
	Service string
	// Host picks one hosting identity among several; empty means any authorized host.
	Host   string
	Proto  string
	Listen string
}

// String formats the spec as it is written on the command line.
func (d DialSpec) String() string {
	svc := d.Service
	if d.Host != "" {
		svc += "@" + d.Host
	}
	return svc + "=" + d.Proto + ":" + d.Listen
}

// ParseDialSpec reads SERVICE[@IDENTITY]=PROTO:LISTEN_ADDR. The listen address must be
// on loopback: the agent opens no port to the network.
func ParseDialSpec(s string) (DialSpec, error) {
	var d DialSpec
	lhs, rhs, ok := strings.Cut(s, "=")
	if !ok || lhs == "" {
		return d, fmt.Errorf("dial %q: want SERVICE[@IDENTITY]=PROTO:ADDR", s)
	}
	d.Service, d.Host, _ = strings.Cut(lhs, "@")
	proto, addr, err := splitAddress(rhs)
	if err != nil {
		return d, fmt.Errorf("dial %q: %w", s, err)
	}
	d.Proto, d.Listen = proto, addr
	if err := checkLoopback(addr); err != nil {
		return d, fmt.Errorf("dial %q: %w", s, err)
	}
	return d, nil
}

// splitAddress reads PROTO:HOST:PORT with PROTO tcp or udp.
func splitAddress(s string) (proto, addr string, err error) {
	proto, addr, ok := strings.Cut(s, ":")
	if !ok || (proto != ProtoTCP && proto != ProtoUDP) {
		return "", "", fmt.Errorf("%q: want tcp:HOST:PORT or udp:HOST:PORT", s)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return "", "", fmt.Errorf("%q: %v", s, err)
	}
	return proto, addr, nil
}

// checkLoopback refuses listen addresses off loopback.
func checkLoopback(addr string) error {
	host, _, _ := net.SplitHostPort(addr)
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("listen address %q is not on loopback: the agent opens no port to the network", addr)
	}
	return nil
}

// ParseHostOverride reads SERVICE=PROTO:ADDR.
func ParseHostOverride(s string) (service, address string, err error) {
	service, address, ok := strings.Cut(s, "=")
	if !ok || service == "" {
		return "", "", fmt.Errorf("host %q: want SERVICE=PROTO:ADDR", s)
	}
	if _, _, err := splitAddress(address); err != nil {
		return "", "", fmt.Errorf("host %q: %w", s, err)
	}
	return service, address, nil
}

// DefaultFECFlush is how long a UDP circuit's FEC block waits for its K datagrams before
// its parity goes out with fewer. Datagrams leave at once whatever it is (the code is
// systematic), so it delays only the ones parity recovers; long enough that a telemetry
// flow of a few hundred datagrams a second fills its blocks, and pays M/K, not more.
const DefaultFECFlush = 250 * time.Millisecond
