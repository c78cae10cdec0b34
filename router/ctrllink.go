package router

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/umbranet/umbra/third_party/quic-go"

	"github.com/umbranet/umbra/internal/heartbeat"
	"github.com/umbranet/umbra/internal/pki"
	"github.com/umbranet/umbra/internal/transport"
	"github.com/umbranet/umbra/internal/version"
	"github.com/umbranet/umbra/internal/wire"
)

// Reconnect policy of the control link: exponential with jitter and a low cap, so a
// router finds the controller again within seconds of it returning.
const (
	ctrlBackoffInitial = 200 * time.Millisecond
	ctrlBackoffMax     = 5 * time.Second
	ctrlBackoffJitter  = 0.5
	ctrlDialTimeout    = 10 * time.Second
	// changedCoalesce: every member pushes the same notice that records changed; the
	// ones arriving within this window of an announcement go to the agents as one more,
	// at its end.
	changedCoalesce = 250 * time.Millisecond
)

// runControlLinks keeps a control link up to every member of the controller cluster the
// router knows, until ctx ends, as OpenZiti's routers do: each member then knows this
// router, its links and its bindings, so any member computes paths and grants circuits
// over the whole fleet. A member that joins gets a link as soon as the router learns of
// it; the link to a member that left closes.
func (r *Router) runControlLinks(ctx context.Context) {
	running := map[string]context.CancelFunc{}
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		list := r.controllerList()
		for _, u := range list {
			if _, ok := running[u]; !ok {
				lctx, cancel := context.WithCancel(ctx)
				running[u] = cancel
				wg.Go(func() { r.runControlLink(lctx, u) })
			}
		}
		for u, cancel := range running {
			if !slices.Contains(list, u) {
				r.log.Info("control link closed: the controller left the cluster", "controller", u)
				cancel()
				delete(running, u)
			}
		}
		select {
		case <-ctx.Done():
			for _, cancel := range running {
				cancel()
			}
			return
		case <-r.membersChanged:
		}
	}
}

// runControlLink keeps the router's control link to the controller at target up until
// ctx ends, redialing with backoff whenever it drops or a dial fails.
func (r *Router) runControlLink(ctx context.Context, target string) {
	b := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(ctrlBackoffInitial),
		backoff.WithMaxInterval(ctrlBackoffMax),
		backoff.WithRandomizationFactor(ctrlBackoffJitter),
		backoff.WithMaxElapsedTime(0),
	)
	for ctx.Err() == nil {
		up, err := r.controlLinkOnce(ctx, target)
		if ctx.Err() != nil {
			return
		}
		if up || transport.HeardNothing(err) {
			b.Reset() // a dial that timed out was paced by its own retransmissions
		}
		wait := b.NextBackOff()
		r.log.Warn("control link down", "controller", target, "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// controlLinkOnce dials the controller, says Hello and holds the link until it ends. It
// reports whether the link came up.
func (r *Router) controlLinkOnce(ctx context.Context, controller string) (bool, error) {
	u, err := url.Parse(controller)
	if err != nil {
		return false, fmt.Errorf("control link: controller URL: %w", err)
	}
	roots, err := r.cfg.Identity.Roots()
	if err != nil {
		return false, err
	}
	tlsConf := transport.ClientTLS(r.cert, roots, u.Hostname(), transport.ALPNCtrl, func(_ string, peer pki.Subject, _ *x509.Certificate) error {
		if peer.Kind != pki.KindController {
			return fmt.Errorf("control link: peer is a %s, not the controller", peer.Kind)
		}
		return nil
	})
	dctx, cancel := context.WithTimeout(ctx, ctrlDialTimeout)
	defer cancel()
	addr, err := net.ResolveUDPAddr("udp", u.Host)
	if err != nil {
		return false, fmt.Errorf("control link: %w", err)
	}
	// The control link may cross the router's radio too (a relay drone's): its dials probe
	// as the router's links do, so one in flight at a blackout's end completes within
	// about the profile's MaxProbeTimeout, not after the backoff of its Initials.
	conf := transport.LAN.QUIC()
	conf.MaxProbeTimeout = r.cfg.Profile.MaxProbeTimeout
	conn, err := r.transport.Dial(dctx, addr, tlsConf, conf)
	if err != nil {
		return false, fmt.Errorf("control link: dial %s: %w", u.Host, err)
	}
	defer conn.CloseWithError(errCodeShutdown, "")
	s, err := conn.OpenStreamSync(dctx)
	if err != nil {
		return false, fmt.Errorf("control link: %w", err)
	}
	s.SetDeadline(time.Now().Add(ctrlDialTimeout))
	if err := wire.Write(s, wire.TypeHello, wire.Hello{Version: wire.Version, Name: r.cfg.Identity.Name, Advertise: r.cfg.Advertise, Software: version.Version}); err != nil {
		return false, fmt.Errorf("control link: %w", err)
	}
	var ack wire.HelloAck
	if err := wire.Expect(s, wire.TypeHelloAck, &ack); err != nil {
		return false, fmt.Errorf("control link: %w", err)
	}
	s.SetDeadline(time.Time{})
	s.Close()
	r.revoke(ack.Revoked)
	r.setControllers(ack.Controllers)
	// Heartbeats notice a controller that crashed within about a second (the profile's
	// LinkDeadAfter on a radio); QUIC's idle timeout would keep the dead link, and fail
	// every request on it, for 30 s.
	hb := heartbeat.NewDeadAfter(r.cfg.Profile.LinkDeadAfter)
	hb.OnMissed(r.metrics.controlMissed.Inc)
	hctx, stopHeartbeats := context.WithCancel(ctx)
	defer stopHeartbeats()
	go sendHeartbeats(hctx, conn, hb)
	r.setControl(controller, conn)
	defer r.setControl(controller, nil)
	// The controller forgot this router's links when its control link dropped, and
	// routes only over links both ends report: report them now, not at the next tick.
	r.linksChanged()
	r.log.Info("control link up", "controller", u.Host)
	go r.acceptControlPushes(conn)
	watchHeartbeats(ctx, conn, hb, true)
	return true, context.Cause(conn.Context())
}

// acceptControlPushes handles what the controller sends unasked: revoked certificates,
// and notices that records changed, which go on to every agent connected here.
func (r *Router) acceptControlPushes(conn *quic.Conn) {
	for {
		s, err := conn.AcceptStream(conn.Context())
		if err != nil {
			return
		}
		go func() {
			defer s.Close()
			s.SetReadDeadline(time.Now().Add(ctrlDialTimeout))
			typ, body, err := wire.Read(s)
			if err != nil {
				r.log.Warn("control push", "err", err)
				return
			}
			switch typ {
			case wire.TypeRevoke:
				var rev wire.Revoke
				if err := wire.Unmarshal(body, &rev); err != nil {
					r.log.Warn("control push: revoke", "err", err)
					return
				}
				r.revoke(rev.Serials)
			case wire.TypeChanged:
				select {
				case r.changed <- struct{}{}:
				default:
				}
			case wire.TypeControllers:
				var m wire.Controllers
				if err := wire.Unmarshal(body, &m); err != nil {
					r.log.Warn("control push: controllers", "err", err)
					return
				}
				r.setControllers(m.URLs)
			default:
				r.log.Warn("control push: unexpected message", "type", typ)
			}
		}()
	}
}

// coalesceChanged passes the controllers' notices that records changed on to the agents
// until ctx ends: the first at once, those that follow within changedCoalesce (the
// same change, pushed by every member) as one more at the window's end.
func (r *Router) coalesceChanged(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.changed:
		}
		r.announceChanged()
		select {
		case <-ctx.Done():
			return
		case <-time.After(changedCoalesce):
		}
	}
}

