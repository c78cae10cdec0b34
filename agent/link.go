package agent

import (
	"context"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/umbranet/umbra/third_party/quic-go"

	"github.com/umbranet/umbra/internal/api"
	"github.com/umbranet/umbra/internal/pki"
	"github.com/umbranet/umbra/internal/transport"
	"github.com/umbranet/umbra/internal/wire"
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

	// heartbeatEvery is how often the agent pings its router on the link's heartbeat
	// stream. A link whose pongs stop for stallAfter (or a few round trips, if longer)
	// is stalled: the agent keeps it but races fresh connections against it.
	heartbeatEvery = 250 * time.Millisecond
	stallAfter     = 1500 * time.Millisecond
	// raceEvery is how often a stalled or lost link starts another fresh connection
	// attempt; each attempt lives for linkDialTimeout. A new attempt sends its first
	// packet at once, while an old one's retransmissions have backed off, so traffic
	// resumes within about raceEvery of the radio returning however long it was black.
	raceEvery = time.Second
	// codeReplaced closes a stalled connection that a fresh one replaced.
	codeReplaced quic.ApplicationErrorCode = 0x10
	// codeStopping closes the link of an agent that stops.
	codeStopping quic.ApplicationErrorCode = wire.ConnAgentGone

	// A router that refuses the agent's certificate (revoked: its identity was deleted)
	// will refuse it again: the agent retries slowly rather than every linkBackoffMax,
	// in case it was a router's mistake, and says so in its status.
	refusedBackoffInitial = 10 * time.Second
	refusedBackoffMax     = 5 * time.Minute
)

// TLS alerts a router refuses an agent's certificate with (RFC 8446 §6.2), as QUIC
// carries them: a CONNECTION_CLOSE's crypto error code is cryptoErrorBase plus the alert
// (RFC 9001 §4.8).
const (
	cryptoErrorBase         = 0x100
	alertBadCertificate     = 42
	alertCertificateRevoked = 44
)

// certRefused reports whether err says a router refused this agent's certificate: a
// TLS alert at the handshake, or the close of its connection for a revoked certificate.
func certRefused(err error) bool {
	var te *quic.TransportError
	if errors.As(err, &te) && te.Remote && te.ErrorCode.IsCryptoError() {
		alert := uint8(te.ErrorCode - cryptoErrorBase)
		return alert == alertBadCertificate || alert == alertCertificateRevoked
	}
	var ae *quic.ApplicationError
	return errors.As(err, &ae) && ae.Remote && ae.ErrorCode == codeCertRevoked
}

// Link states, as `umbra-agent status` shows them.
const (
	stateUp         = LinkUp
	stateConnecting = LinkConnecting
	stateStalled    = LinkStalled
	stateStandby    = LinkStandby // reachable, but another router carries the link
	stateDown       = LinkDown
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
		cs := l.conn.ConnectionStats()
		ls.RTTms = float64(cs.SmoothedRTT.Microseconds()) / 1000
		ls.BytesSent, ls.BytesReceived = cs.BytesSent, cs.BytesReceived
		if cs.PacketsSent > 0 {
			ls.LossPercent = 100 * float64(cs.PacketsLost) / float64(cs.PacketsSent)
		}
	}
	return ls
}

