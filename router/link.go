package router

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/umbranet/umbra/third_party/quic-go"

	"github.com/umbranet/umbra/internal/grant"
	"github.com/umbranet/umbra/internal/heartbeat"
	"github.com/umbranet/umbra/internal/pki"
	"github.com/umbranet/umbra/internal/transport"
	"github.com/umbranet/umbra/internal/wire"
)

// Link health. A link is declared dead once no heartbeat has been heard for the profile's
// LinkDeadAfter (or four round trips, if longer): about a second on a LAN, so circuits
// through a relay that died move to another path promptly. A radio's link
// (Profile.HoldStalledLinks) is only stalled then: reported down to the controller at
// once, so no new path uses it, but held with its circuits until the peer is heard again
// (its blackout ended: the link probes the radio every second, Profile.MaxProbeTimeout)
// or QUIC's idle timeout or a restarted peer's stateless reset closes it.
const (
	linkDialTimeout = 10 * time.Second
	// linkReportEvery is how often a router tells the controller its links' health even
	// when nothing changed.
	linkReportEvery                           = 2 * time.Second
	errCodeLinkDead quic.ApplicationErrorCode = 0x103
)

// maxReportedAgents bounds the agents' links in one link report, under the wire's array
// limit (4,096).
const maxReportedAgents = 4000

// link is a QUIC connection to another router (ALPN umbra-link/1). The router that
// dialed it sends heartbeats on one stream and the other echoes them; either side
// closes the link when they stop.
type link struct {
	endpoint
	r      *Router
	peer   pki.Subject
	serial string // the peer's certificate serial
	dialed bool
	hb     *heartbeat.Monitor // its heartbeats; the round trip on the dialing side

	hmu      sync.Mutex
	lastSent uint64  // packets sent at the last loss sample
	lastLost uint64  // packets lost at the last loss sample
	loss     float64 // share of packets lost since the previous sample
}

// linkTo returns the live link to the router with id, or nil; a stalled one is not live.
func (r *Router) linkTo(id string) *link {
	r.mu.Lock()
	defer r.mu.Unlock()
	for l := range r.links {
		if l.peer.ID == id && l.conn.Context().Err() == nil && !l.stalled() {
			return l
		}
	}
	return nil
}

// stalled reports whether the peer has been silent past the dead interval: a held link
// that waits for it (or one about to close).
func (l *link) stalled() bool {
	_, dead := l.hb.Dead()
	return dead
}

// state is the link as this router reports it to the controller: a stalled link is down.
func (l *link) state() wire.LinkState {
	stalled := l.stalled()
	rtt := l.hb.RTT()
	l.hmu.Lock()
	defer l.hmu.Unlock()
	if rtt == 0 {
		rtt = l.conn.ConnectionStats().SmoothedRTT
	}
	return wire.LinkState{
		Peer: l.peer.ID, Up: l.conn.Context().Err() == nil && !stalled, RTTMicros: uint64(rtt.Microseconds()),
		LossPermille: uint16(min(1000, l.loss*1000)), Dialed: l.dialed,
	}
}

// sampleLoss updates the loss estimate from QUIC's packet counters.
func (l *link) sampleLoss() {
	st := l.conn.ConnectionStats()
	l.hmu.Lock()
	defer l.hmu.Unlock()
	if sent := st.PacketsSent - l.lastSent; sent > 0 && st.PacketsLost >= l.lastLost {
		l.loss = float64(st.PacketsLost-l.lastLost) / float64(sent)
	}
	l.lastSent, l.lastLost = st.PacketsSent, st.PacketsLost
}

