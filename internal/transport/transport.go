// Package transport is how umbra's programs speak QUIC: the ALPN names that tell an
// agent, a router link and a controller link apart, the QUIC profiles for a LAN and for a
// lossy radio (each with its congestion controller), and the mutual-TLS configurations
// that refuse any peer without a certificate from the controller's CA.
package transport

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/umbranet/umbra/third_party/quic-go"

	"github.com/umbranet/umbra/internal/congestion"
	"github.com/umbranet/umbra/internal/fecconn"
	"github.com/umbranet/umbra/internal/pki"
)

// ALPN names, one per role of a QUIC connection.
const (
	ALPNEdge = "umbra-edge/1" // agent ↔ router
	ALPNLink = "umbra-link/1" // router ↔ router
	ALPNCtrl = "umbra-ctrl/1" // router ↔ controller
	// ALPNRaft names a TLS connection to a controller's TCP port that carries Raft
	// traffic between controllers, beside the management API's HTTPS on that port.
	ALPNRaft = "umbra-raft/1"
)

// Profile is a documented QUIC configuration for one kind of path.
type Profile struct {
	// HandshakeIdleTimeout aborts a handshake that hears nothing for this long; quic-go
	// also caps the whole handshake at twice this.
	HandshakeIdleTimeout time.Duration
	// MaxIdleTimeout closes a connection silent for this long. The lower of the two
	// peers' values is in force.
	MaxIdleTimeout time.Duration
	// KeepAlivePeriod sends a QUIC keep-alive when nothing else was sent for this long;
	// zero sends none. umbra's profiles send none: every umbra connection carries its
	// own heartbeat (the agent's datagrams, internal/heartbeat on router and control
	// links) every quarter second or less, which is each hop's one liveness mechanism
	// (docs/LIVENESS.md); a keep-alive would never fire while it runs.
	KeepAlivePeriod time.Duration
	// InitialPacketSize is the smallest QUIC packet; radio MTUs want it low.
	InitialPacketSize uint16
	// MaxStreamReceiveWindow and MaxConnectionReceiveWindow cap flow-control windows;
	// they should cover the path's bandwidth × delay.
	MaxStreamReceiveWindow     uint64
	MaxConnectionReceiveWindow uint64
	// InitialStreamReceiveWindow and InitialConnectionReceiveWindow are the windows a
	// connection opens with; zero means quic-go's (512 KiB and 768 KiB), which it grows
	// towards the maxima only when the reader keeps up within a few round trips.
	InitialStreamReceiveWindow     uint64
	InitialConnectionReceiveWindow uint64
	// MaxIncomingStreams caps the streams a peer may have open at once; every circuit
	// and every binding holds one.
	MaxIncomingStreams int64
	// Congestion names the congestion controller of the profile's connections:
	// CongestionUmbra (the zero value) or CongestionReno.
	Congestion string
	// LinkDeadAfter is the silence of a router link's heartbeats that declares the link
	// dead (internal/heartbeat); zero means heartbeat.DeadAfter, about a second.
	LinkDeadAfter time.Duration
	// MaxProbeTimeout truncates QUIC's probe timeout backoff (third_party/quic-go's
	// Config.MaxProbeTimeout): a connection whose packets go unanswered probes the path at
	// least this often, so after a blackout of any length it hears the path's return
	// within about this long. Zero keeps quic-go's doubling, which after a 30 s blackout
	// can leave the next probe 30 s away (and a handshake's next Initial seconds away).
	MaxProbeTimeout time.Duration
	// HoldStalledLinks keeps a router link whose heartbeats stopped for LinkDeadAfter
	// open instead of closing it: it is reported down to the controller and takes no new
	// circuits, but the circuits on it stay, and carry on once the peer is heard again (a
	// radio's blackout ended). QUIC's idle timeout (MaxIdleTimeout), or the stateless
	// reset of a peer that restarted, closes it. False closes it at once, so that the
	// agents move its circuits to another path (a LAN's dead router).
	HoldStalledLinks bool
	// LossTolerance is umbra's controller's share of packets (0 to 1) a round trip may
	// lose and still be read as random loss, which does not slow the connection; zero
	// means congestion.DefaultLossTolerance.
	LossTolerance float64
	// RetransmitCopies is how many extra copies of each repair of lost stream data a
	// connection sends (third_party/quic-go's Config.RetransmitCopies); zero sends each
	// repair once.
	RetransmitCopies int
	// FEC puts internal/fecconn under the profile's QUIC connections: packets to a peer
	// that speaks it travel in Reed–Solomon blocks whose parity follows the loss the peer
	// reports, so a lost packet is rebuilt before QUIC waits a round trip for its repair.
	FEC bool
}