// runLinks keeps a link to one of routers up until ctx ends. Each time it races them
// in order of preference, a new attempt every raceEvery and at once after one fails, so a
// dead router costs about a second and the first to answer carries the link.
func (a *Agent) runLinks(ctx context.Context, routers []string) {
	a.mu.Lock()
	a.routerList = routers
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
	refused := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(refusedBackoffInitial),
		backoff.WithMaxInterval(refusedBackoffMax),
		backoff.WithRandomizationFactor(linkBackoffJitter),
		backoff.WithMaxElapsedTime(0),
	)
	for ctx.Err() == nil {
		up, err := a.linkOnce(ctx, routers)
		var wait time.Duration
		switch {
		case certRefused(err):
			wait = refused.NextBackOff()
			a.log.Error("router refused this agent's certificate (revoked, or its identity deleted); retrying slowly", "err", err, "retry_in", wait)
		case up:
			b.Reset()
			refused.Reset()
			continue
		default:
			wait = b.NextBackOff()
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
}

func (a *Agent) setLink(router, state string, conn *quic.Conn, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	l := a.links[router]
	changed := l.state != state
	l.state, l.conn, l.err = state, conn, ""
	if err != nil {
		l.err = err.Error()
	}
	if changed {
		a.emitLocked(Event{Time: time.Now(), Router: router, State: state, Err: l.err})
	}
}

// linkOnce connects to one of routers and serves the link until it ends, moving to a
// fresh connection whenever one wins a race against a stalled link. It reports whether
// the link came up, and why it failed or ended.
func (a *Agent) linkOnce(ctx context.Context, routers []string) (bool, error) {
	for _, r := range routers {
		a.setLink(r, stateConnecting, nil, nil)
	}
	conn, router, err := a.race(ctx, routers, nil)
	for _, r := range routers {
		switch {
		case r == router:
		case err == nil:
			a.setLink(r, stateStandby, nil, nil)
		default:
			a.setLink(r, stateDown, nil, err)
		}
	}
	a.noteRefusal(err)
	if err != nil {
		a.log.Warn("router link failed", "routers", routers, "err", err)
		return false, err
	}
	var ended error
	for conn != nil {
		a.setLink(router, stateUp, conn, nil)
		a.setConn(conn)
		a.mu.Lock()
		a.linksUp++
		a.mu.Unlock()
		a.log.Info("router link up", "router", router)
		lctx, cancel := context.WithCancel(ctx)
		var lwg sync.WaitGroup
		lwg.Go(func() { a.acceptCircuits(lctx, conn) })
		lwg.Go(func() { a.readDatagrams(lctx, conn) })
		lwg.Go(func() { a.manageServices(lctx, conn) })
		next, nextRouter := a.watch(ctx, router, conn)
		if next != nil {
			// The circuits on the stalled connection resume on the fresh one.
			a.log.Info("stalled router link replaced by a fresh connection", "router", router, "now", nextRouter)
			conn.CloseWithError(codeReplaced, "replaced by a fresh connection")
			go a.takeOver(ctx, next)
		} else if ctx.Err() != nil {
			// Its circuits end at the other agents at once: this process resumes nothing.
			conn.CloseWithError(codeStopping, "agent stopping")
		}
		cancel()
		lwg.Wait()
		if next == nil {
			ended = context.Cause(conn.Context())
			a.setConn(nil)
			a.noteRefusal(context.Cause(conn.Context()))
			a.setLink(router, stateDown, nil, context.Cause(conn.Context()))
			a.log.Warn("router link down", "router", router, "err", context.Cause(conn.Context()))
		} else if nextRouter != router {
			a.setLink(router, stateDown, nil, errors.New("replaced by a link to "+nextRouter))
			router = nextRouter
		}
		conn = next
	}
	return true, ended
}

// raceOrder lists the routers a stalled link to router races: router itself first, then
// the others the agent may use, so a router that died is left behind promptly.
func (a *Agent) raceOrder(router string) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := []string{router}
	for _, r := range a.routerList {
		if r != router {
			out = append(out, r)
		}
	}
	return out
}