// runLinkTo keeps a link to the router listening at addr until ctx ends, redialing with
// backoff whenever it drops.
func (r *Router) runLinkTo(ctx context.Context, addr string) {
	b := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(ctrlBackoffInitial),
		backoff.WithMaxInterval(ctrlBackoffMax),
		backoff.WithRandomizationFactor(ctrlBackoffJitter),
		backoff.WithMaxElapsedTime(0),
	)
	for ctx.Err() == nil {
		conn, peer, err := r.dialLink(ctx, addr)
		if err == nil {
			b.Reset()
			r.serveLink(ctx, conn, peer, true)
			err = context.Cause(conn.Context())
		}
		if ctx.Err() != nil {
			return
		}
		if transport.HeardNothing(err) {
			b.Reset() // the dial's own retransmissions paced it: a radio may be back by now
		}
		wait := b.NextBackOff()
		r.log.Warn("router link down", "to", addr, "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// dialLink connects to the router at addr with this router's certificate.
func (r *Router) dialLink(ctx context.Context, addr string) (*quic.Conn, pki.Subject, error) {
	var peer pki.Subject
	tlsConf := transport.ClientTLS(r.cert, r.roots, pki.RouterServerName, transport.ALPNLink, func(_ string, p pki.Subject, leaf *x509.Certificate) error {
		if p.Kind != pki.KindRouter {
			return fmt.Errorf("router link: peer at %s is a %s, not a router", addr, p.Kind)
		}
		r.mu.Lock()
		revoked := r.revoked[pki.SerialString(leaf)]
		r.mu.Unlock()
		if revoked {
			return fmt.Errorf("router link: certificate of router %q is revoked", p.Name)
		}
		peer = p
		return nil
	})
	udp, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, peer, fmt.Errorf("router link: %w", err)
	}
	dctx, cancel := context.WithTimeout(ctx, linkDialTimeout)
	defer cancel()
	conn, err := r.transport.Dial(dctx, udp, tlsConf, r.quicConfig())
	if err != nil {
		return nil, peer, fmt.Errorf("router link: dial %s: %w", addr, err)
	}
	return conn, peer, nil
}

// serveLink runs a link until it ends: heartbeats, circuits the peer extends through
// this router, and datagrams.
func (r *Router) serveLink(ctx context.Context, conn *quic.Conn, peer pki.Subject, dialed bool) {
	// The dialing side hands out odd circuit ids and the accepting side even ones.
	first := uint64(2)
	if dialed {
		first = 1
	}
	l := &link{endpoint: newEndpoint(conn, first, 2, &r.metrics.drops), r: r, peer: peer, dialed: dialed, hb: heartbeat.NewDeadAfter(r.cfg.Profile.LinkDeadAfter)}
	l.hb.OnMissed(r.metrics.linkMissed.WithLabelValues(peer.Name).Inc)
	if r.cfg.Profile.HoldStalledLinks {
		l.hb.OnStall(func(stalled bool) {
			if stalled {
				silent, _ := l.hb.Dead()
				r.log.Warn("router link stalled: reported down, held with its circuits until the peer is heard again",
					"peer", peer.Name, "silent", silent.Round(time.Millisecond))
			} else {
				r.log.Info("router link recovered", "peer", peer.Name)
			}
			r.linksChanged()
		})
	}
	if certs := conn.ConnectionState().TLS.PeerCertificates; len(certs) > 0 {
		l.serial = pki.SerialString(certs[0])
	}
	r.mu.Lock()
	r.links[l] = struct{}{}
	r.mu.Unlock()
	r.log.Info("router link up", "peer", peer.Name, "dialed", dialed, "remote", conn.RemoteAddr().String())
	r.linksChanged()
	defer func() {
		r.mu.Lock()
		delete(r.links, l)
		r.mu.Unlock()
		r.linksChanged()
		r.log.Info("router link down", "peer", peer.Name, "err", context.Cause(conn.Context()))
	}()

	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go l.forwardDatagrams(lctx)
	go l.acceptStreams(lctx)
	if dialed {
		go sendHeartbeats(lctx, conn, l.hb)
	}
	if watchHeartbeats(ctx, conn, l.hb, false) {
		conn.CloseWithError(errCodeShutdown, "router stopping")
	}
}

// watchHeartbeats closes conn as dead once hb has heard nothing for its dead interval,
// and returns when conn ends or ctx ends (stopped). With untilSpoke, a peer that never
// took part in the heartbeats is not held to them.
func watchHeartbeats(ctx context.Context, conn *quic.Conn, hb *heartbeat.Monitor, untilSpoke bool) (stopped bool) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(conn.Context(), cancel)()
	if err := hb.Watch(wctx, untilSpoke); err != nil {
		conn.CloseWithError(errCodeLinkDead, err.Error())
		return false
	}
	return ctx.Err() != nil
}