// Congestion controllers a Profile may name.
const (
	// CongestionUmbra is internal/congestion: model-based, paced, not slowed by random
	// loss below the profile's tolerance nor by a blackout.
	CongestionUmbra = ""
	// CongestionReno is quic-go's own NewReno, which every lost packet halves.
	CongestionReno = "reno"
)

// LAN is the profile for wired or loopback paths: prompt failure detection, large
// windows. It is also an agent's default, which must work over a radio with no flag
// (DESIGN.md): so it tolerates the radio's random loss, and a wired path's congestion
// shows as a queue. At the controller's default tolerance (0.2) a default agent held a
// 20 KB/s telemetry flow through 30 % loss and 800 ms to its least window, and 48 %
// arrived where the radio delivers 70 % (TestTelemetryOnTerribleRadio; 69 % at 0.5).
var LAN = Profile{
	HandshakeIdleTimeout:       5 * time.Second,
	MaxIdleTimeout:             30 * time.Second,
	MaxStreamReceiveWindow:     16 << 20,
	MaxConnectionReceiveWindow: 32 << 20,
	MaxIncomingStreams:         4096,
	LossTolerance:              RadioLossTolerance,
}

// Radio is the profile for a drone's radio: long handshakes and idle timeouts that ride
// through blackouts, small packets.
var Radio = Profile{
	HandshakeIdleTimeout:       15 * time.Second,
	MaxIdleTimeout:             5 * time.Minute,
	InitialPacketSize:          1200,
	MaxStreamReceiveWindow:     4 << 20,
	MaxConnectionReceiveWindow: 8 << 20,
	// Open at the maxima: see the note above RadioLinkDeadAfter.
	InitialStreamReceiveWindow:     4 << 20,
	InitialConnectionReceiveWindow: 8 << 20,
	MaxIncomingStreams:             1024,
	LossTolerance:                  RadioLossTolerance,
	LinkDeadAfter:                  RadioLinkDeadAfter,
	MaxProbeTimeout:                RadioMaxProbeTimeout,
	HoldStalledLinks:               true,
	RetransmitCopies:               RadioRetransmitCopies,
	FEC:                            true,
}

// The Radio profile opens its receive windows at their maxima. quic-go starts a stream at
// 512 KiB and doubles it only when the reader drains half of it within a few round trips;
// on a lossy radio the reader waits for each hole's retransmission (a round trip or more
// per attempt), so the window never grows, and 512 KiB across an 800 ms round trip caps a
// stream near 5 Mbit/s before any loss, far less with it. In the bench's radio lab at
// 30 % / 800 ms the circuits' senders reported STREAM_DATA_BLOCKED at 512 KiB to 1 MiB
// with their congestion windows never full and no probe timeout in the counted window
// (docs/BENCHMARKS.md, "Run C, follow-up"). A window is credit, not memory: quic-go
// buffers only what arrives.

// RadioLinkDeadAfter is the Radio profile's LinkDeadAfter. Router link heartbeats ride a
// stream behind the link's circuits: at 10 % loss and 200 ms a ping waits out a full
// modem queue and a retransmission or two, and a second of silence is not a dead link
// (the bench's relay chain lost its link every few seconds there, and each redial reset
// every circuit across it).
const RadioLinkDeadAfter = 10 * time.Second

// RadioMaxProbeTimeout is the Radio profile's MaxProbeTimeout: a silent radio is probed
// every second (two small packets each way), as an agent races a fresh connection every
// second against a stalled link, so a connection, a router link's above all, carries
// traffic again within about a second of a blackout's end however long it lasted. With
// quic-go's doubling a relay's router link took 2.5 s after a 10 s blackout (the bench's
// relay path; the next probe after a 30 s one can be 30 s away).
const RadioMaxProbeTimeout = time.Second

// RadioLossTolerance is the LossTolerance of both profiles: a radio that loses up to half
// its packets is bad, not congested, and a queue says when it is congested. At 0.35 the
// bench's 30 % / 50 ms cell (30 % each way, the acknowledgements too) read as congestion
// and fell to 0.13 Mbit/s.
const RadioLossTolerance = 0.5

// RadioRetransmitCopies is the Radio profile's RetransmitCopies: every repair goes out
// twice. A stream delivers in order, so on a radio losing 10 % each way it waits on its
// oldest hole; each repair costs a round trip and a half, and a lost repair another,
// which among the tens of holes of every round trip is near certain to happen. Sent
// twice, a repair is lost 1 time in 100 instead of 1 in 10, for 10 % more packets. In
// the bench's radio matrix at 10 % / 200 ms a circuit moved 4.98 Mbit/s with the copy
// and 3.36 without it (medians of four runs; docs/BENCHMARKS.md, runs D and E).
const RadioRetransmitCopies = 1