// announceChanged tells every connected agent that records changed, so each asks for
// its services again; an agent that misses it catches up on its next link.
func (r *Router) announceChanged() {
	r.mu.Lock()
	conns := make([]*quic.Conn, 0, len(r.sessions))
	for conn := range r.sessions {
		conns = append(conns, conn)
	}
	r.mu.Unlock()
	for _, conn := range conns {
		go func() {
			ctx, cancel := context.WithTimeout(conn.Context(), ctrlDialTimeout)
			defer cancel()
			s, err := conn.OpenStreamSync(ctx)
			if err != nil {
				return
			}
			wire.Write(s, wire.TypeChanged, wire.Changed{})
			s.Close()
		}()
	}
}

// setControl records the control link to the controller at url (nil when down) and,
// when one comes up, wakes the waiters.
func (r *Router) setControl(url string, conn *quic.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if conn == nil {
		delete(r.ctrls, url)
		return
	}
	r.ctrls[url] = conn
	close(r.ctrlUp)
	r.ctrlUp = make(chan struct{})
}

// errNoController is returned for requests while no control link is up, or when every
// one failed the request.
var errNoController = errors.New("controller unreachable")

// controlConns lists the control links that are up, the preferred first: in the order
// of the cluster's member list, which is the same on every member, so routers ask the
// same member while it answers.
func (r *Router) controlConns() []*quic.Conn {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*quic.Conn, 0, len(r.ctrls))
	for _, u := range r.controllers {
		if conn := r.ctrls[u]; conn != nil {
			out = append(out, conn)
		}
	}
	for u, conn := range r.ctrls {
		if !slices.Contains(r.controllers, u) {
			out = append(out, conn)
		}
	}
	return out
}

// controlUp returns a channel closed the next time a control link comes up, and
// whether one is up now.
func (r *Router) controlUp() (<-chan struct{}, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ctrlUp, len(r.ctrls) > 0
}

// report sends a link report to every controller member with a control link up, each
// on a stream of its own, so that every member knows this router's links and agents.
func (r *Router) report(ctx context.Context, rep wire.LinkReport) {
	for _, conn := range r.controlConns() {
		go func() {
			sctx, cancel := context.WithTimeout(ctx, requestTimeout)
			defer cancel()
			cs, err := conn.OpenStreamSync(sctx)
			if err != nil {
				return
			}
			cs.SetDeadline(time.Now().Add(requestTimeout))
			if err := wire.Write(cs, wire.TypeLinkReport, rep); err != nil {
				cs.CancelRead(0)
			}
			cs.Close()
		}()
	}
}
