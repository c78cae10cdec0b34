package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/umbranet/umbra/internal/fec"
	"github.com/umbranet/umbra/internal/transport"
)

// Config is what an agent needs to run. Every field but Identity may be left zero, which
// means what `umbra-agent run` does without the matching flag; the command only fills
// this struct from its flags.
type Config struct {
	// Identity is the enrolled identity the agent runs as (Enroll or LoadIdentity).
	// Required. When it has a file (Identity.Path), renewed certificates are written
	// there; otherwise renewals are kept in memory.
	Identity *Identity
	// Routers pins the edge routers to use, HOST:PORT each; empty asks the controller for
	// the routers this identity's edge-router policies allow.
	Routers []string
	// Dials are local listeners that reach services (SERVICE[@IDENTITY]=PROTO:ADDR on
	// loopback, see ParseDialSpec), beside every dialable service's intercept address.
	// A program that dials in process (Dial, DialPacket, Dialer) needs none.
	Dials []DialSpec
	// Hosts overrides, per service name, where this agent delivers a hosted service
	// (PROTO:ADDR); by default it is the service's own host address.
	Hosts map[string]string
	// NoAutoServices, when set, makes the agent host only the services the program
	// serves through Listen or ListenPacket and open no intercept listener, whatever the
	// services' host and intercept addresses say. False, the default, is umbra-agent's
	// behaviour: every service this identity may bind that has a host address is
	// delivered there, and every dialable service's intercept address is listened on.
	// Listen takes a service over from its host address either way.
	NoAutoServices bool
	// StatusSocket is the unix socket `umbra-agent status` reads; empty, the default,
	// opens none (the command passes DefaultStatusSocket: one program per device may own
	// that path, and an embedding program has Status).
	StatusSocket string
	// Metrics is a loopback HOST:PORT on which the agent serves its metrics at /metrics
	// in the Prometheus text format, for a node exporter on the device; empty serves
	// none (`umbra-agent metrics` reads them over the status socket all the same).
	Metrics string
	// LinkProfile is the QUIC profile of the router links: ProfileLAN (also ""), or
	// ProfileRadio for a slow lossy radio. Both carry TCP circuits on QUIC streams and
	// UDP circuits in QUIC DATAGRAM frames under umbra's congestion controller, which
	// random loss does not slow down: a lossy link needs no profile to work.
	LinkProfile LinkProfile
	// UDPFEC, when its K is set, adds forward error correction to the datagrams this
	// agent sends on UDP circuits: M parity packets per K. The far end decodes whatever
	// arrives, with or without it. Zero K, the default: forward error correction while
	// the router link's heartbeats show loss (16:4 in blocks of up to 30 ms, loss.go),
	// none while the link is clean, so a flow over a lossy radio arrives better than
	// over the bare radio, and a clean link pays nothing. VideoFEC is a preset for video.
	UDPFEC FEC
	// UDPFECOff sends UDP circuits' datagrams without forward error correction whatever
	// the link's loss (`--udp-fec off`).
	UDPFECOff bool
	// Logger receives the agent's logs; nil discards them.
	Logger *slog.Logger
}

// LinkProfile names a QUIC profile for the agent's router links.
type LinkProfile string

// Link profiles of Config.LinkProfile.
const (
	// ProfileLAN is for wired or loopback paths: prompt failure detection, large
	// windows. The zero LinkProfile means it too.
	ProfileLAN LinkProfile = "lan"
	// ProfileRadio is for a drone's radio: long handshakes and idle timeouts that ride
	// through blackouts, small packets, frequent keepalives, windows for a slow link.
	ProfileRadio LinkProfile = "radio"
)

