package agent

import (
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/umbranet/umbra/internal/fec"
	"github.com/umbranet/umbra/internal/identity"
	"github.com/umbranet/umbra/internal/transport"
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
	// arrives, with or without it. Zero K, the default: AutoFEC while the router link's
	// heartbeats show loss (the same verdict as TCPCarrier's auto, lossy.go), none while
	// the link is clean, so a flow over a lossy radio arrives better than over the bare
	// radio, and a clean link pays nothing.
	UDPFEC fec.Config
	// UDPFECOff sends UDP circuits' datagrams without forward error correction whatever
	// the link's loss (`--udp-fec off`).
	UDPFECOff bool
	// UDPOverQUIC carries UDP circuits' datagrams in QUIC DATAGRAM frames, under QUIC's
	// congestion control, and opens no datagram lane. False, the default: they ride the
	// link's lane beside QUIC (internal/lane), which random loss does not throttle, on
	// every link, clean or not. At 15 % loss each way QUIC's congestion control let some
	// 7 % of a 200 datagram/s echo through where the link delivers 72 %; on loopback the
	// lane echoes a 64-byte datagram sooner (p50 about 0.3 ms against 0.4–0.7) at half
	// the peak rate (7–8 thousand a second against 14–17, far above a telemetry flow).
	// For comparison and for routers without lanes.
	UDPOverQUIC bool
	// TCPCarrier picks what carries the bytes of TCP circuits on the agent's hop to its
	// router. CarrierAuto, the zero value: QUIC streams while the link's heartbeats come
	// back, and the lane's streams for new circuits once they show loss (lossy.go), since
	// random loss throttles QUIC's NewReno to a fraction of the link while on loopback
	// the lane's streams move a seventh of what QUIC's do. CarrierLane and CarrierQUIC
	// fix the choice. The lane needs UDPOverQUIC off: with it on, auto means QUIC and
	// CarrierLane is refused.
	TCPCarrier Carrier
	// Logger receives the agent's logs; nil discards them.
	Logger *slog.Logger
}

// Carrier is what carries a kind of circuit on the agent's hop to its router.
type Carrier string

// Carriers of Config.TCPCarrier.
const (
	// CarrierAuto lets the agent choose by the link's loss.
	CarrierAuto Carrier = ""
	// CarrierLane is the link's datagram lane (internal/lane).
	CarrierLane Carrier = "lane"
	// CarrierQUIC is the link's QUIC connection.
	CarrierQUIC Carrier = "quic"
)

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
