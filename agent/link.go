package agent

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/quic-go/quic-go"

	"umbra/internal/api"
	"umbra/internal/pki"
	"umbra/internal/transport"
	"umbra/internal/wire"
)

// Link manager timing: reconnect with exponential backoff, jitter and a low cap, so a
// device finds its router again within seconds of the radio returning.
const (
	linkBackoffInitial = 100 * time.Millisecond
	linkBackoffMax     = 2 * time.Second
	linkBackoffJitter  = 0.5
	linkDialTimeout    = 10 * time.Second
	// serviceRefresh is how often the agent asks again which services it may use, so new
	// services and policies take effect without a restart.
	serviceRefresh = 10 * time.Second
	// requestTimeout bounds one control request to the router.
	requestTimeout = 15 * time.Second
)

// Link states, as `umbra-agent status` shows them.
const (
	stateUp         = "up"
	stateConnecting = "connecting"
	stateDown       = "down"
)

// linkState is what the agent knows of one router link.
type linkState struct {
	router string
	state  string
	conn   *quic.Conn
	err    string
}

func (l *linkState) status() LinkStatus {
	ls := LinkStatus{Router: l.router, State: l.state, Error: l.err}
	if l.conn != nil && l.state == stateUp {
		ls.RTTms = float64(l.conn.ConnectionStats().SmoothedRTT.Microseconds()) / 1000
	}
	return ls
}

// runLinks keeps a link to one of routers up until ctx ends, trying them in order.
func (a *Agent) runLinks(ctx context.Context, routers []string) {
	a.mu.Lock()
	for _, r := range routers {
		a.links[r] = &linkState{router: r, state: stateDown}
	}
	a.mu.Unlock()
	b := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(linkBackoffInitial),
		backoff.WithMaxInterval(linkBackoffMax),
		backoff.WithRandomizationFactor(linkBackoffJitter),
		backoff.WithMaxElapsedTime(0),
	)
	for i := 0; ctx.Err() == nil; i = (i + 1) % len(routers) {
		if a.linkOnce(ctx, routers[i]) {
			b.Reset()
			continue
		}
		select {
		case <-ctx.Done():
		case <-time.After(b.NextBackOff()):
		}
	}
}

func (a *Agent) setLink(router, state string, conn *quic.Conn, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	l := a.links[router]
	l.state, l.conn, l.err = state, conn, ""
	if err != nil {
		l.err = err.Error()
	}
}

// linkOnce connects to router and serves the link until it ends. It reports whether the
// link came up.
func (a *Agent) linkOnce(ctx context.Context, router string) bool {
	a.setLink(router, stateConnecting, nil, nil)
	conn, err := a.connect(ctx, router)
	if err != nil {
		a.setLink(router, stateDown, nil, err)
		a.log.Warn("router link failed", "router", router, "err", err)
		return false
	}
	a.setLink(router, stateUp, conn, nil)
	a.setConn(conn)
	a.log.Info("router link up", "router", router)
	lctx, cancel := context.WithCancel(ctx)
	var lwg sync.WaitGroup
	lwg.Go(func() { a.acceptCircuits(lctx, conn) })
	lwg.Go(func() { a.readDatagrams(lctx, conn) })
	lwg.Go(func() { a.manageServices(lctx, conn) })
	select {
	case <-ctx.Done():
		conn.CloseWithError(0, "agent stopping")
	case <-conn.Context().Done():
	}
	cancel()
	lwg.Wait()
	a.setConn(nil)
	a.setLink(router, stateDown, nil, context.Cause(conn.Context()))
	a.log.Warn("router link down", "router", router, "err", context.Cause(conn.Context()))
	return true
}