// watch pings the router over conn until conn ends (it returns nil) or, once conn has
// stalled, a fresh connection wins the race against it (it returns that one and the
// router it reached).
func (a *Agent) watch(ctx context.Context, router string, conn *quic.Conn) (*quic.Conn, string) {
	var (
		mu        sync.Mutex
		lastHeard = time.Now()
		rtt       time.Duration
	)
	// Heartbeats are QUIC datagrams on circuit id 0, which the router echoes: unlike a
	// stream they are never held up behind a lost packet, so on a lossy radio a pong that
	// gets through proves the link works, whatever QUIC's retransmission timers say.
	pongs := a.watchPongs(conn)
	defer a.unwatchPongs(conn)
	var ledger heartbeatLedger // the pings' fates, which judge the link's loss
	go func() {
		for {
			select {
			case sent := <-pongs:
				ledger.answered(sent.UnixNano())
				mu.Lock()
				lastHeard = time.Now()
				rtt = time.Since(sent)
				mu.Unlock()
			case <-conn.Context().Done():
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() {
		tick := time.NewTicker(heartbeatEvery)
		defer tick.Stop()
		ping := make([]byte, 0, 16)
		for {
			now := time.Now().UnixNano()
			ping = binary.BigEndian.AppendUint64(append(ping[:0], heartbeatCID), uint64(now))
			ledger.sent(now)
			conn.SendDatagram(ping) // a full queue drops it: a lost ping is a lost ping
			select {
			case <-conn.Context().Done():
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()

	tick := time.NewTicker(heartbeatEvery)
	defer tick.Stop()
	var (
		racing    context.CancelFunc // set while fresh attempts race the stalled link
		raceWon   = make(chan raced, 1)
		raceEnded = make(chan struct{}, 1)
	)
	stopRace := func() {
		if racing != nil {
			racing()
			racing = nil
		}
	}
	defer stopRace()
	for {
		select {
		case <-ctx.Done():
			return nil, ""
		case <-conn.Context().Done():
			// A race already under way may still win: the link comes back on it.
			if racing == nil {
				return nil, ""
			}
			a.setLink(router, stateConnecting, conn, context.Cause(conn.Context()))
			select {
			case next := <-raceWon:
				return next.conn, next.router
			case <-raceEnded:
			case <-ctx.Done():
			case <-time.After(linkDialTimeout):
			}
			return nil, ""
		case next := <-raceWon:
			return next.conn, next.router
		case <-raceEnded:
			racing = nil
		case <-tick.C:
		}
		mu.Lock()
		silent, limit, wait := time.Since(lastHeard), max(stallAfter, 4*rtt), lossWait(rtt)
		mu.Unlock()
		if racing == nil {
			a.noteHeartbeats(ledger.settle(time.Now(), wait))
		}
		switch {
		case silent > limit && racing == nil:
			ledger.forget() // a black link is the stall's business, not loss
			a.log.Warn("router link stalled", "router", router, "silent", silent.Round(time.Millisecond))
			a.setLink(router, stateStalled, conn, fmt.Errorf("no answer for %s", silent.Round(time.Millisecond)))
			a.mu.Lock()
			a.stalls++
			a.mu.Unlock()
			rctx, cancel := context.WithCancel(ctx)
			racing = cancel
			go func() {
				next, to, err := a.race(rctx, a.raceOrder(router), conn)
				if err == nil && next != nil {
					if rctx.Err() != nil { // the old link recovered or the agent stops
						next.CloseWithError(codeReplaced, "not needed")
						return
					}
					raceWon <- raced{next, to}
					return
				}
				raceEnded <- struct{}{}
			}()
		case silent <= limit && racing != nil:
			a.log.Info("router link recovered", "router", router)
			ledger.forget() // the pings lost while it was black
			stopRace()
			a.setLink(router, stateUp, conn, nil)
		}
	}
}

// raced is a connection that won a race, and the router it reached.
type raced struct {
	conn   *quic.Conn
	router string
}

// race connects to one of routers, starting a fresh attempt every raceEvery (to each
// router in turn) until one succeeds or ctx ends; the first to finish its handshake wins
// and the others are abandoned. With no old link (a first connection) it stops starting
// attempts after linkDialTimeout and reports the last error, so the caller may back off
// or try another router; racing a stalled link goes on until the caller stops it.
func (a *Agent) race(ctx context.Context, routers []string, old *quic.Conn) (*quic.Conn, string, error) {
	giveUp := time.Now().Add(linkDialTimeout)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		raced
		err error
	}
	results := make(chan result)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		go func() { // close the losers that finish after the winner
			wg.Wait()
			close(results)
		}()
		go func() {
			for r := range results {
				if r.conn != nil {
					r.conn.CloseWithError(codeReplaced, "lost the race")
				}
			}
		}()
	}()
	attempt := 0
	start := func() {
		router := routers[attempt%len(routers)]
		attempt++
		wg.Go(func() {
			conn, err := a.connect(ctx, router)
			results <- result{raced{conn, router}, err}
		})
	}
	start()
	inFlight := 1
	tick := time.NewTicker(raceEvery)
	defer tick.Stop()
	var lastErr error
	for {
		select {
		case <-ctx.Done():
			return nil, "", ctx.Err()
		case <-tick.C:
			if old == nil && time.Now().After(giveUp) {
				if inFlight == 0 {
					return nil, "", lastErr
				}
				continue
			}
			start()
			inFlight++
		case r := <-results:
			inFlight--
			if r.err == nil {
				return r.conn, r.router, nil
			}
			lastErr = r.err
			if old == nil && attempt < len(routers) && !time.Now().After(giveUp) {
				start() // the next router at once: this one answered no
				inFlight++
				continue
			}
			if old == nil && inFlight == 0 && (!transport.HeardNothing(r.err) || time.Now().After(giveUp)) {
				return nil, "", r.err // refused, not lost: backing off is the caller's
			}
		}
	}
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
	conn, err := transport.DialConnected(dctx, router, tlsConf, a.profile)
	if err != nil {
		return nil, err
	}
	// The router checks our certificate once our side of the handshake is done, so only
	// its answer to Hello proves the link is accepted.
	var ack wire.HelloAck
	hello := wire.Hello{Version: wire.Version, Name: a.id.Name, Instance: a.instance}
	if err := a.request(dctx, conn, wire.TypeHello, hello, wire.TypeHelloAck, &ack); err != nil {
		conn.CloseWithError(0, "")
		return nil, err
	}
	return conn, nil
}

// takeOver tells the router on conn, a fresh connection that replaced a stalled one,
// to close the agent's others: the old one's close went out on a path that may be dead,
// and until the router drops it the circuits it carried (a UDP circuit this agent hosts,
// say) stay bound to it there.
func (a *Agent) takeOver(ctx context.Context, conn *quic.Conn) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	s, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return
	}
	s.SetDeadline(time.Now().Add(requestTimeout))
	if err := wire.Write(s, wire.TypeTakeOver, wire.TakeOver{}); err != nil {
		a.log.Warn("take over", "err", err)
	}
	s.Close()
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
// what it dials by intercept, again whenever the router says records changed and every
// serviceRefresh while the link is up (a notice lost with a dropped link is caught up on
// the next link, which fetches at once).
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
		case <-a.changed:
		}
	}
}

