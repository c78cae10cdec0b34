package router

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
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
)

// runControlLink keeps the router's control link to the controller up until ctx ends.
func (r *Router) runControlLink(ctx context.Context) {
	b := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(ctrlBackoffInitial),
		backoff.WithMaxInterval(ctrlBackoffMax),
		backoff.WithRandomizationFactor(ctrlBackoffJitter),
		backoff.WithMaxElapsedTime(0),
	)
	for ctx.Err() == nil {
		up, err := r.controlLinkOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		if up {
			b.Reset()
		}
		wait := b.NextBackOff()
		r.log.Warn("control link down", "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// controlLinkOnce dials the controller, says Hello and holds the link until it ends. It
// reports whether the link came up.
func (r *Router) controlLinkOnce(ctx context.Context) (bool, error) {
	u, err := url.Parse(r.cfg.Identity.Controller)
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
	conn, err := r.transport.Dial(dctx, addr, tlsConf, transport.LAN.QUIC())
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
	// Heartbeats notice a controller that crashed within about a second (the profile's
	// LinkDeadAfter on a radio); QUIC's idle timeout would keep the dead link, and fail
	// every request on it, for 30 s.
	hb := heartbeat.NewDeadAfter(r.cfg.Profile.LinkDeadAfter)
	hctx, stopHeartbeats := context.WithCancel(ctx)
	defer stopHeartbeats()
	go sendHeartbeats(hctx, conn, hb)
	r.setControl(conn)
	defer r.setControl(nil)
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
				r.announceChanged()
			default:
				r.log.Warn("control push: unexpected message", "type", typ)
			}
		}()
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

// setControl records the current control link (nil when down) and wakes its waiters.
func (r *Router) setControl(conn *quic.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ctrl = conn
	if conn != nil {
		close(r.ctrlUp)
		r.ctrlUp = make(chan struct{})
	}
}

// errNoController is returned for requests while the control link is down.
var errNoController = errors.New("controller unreachable")

// controlStream opens a stream to the controller on the current control link.
func (r *Router) controlStream(ctx context.Context) (*quic.Stream, error) {
	r.mu.Lock()
	conn := r.ctrl
	r.mu.Unlock()
	if conn == nil {
		return nil, errNoController
	}
	s, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errNoController, err)
	}
	return s, nil
}

// controlUp returns a channel closed the next time the control link comes up, and
// whether it is up now.
func (r *Router) controlUp() (<-chan struct{}, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ctrlUp, r.ctrl != nil
}