// sendHeartbeats opens a heartbeat stream on conn and pings on it until ctx ends; the
// echoes keep hb alive and measure the round trip.
func sendHeartbeats(ctx context.Context, conn *quic.Conn, hb *heartbeat.Monitor) {
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return
	}
	defer cancelStream(st, 0)
	hb.Ping(ctx, st)
}

// acceptStreams serves the streams the peer opens: its heartbeats and its circuits.
func (l *link) acceptStreams(ctx context.Context) {
	for {
		st, err := l.conn.AcceptStream(ctx)
		if err != nil {
			return
		}
		go l.serveStream(ctx, st)
	}
}

func (l *link) serveStream(ctx context.Context, st *quic.Stream) {
	st.SetReadDeadline(time.Now().Add(requestTimeout))
	typ, body, err := wire.Read(st)
	if err != nil {
		cancelStream(st, 0)
		return
	}
	st.SetReadDeadline(time.Time{})
	switch typ {
	case wire.TypeLinkPing:
		l.hb.Echo(st, body)
		cancelStream(st, 0)
	case wire.TypeHop:
		var h wire.Hop
		if err := wire.Unmarshal(body, &h); err != nil {
			refuse(st, wire.Refuse(wire.CodeMalformed, "malformed hop"))
			return
		}
		l.relay(ctx, st, h)
	default:
		refuse(st, wire.Refuse(wire.CodeMalformed, fmt.Sprintf("unexpected message type %d on a router link", typ)))
	}
}

// relay checks a circuit the previous router extends through this one and carries it on.
func (l *link) relay(ctx context.Context, st *quic.Stream, h wire.Hop) {
	r := l.r
	g, err := grant.Verify(h.Grant, r.signer, time.Now())
	idx := int(h.Index)
	if err != nil || idx < 1 || idx >= len(g.Routers) || g.Routers[idx] != r.cfg.Identity.ID || g.Routers[idx-1] != l.peer.ID {
		refuse(st, wire.Refuse(wire.CodeBadRequest, "grant does not name this hop"))
		return
	}
	down, err := r.extend(ctx, g, h.Grant, idx, h.Resume, h.Moving)
	if err != nil {
		refuse(st, err)
		return
	}
	if err := wire.Write(st, wire.TypeHopAck, wire.HopAck{}); err != nil {
		cancelStream(down.stream, codeCircuitFailed)
		return
	}
	r.log.Info("circuit relayed", "circuit", g.Circuit, "from", l.peer.Name)
	r.carry(circuitEnd{stream: st, ep: &l.endpoint, cid: h.Circuit}, down, g.ServiceName)
}

// linksChanged asks the reporter to tell the controller about the links now.
func (r *Router) linksChanged() {
	select {
	case r.linkEvents <- struct{}{}:
	default:
	}
}

// reportLinks tells the controller the state of this router's links whenever they
// change, and every linkReportEvery with fresh health figures.
func (r *Router) reportLinks(ctx context.Context) {
	tick := time.NewTicker(linkReportEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-r.linkEvents:
		}
		r.mu.Lock()
		ls := make([]*link, 0, len(r.links))
		for l := range r.links {
			ls = append(ls, l)
		}
		ss := make([]*session, 0, len(r.sessions))
		for _, s := range r.sessions {
			if len(ss) < maxReportedAgents {
				ss = append(ss, s)
			}
		}
		r.mu.Unlock()
		var rep wire.LinkReport
		for _, l := range ls {
			l.sampleLoss()
			rep.Links = append(rep.Links, l.state())
		}
		for _, s := range ss {
			rep.Agents = append(rep.Agents, s.linkState())
		}
		r.report(ctx, rep)
	}
}