// servicesChanged asks manageServices to fetch the services now: the router said records
// changed. Several notices while one fetch is pending make one fetch.
func (a *Agent) servicesChanged() {
	select {
	case a.changed <- struct{}{}:
	default:
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
	select {
	case <-a.servicesKnown:
	default:
		close(a.servicesKnown)
	}
	a.mu.Unlock()
	hosted := map[string]bool{}
	intercepts := map[DialSpec]bool{}
	for _, s := range svcs {
		if addr, ok := a.cfg.Hosts[s.Name]; ok {
			s.Host = addr
		}
		if s.Bind && a.hostListener(s) != nil {
			hosted[s.Name] = true
			a.startHosting(ctx, wg, conn, s.Name)
		}
		if a.cfg.NoAutoServices {
			continue
		}
		if s.Dial && s.Intercept != "" {
			proto, addr, err := splitAddress(s.Intercept)
			if err != nil || checkLoopback(addr) != nil {
				a.log.Warn("intercept not on loopback, ignored", "service", s.Name, "intercept", s.Intercept)
				continue
			}
			d := DialSpec{Service: s.Name, Proto: proto, Listen: addr}
			intercepts[d] = true
			if err := a.startIntercept(d); err != nil {
				a.log.Warn("intercept", "service", s.Name, "err", err)
			}
		}
	}
	// What the agent may no longer do, it stops doing.
	a.mu.Lock()
	var unhosted, undelivered []string
	for name := range a.hosting {
		if !hosted[name] {
			unhosted = append(unhosted, name)
		}
	}
	for name, l := range a.listeners {
		if !hosted[name] && !l.program() {
			undelivered = append(undelivered, name)
		}
	}
	a.mu.Unlock()
	for _, name := range unhosted {
		a.stopHosting(name)
	}
	for _, name := range undelivered {
		a.stopHostAddress(name)
	}
	a.stopIntercepts(func(d DialSpec) bool { return intercepts[d] })
}

// hostListener returns the listener of s, a service this identity may bind: the
// program's, or else one the agent makes to deliver s to its host address (unless
// Config.NoAutoServices), moved to a new address when the service's changed (new
// circuits go there, those open stay where they are). Nil means s is not hosted here.
func (a *Agent) hostListener(s wire.ServiceInfo) *serviceListener {
	var proto, addr string
	if s.Host != "" && !a.cfg.NoAutoServices {
		var err error
		if proto, addr, err = splitAddress(s.Host); err != nil {
			a.log.Warn("host address", "service", s.Name, "err", err)
		}
	}
	a.mu.Lock()
	l := a.listeners[s.Name]
	switch {
	case l != nil && l.program():
		a.mu.Unlock()
		return l
	case addr == "":
		a.mu.Unlock()
		if l != nil {
			a.stopHostAddress(s.Name)
		}
		return nil
	case l != nil && l.proto == proto:
		moved := l.addr != addr
		l.addr = addr
		a.mu.Unlock()
		if moved {
			a.log.Info("hosting at a new address", "service", s.Name, "address", proto+":"+addr)
		}
		return l
	}
	old := l
	l = newServiceListener(a, s.Name, proto, addr)
	var udp *udpDelivery
	if proto == ProtoUDP {
		udp = newUDPDelivery(a, l)
	}
	a.listeners[s.Name] = l
	a.mu.Unlock()
	if old != nil {
		old.close() // the protocol changed: circuits of the old one are refused now
	}
	if udp != nil {
		a.run.Go(udp.serve)
	} else {
		a.run.Go(func() { a.serveHostAddress(l) })
	}
	return l
}

// stopHostAddress ends the agent's own delivery of service to its host address, if it
// has one; a program's listener stays.
func (a *Agent) stopHostAddress(service string) {
	a.mu.Lock()
	l := a.listeners[service]
	if l == nil || l.program() {
		a.mu.Unlock()
		return
	}
	delete(a.listeners, service)
	a.mu.Unlock()
	l.close()
}

// fetchRouters asks the controller which routers this identity may use. It presents the
// certificate whose key the agent holds open: a TPM or a secure element serves one
// session at a time, so opening the key a second time would wait on the first forever.
func (a *Agent) fetchRouters(ctx context.Context) ([]string, error) {
	c, err := api.NewClientWithCert(a.identityFile(), *a.currentCert())
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
	a.keepControllers(c.Controllers())
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

// heartbeatCID is the datagram circuit id of heartbeats: a one-byte varint 0, which no
// circuit uses. The router sends such datagrams straight back.
const heartbeatCID = 0

// watchPongs returns the channel the datagram reader delivers conn's heartbeat echoes
// on, as the times their pings were sent.
func (a *Agent) watchPongs(conn *quic.Conn) <-chan time.Time {
	ch := make(chan time.Time, 4)
	a.udpMu.Lock()
	a.pongs[conn] = ch
	a.udpMu.Unlock()
	return ch
}

func (a *Agent) unwatchPongs(conn *quic.Conn) {
	a.udpMu.Lock()
	delete(a.pongs, conn)
	a.udpMu.Unlock()
}

// pong hands a heartbeat echo arriving on conn to its watcher.
func (a *Agent) pong(conn *quic.Conn, body []byte) {
	if len(body) != 8 {
		return
	}
	sent := time.Unix(0, int64(binary.BigEndian.Uint64(body)))
	a.udpMu.Lock()
	ch := a.pongs[conn]
	a.udpMu.Unlock()
	select {
	case ch <- sent:
	default:
	}
}

// noteRefusal records whether the last link attempt ended in a refusal of the identity's
// certificate; a link that came up (err nil) clears it.
func (a *Agent) noteRefusal(err error) {
	refused := certRefused(err)
	a.mu.Lock()
	was := a.refused
	a.refused = refused
	a.mu.Unlock()
	if refused != was {
		a.log.Info("identity state", "revoked", refused)
	}
}

// identityRefused reports whether the routers refused this identity's certificate last
// time the agent tried.
func (a *Agent) identityRefused() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.refused
}