// FEC is the forward error correction of UDP circuits' datagrams: a block of K datagrams
// gets M parity packets, and the far end rebuilds any K of the K+M. In Config, the zero
// value means the default (FEC while the link is lossy).
type FEC struct {
	// K is the datagrams per block, 0 for no FEC; K+M is at most 64 (internal/fec).
	K int
	// M is the parity packets per block; 0 means 2.
	M int
	// Flush is how long a block waits for its K datagrams before its parity goes out
	// with fewer; zero means DefaultFECFlush.
	Flush time.Duration
	// IdleFlush, when set, also closes a block once no datagram has come for this long
	// (a video frame's burst has ended), so its parity follows the frame; it must be
	// under Flush.
	IdleFlush time.Duration
	// Proportional makes a block closed short send parity in proportion to the
	// datagrams it holds (at least min(M, 2)) instead of all M.
	Proportional bool
}

// VideoFEC is forward error correction for video (`--udp-fec video`): a block holds one
// frame's packets, up to 16, which an encoder sends back to back; its parity follows 3
// ms after the frame's last packet (the idle flush), 30 ms after its first at the
// latest, so a lost packet is rebuilt within a frame's time. Full blocks add 8 parity
// packets, short ones in proportion (a frame of 5 packets, 3): about 50 % more packets
// whatever the frames' sizes, and at 10 % random loss over 99 % of the packets arrive.
// The receiving agent delivers in order what follows a lost packet once it sees FEC,
// since an RTP decoder without a jitter buffer drops a packet older than one it has seen.
var VideoFEC = FEC{K: 16, M: 8, Flush: 30 * time.Millisecond, IdleFlush: 3 * time.Millisecond, Proportional: true}

// config is the internal form of f, its defaults filled in.
func (f FEC) config() fec.Config {
	c := fec.Config{K: f.K, M: f.M, FlushDelay: f.Flush, IdleFlush: f.IdleFlush, Proportional: f.Proportional}
	if c.FlushDelay <= 0 {
		c.FlushDelay = DefaultFECFlush
	}
	return c
}

// Check reports whether f is a code the agent can send: K and M within bounds.
func (f FEC) Check() error {
	if f.K == 0 {
		return nil // no FEC
	}
	_, err := fec.NewEncoder(f.config())
	return err
}

// settings is what New derives from a Config: the internal forms of its public fields.
type settings struct {
	profile transport.Profile
	fec     fec.Config
}

// resolve checks cfg, fills its defaults in and derives its internal settings.
func (cfg *Config) resolve() (settings, error) {
	var st settings
	if cfg.Identity == nil || cfg.Identity.file == nil {
		return st, errors.New("agent: no identity")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	switch cfg.LinkProfile {
	case "", ProfileLAN:
		cfg.LinkProfile, st.profile = ProfileLAN, transport.LAN
	case ProfileRadio:
		st.profile = transport.Radio
	default:
		return st, fmt.Errorf("agent: link profile %q: want %q or %q", cfg.LinkProfile, ProfileLAN, ProfileRadio)
	}
	if cfg.UDPFEC.K > 0 {
		if err := cfg.UDPFEC.Check(); err != nil {
			return st, fmt.Errorf("agent: udp fec %d:%d: %w", cfg.UDPFEC.K, cfg.UDPFEC.M, err)
		}
		st.fec = cfg.UDPFEC.config()
	}
	for _, d := range cfg.Dials {
		if d.Proto != ProtoTCP && d.Proto != ProtoUDP {
			return st, fmt.Errorf("agent: dial %s: want protocol tcp or udp", d)
		}
		if err := checkLoopback(d.Listen); err != nil {
			return st, fmt.Errorf("agent: dial %s: %w", d, err)
		}
	}
	return st, nil
}

// Protocols a service speaks.
const (
	ProtoTCP = "tcp"
	ProtoUDP = "udp"
)

// DialSpec is one local listener that reaches a service: SERVICE[@IDENTITY]=PROTO:ADDR.
type DialSpec struct {
	// Service is the name of the service to reach.
	Service string
	// Host picks one hosting identity among several; empty means any authorized host.
	Host string
	// Proto is ProtoTCP or ProtoUDP.
	Proto string
	// Listen is the loopback HOST:PORT to listen on.
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