// connect dials router over QUIC with the identity's certificate and says Hello.
func (a *Agent) connect(ctx context.Context, router string) (*quic.Conn, error) {
	tlsConf := transport.ClientTLS(*a.currentCert(), a.roots, pki.RouterServerName, transport.ALPNEdge, func(_ string, peer pki.Subject, _ *x509.Certificate) error {
		if peer.Kind != pki.KindRouter {
			return fmt.Errorf("peer at %s is a %s, not a router", router, peer.Kind)
		}
		return nil
	})
	dctx, cancel := context.WithTimeout(ctx, linkDialTimeout)
	defer cancel()
	conn, err := transport.DialConnected(dctx, router, tlsConf, a.cfg.Profile.QUIC())
	if err != nil {
		return nil, err
	}
	// The router checks our certificate once our side of the handshake is done, so only
	// its answer to Hello proves the link is accepted.
	var ack wire.HelloAck
	if err := a.request(dctx, conn, wire.TypeHello, wire.Hello{Version: wire.Version, Name: a.cfg.Identity.Name}, wire.TypeHelloAck, &ack); err != nil {
		conn.CloseWithError(0, "")
		return nil, err
	}
	return conn, nil
}

// request sends one message on a new stream and reads the answer of type want into out.
func (a *Agent) request(ctx context.Context, conn *quic.Conn, typ wire.Type, msg any, want wire.Type, out any) error {
	s, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	s.SetDeadline(time.Now().Add(requestTimeout))
	if err := wire.Write(s, typ, msg); err != nil {
		return err
	}
	return wire.Expect(s, want, out)
}

// manageServices learns what the agent may use, binds what it hosts, and listens for
// what it dials by intercept, again every serviceRefresh while the link is up.
func (a *Agent) manageServices(ctx context.Context, conn *quic.Conn) {
	var wg sync.WaitGroup
	defer wg.Wait()
	tick := time.NewTicker(serviceRefresh)
	defer tick.Stop()
	for {
		var reply wire.ServicesReply
		err := a.request(ctx, conn, wire.TypeServicesRequest, wire.ServicesRequest{}, wire.TypeServicesReply, &reply)
		if err != nil {
			a.log.Warn("services", "err", err)
		} else {
			a.applyServices(ctx, &wg, conn, reply.Services)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// applyServices starts hosting newly bindable services and intercepts of newly dialable
// ones.
func (a *Agent) applyServices(ctx context.Context, wg *sync.WaitGroup, conn *quic.Conn, svcs []wire.ServiceInfo) {
	a.mu.Lock()
	a.services = map[string]wire.ServiceInfo{}
	for _, s := range svcs {
		a.services[s.Name] = s
	}
	a.mu.Unlock()
	for _, s := range svcs {
		if addr, ok := a.cfg.Hosts[s.Name]; ok {
			s.Host = addr
		}
		if s.Bind && s.Host != "" {
			a.startHosting(ctx, wg, conn, s)
		}
		if s.Dial && s.Intercept != "" {
			proto, addr, err := splitAddress(s.Intercept)
			if err != nil || checkLoopback(addr) != nil {
				a.log.Warn("intercept not on loopback, ignored", "service", s.Name, "intercept", s.Intercept)
				continue
			}
			d := DialSpec{Service: s.Name, Proto: proto, Listen: addr}
			if err := a.startDial(d); err != nil {
				a.log.Warn("intercept", "service", s.Name, "err", err)
			}
		}
	}
}

// fetchRouters asks the controller which routers this identity may use.
func (a *Agent) fetchRouters(ctx context.Context) ([]string, error) {
	c, err := api.NewClient(ctx, a.cfg.Identity)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var recs []struct {
		Name      string `json:"name"`
		Advertise string `json:"advertise"`
		Online    bool   `json:"online"`
	}
	if err := c.Do(ctx, "GET", api.PathEdgeRouters, nil, &recs); err != nil {
		return nil, fmt.Errorf("agent: ask the controller for routers: %w", err)
	}
	var out []string
	for _, r := range recs {
		if r.Online && r.Advertise != "" {
			if _, _, err := net.SplitHostPort(r.Advertise); err == nil {
				out = append(out, r.Advertise)
			}
		}
	}
	if len(out) == 0 {
		b, _ := json.Marshal(recs)
		return nil, fmt.Errorf("agent: no online router this identity may use (controller listed %s); pass --routers", b)
	}
	return out, nil
}