// QUIC returns the quic-go configuration of the profile.
func (p Profile) QUIC() *quic.Config {
	return &quic.Config{
		HandshakeIdleTimeout:           p.HandshakeIdleTimeout,
		MaxIdleTimeout:                 p.MaxIdleTimeout,
		KeepAlivePeriod:                p.KeepAlivePeriod,
		InitialPacketSize:              p.InitialPacketSize,
		MaxStreamReceiveWindow:         p.MaxStreamReceiveWindow,
		MaxConnectionReceiveWindow:     p.MaxConnectionReceiveWindow,
		InitialStreamReceiveWindow:     p.InitialStreamReceiveWindow,
		InitialConnectionReceiveWindow: p.InitialConnectionReceiveWindow,
		MaxIncomingStreams:             p.MaxIncomingStreams,
		EnableDatagrams:                true,
		Congestion:                     p.congestion(),
		MaxProbeTimeout:                p.MaxProbeTimeout,
		RetransmitCopies:               p.RetransmitCopies,
	}
}

// Socket returns pc as the profile's connections use it, under internal/fecconn when the
// profile has FEC, and the QUIC configuration of connections on it, whose controllers
// count the parity the socket adds for their peer (congestion.Config.Overhead).
func (p Profile) Socket(pc net.PacketConn) (net.PacketConn, *quic.Config) {
	conf := p.QUIC()
	if !p.FEC {
		return pc, conf
	}
	fc := fecconn.New(pc, fecconn.Config{})
	if conf.Congestion != nil {
		conf.Congestion = p.congestionWith(fc)
	}
	return fc, conf
}

// congestion returns the quic-go hook that gives each connection the profile's
// controller, or nil for quic-go's own.
func (p Profile) congestion() func(*quic.RTTStats, net.Addr) quic.CongestionControl {
	if p.Congestion == CongestionReno {
		return nil
	}
	return p.congestionWith(nil)
}

// congestionWith is the hook for umbra's controller; fc, when set, is the socket under
// the connections, whose parity each controller counts (Config.Overhead) and sizes by
// its base round trip (Config.BaseRTT).
func (p Profile) congestionWith(fc *fecconn.Conn) func(*quic.RTTStats, net.Addr) quic.CongestionControl {
	return func(_ *quic.RTTStats, peer net.Addr) quic.CongestionControl {
		cfg := congestion.Config{LossTolerance: p.LossTolerance}
		if fc != nil {
			cfg.Overhead = fc.Overhead(peer)
			cfg.BaseRTT = fc.BaseRTT(peer)
		}
		return congestion.New(cfg)
	}
}

// PeerCheck decides whether a verified peer may use a connection with a given ALPN.
// It runs on every handshake, resumed ones included.
type PeerCheck func(alpn string, peer pki.Subject, leaf *x509.Certificate) error

// ServerTLS is a router's or controller's TLS configuration: cert is presented, a client
// certificate chaining to roots is required, and check decides per ALPN.
func ServerTLS(cert tls.Certificate, roots *x509.CertPool, alpns []string, check PeerCheck) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    roots,
		NextProtos:   alpns,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyPeer(cs, check)
		},
	}
}

// ClientTLS is an agent's or router's TLS configuration for dialing serverName with
// alpn, presenting cert; check (may be nil) vets the server's subject.
func ClientTLS(cert tls.Certificate, roots *x509.CertPool, serverName, alpn string, check PeerCheck) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		RootCAs:      roots,
		ServerName:   serverName,
		NextProtos:   []string{alpn},
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyPeer(cs, check)
		},
	}
}

func verifyPeer(cs tls.ConnectionState, check PeerCheck) error {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return errors.New("transport: peer presented no verified certificate")
	}
	leaf := cs.VerifiedChains[0][0]
	subj, err := pki.SubjectOf(leaf)
	if err != nil {
		return fmt.Errorf("transport: %w", err)
	}
	if check == nil {
		return nil
	}
	return check(cs.NegotiatedProtocol, subj, leaf)
}

// ProfileNamed returns the profile called name: "lan" or "radio".
func ProfileNamed(name string) (Profile, error) {
	switch name {
	case "lan":
		return LAN, nil
	case "radio":
		return Radio, nil
	}
	return Profile{}, fmt.Errorf("profile %q: want lan or radio", name)
}
