package controller

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/umbranet/umbra/third_party/quic-go"

	"github.com/umbranet/umbra/controller/events"
	"github.com/umbranet/umbra/controller/policy"
	"github.com/umbranet/umbra/controller/store"
	"github.com/umbranet/umbra/internal/grant"
	"github.com/umbranet/umbra/internal/heartbeat"
	"github.com/umbranet/umbra/internal/pki"
	"github.com/umbranet/umbra/internal/wire"
)

// errNoService is the one answer to a dial of a service that does not exist and of a
// service the dialer may not reach, so that a dialer cannot tell them apart.
const errNoService = "service not found or not authorized"

// binding is a hosting agent's terminator at a router, held by a control stream.
type binding struct {
	service  string // service id
	identity string // hosting identity id
	router   string // router id
	stream   *quic.Stream
}

// circuit is a granted circuit, held by a control stream until it ends: the stream of
// its dial, or, once the router's control link came back after a drop, the stream on
// which the router told this controller it carries the circuit (wire.Carry).
type circuit struct {
	grant  grant.Grant
	stream *quic.Stream

	// wmu serializes writes on stream: the answer and a revocation may race.
	wmu sync.Mutex
}

// send writes one message on the circuit's stream.
func (ci *circuit) send(typ wire.Type, msg any) error {
	ci.wmu.Lock()
	defer ci.wmu.Unlock()
	return wire.Write(ci.stream, typ, msg)
}

// revoke tells the router holding the circuit to end it.
func (ci *circuit) revoke(reason string) {
	ci.wmu.Lock()
	defer ci.wmu.Unlock()
	revokeStream(ci.stream, reason)
}

// serveRouterStream answers one request a router relays for an agent, or the router's
// heartbeats, which keep hb alive.
func (c *Controller) serveRouterStream(ctx context.Context, router pki.Subject, s *quic.Stream, hb *heartbeat.Monitor) {
	defer s.Close()
	s.SetReadDeadline(time.Now().Add(ctrlHelloTimeout))
	typ, body, err := wire.Read(s)
	if err != nil {
		return
	}
	s.SetReadDeadline(time.Time{})
	// refuse answers with err and the code of the refusal it wraps (wire.ErrorOf).
	refuse := func(err error) { wire.Write(s, wire.TypeError, wire.ErrorOf(err)) }
	malformed := func(what string) { refuse(wire.Refuse(wire.CodeMalformed, "malformed "+what)) }
	switch typ {
	case wire.TypeServicesRequest:
		var req wire.ServicesRequest
		if err := wire.Unmarshal(body, &req); err != nil {
			malformed("services request")
			return
		}
		reply, err := c.services(router.ID, req.Identity)
		if err != nil {
			refuse(err)
			return
		}
		wire.Write(s, wire.TypeServicesReply, reply)
	case wire.TypeBind:
		var req wire.Bind
		if err := wire.Unmarshal(body, &req); err != nil {
			malformed("bind")
			return
		}
		b, err := c.bind(router.ID, req)
		if err != nil {
			refuse(err)
			return
		}
		b.stream = s
		host := events.Event{Type: events.Hosting, Name: req.Service, Service: req.Service, Identity: c.identityName(b.identity)}
		c.event(host)
		c.hold(s, func() { c.bindings[b] = struct{}{} }, func() { delete(c.bindings, b) },
			func() error { return wire.Write(s, wire.TypeBindAck, wire.BindAck{}) })
		host.Type = events.HostingEnded
		c.event(host)
	case wire.TypeDial:
		var req wire.Dial
		if err := wire.Unmarshal(body, &req); err != nil {
			malformed("dial")
			return
		}
		g, signed, err := c.dial(router.ID, req)
		if err != nil {
			c.event(events.Event{Type: events.CircuitRefused, Name: req.Service, Service: req.Service, Identity: c.identityName(req.Identity), Reason: err.Error()})
			refuse(err)
			return
		}
		ci := &circuit{grant: g, stream: s}
		opened := events.Event{Type: events.CircuitOpened, Name: g.ServiceName, Service: g.ServiceName, Identity: c.identityName(g.Dialer), Circuit: g.Circuit, Path: c.routerNames(g.Routers)}
		c.event(opened)
		c.hold(s, func() { c.circuits[ci] = struct{}{} }, func() { delete(c.circuits, ci) },
			func() error { return ci.send(wire.TypeDialGrant, wire.DialGrant{Grant: signed}) })
		opened.Type = events.CircuitClosed
		c.event(opened)
		c.log.Debug("circuit ended", "circuit", g.Circuit)
	case wire.TypeCarry:
		var req wire.Carry
		if err := wire.Unmarshal(body, &req); err != nil {
			malformed("carry")
			return
		}
		g, err := c.carried(router.ID, req)
		if err != nil {
			refuse(err)
			return
		}
		ci := &circuit{grant: g, stream: s}
		c.hold(s, func() { c.circuits[ci] = struct{}{} }, func() { delete(c.circuits, ci) },
			func() error { return c.answerCarry(ci) })
		c.log.Debug("carried circuit ended", "circuit", g.Circuit)
	case wire.TypeLinkReport:
		var rep wire.LinkReport
		if err := wire.Unmarshal(body, &rep); err != nil {
			malformed("link report")
			return
		}
		c.setLinks(router.ID, rep)
	case wire.TypeLinkPing:
		// The router's heartbeats: they tell each side within a second that the other is
		// gone, and end with the control link.
		hb.Echo(s, body)
	case wire.TypeRenew:
		var req wire.Renew
		if err := wire.Unmarshal(body, &req); err != nil {
			malformed("renew")
			return
		}
		chain, err := c.renew(ctx, req)
		if err != nil {
			refuse(err)
			return
		}
		wire.Write(s, wire.TypeRenewed, wire.Renewed{Cert: chain})
	default:
		refuse(wire.Refuse(wire.CodeMalformed, fmt.Sprintf("unexpected message type %d", typ)))
	}
}

// errCircuitRevoked ends the hold of a carried circuit the policy no longer allows.
var errCircuitRevoked = errors.New("circuit no longer authorized")

// carried checks a circuit a router says it carries: the grant must be this
// controller's, for a path that starts at that router. Its expiry does not matter: it
// bounded the circuit's setup, not its life.
func (c *Controller) carried(routerID string, req wire.Carry) (grant.Grant, error) {
	g, err := grant.VerifySignature(req.Grant, &c.ca.SignerKey().PublicKey)
	if err != nil {
		return g, fmt.Errorf("carry: %w", err)
	}
	if len(g.Routers) == 0 || g.Routers[0] != routerID {
		return g, errors.New("carry: the grant's path does not start at this router")
	}
	return g, nil
}

// answerCarry re-checks a carried circuit, already registered so that no deletion can
// slip between the check and the registration, against the current policy: the router
// is told to end it at once, or that it is held.
func (c *Controller) answerCarry(ci *circuit) error {
	pol, err := policy.Load(c.store)
	if err != nil {
		return fmt.Errorf("carry: load policies: %w", err)
	}
	if !c.circuitAllowed(pol, ci.grant) {
		c.log.Info("carried circuit revoked", "circuit", ci.grant.Circuit, "service", ci.grant.ServiceName)
		ci.revoke(errCircuitRevoked.Error())
		return errCircuitRevoked
	}
	c.log.Debug("carried circuit held", "circuit", ci.grant.Circuit, "service", ci.grant.ServiceName)
	return ci.send(wire.TypeCarryAck, wire.CarryAck{})
}

// renew issues an identity a new certificate for the key it already holds: the current,
// unrevoked certificate and a CSR over the same key prove it.
func (c *Controller) renew(ctx context.Context, req wire.Renew) (string, error) {
	cur, err := x509.ParseCertificate(req.Cert)
	if err != nil {
		return "", errors.New("renew: no current certificate")
	}
	if _, err := pki.Verify([]*x509.Certificate{cur, c.ca.Intermediate}, c.ca.Roots(), x509.ExtKeyUsageClientAuth); err != nil {
		return "", fmt.Errorf("renew: %w", err)
	}
	// Any unexpired, unrevoked certificate of the identity renews, not only the newest: an
	// agent that never received its last renewal must not be locked out.
	subj, err := pki.SubjectOf(cur)
	if err != nil || subj.ID != req.Identity {
		return "", errors.New("renew: certificate names another identity")
	}
	id, err := c.identityByID(subj.ID)
	if err != nil {
		return "", errors.New("renew: identity unknown or deleted")
	}
	if revoked, _ := c.store.Revoked(pki.SerialString(cur)); revoked {
		return "", errors.New("renew: certificate revoked")
	}
	csr, err := x509.ParseCertificateRequest(req.CSR)
	if err != nil || csr.CheckSignature() != nil || !pki.SameKey(csr.PublicKey, cur.PublicKey) {
		return "", errors.New("renew: the CSR must be signed by the certificate's own key")
	}
	now := c.cfg.Now()
	cert, err := c.ca.IssueFor(pki.Subject{Kind: pki.KindIdentity, ID: id.ID, Name: id.Name}, csr.PublicKey, c.cfg.IdentityLifetime, now)
	if err != nil {
		return "", err
	}
	cmd := store.Command{Op: store.OpSetCert, Kind: store.Identities, Name: id.Name, Cert: certInfo(cert), At: now.UTC()}
	if err := c.store.Apply(ctx, cmd); err != nil {
		return "", fmt.Errorf("renew: %w", err)
	}
	c.log.Info("renewed", "identity", id.Name, "serial", pki.SerialString(cert), "not_after", cert.NotAfter)
	return string(c.ca.ChainFor(cert)), nil
}

// hold registers what a stream set up, answers, and keeps it registered until the router
// closes the stream (the binding or circuit ended) or its link drops.
func (c *Controller) hold(s *quic.Stream, add, remove func(), answer func() error) {
	c.mu.Lock()
	add()
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		remove()
		c.mu.Unlock()
	}()
	if answer() != nil {
		return
	}
	// Nothing more is expected from the router on this stream; a read ends when it closes.
	buf := make([]byte, 1)
	for {
		if _, err := s.Read(buf); err != nil {
			return
		}
	}
}

// identityName names the identity with id for events and logs; an unknown one is shown
// by its id.
func (c *Controller) identityName(id string) string {
	if rec, err := c.identityByID(id); err == nil {
		return rec.Name
	}
	return id
}

// routerNames names the routers of a path for events and logs.
func (c *Controller) routerNames(ids []string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id
		if rt, err := c.routerByID(id); err == nil {
			out[i] = rt.Name
		}
	}
	return out
}

func (c *Controller) identityByID(id string) (store.Identity, error) {
	var rec store.Identity
	err := c.store.GetByID(store.Identities, id, &rec)
	return rec, err
}

func (c *Controller) routerByID(id string) (store.Router, error) {
	var rec store.Router
	err := c.store.GetByID(store.Routers, id, &rec)
	return rec, err
}

// services lists what identity may dial and bind, if it may use the router at all.
func (c *Controller) services(routerID, identityID string) (wire.ServicesReply, error) {
	var reply wire.ServicesReply
	id, _, pol, err := c.edgeContext(routerID, identityID)
	if err != nil {
		return reply, err
	}
	acc, err := pol.Services(c.store, id)
	if err != nil {
		return reply, err
	}
	reply.Services = []wire.ServiceInfo{}
	for _, a := range acc {
		reply.Services = append(reply.Services, wire.ServiceInfo{
			Name: a.Service.Name, ID: a.Service.ID, Host: a.Service.Host, Intercept: a.Service.Intercept,
			Dial: a.Dial, Bind: a.Bind,
		})
	}
	return reply, nil
}

// edgeContext loads an identity, the router it speaks through and the policies, and
// checks that the identity may use that router.
func (c *Controller) edgeContext(routerID, identityID string) (store.Identity, store.Router, *policy.Policies, error) {
	id, err := c.identityByID(identityID)
	if err != nil {
		return id, store.Router{}, nil, wire.Refuse(wire.CodeNotAuthorized, "identity unknown or deleted")
	}
	c.markSeen(id, routerID)
	r, err := c.routerByID(routerID)
	if err != nil {
		return id, r, nil, errors.New("router unknown or deleted")
	}
	pol, err := policy.Load(c.store)
	if err != nil {
		return id, r, nil, err
	}
	if !pol.MayUseRouter(id, r) {
		return id, r, nil, wire.Refuse(wire.CodeNotAuthorized, fmt.Sprintf("identity %q may not use router %q", id.Name, r.Name))
	}
	return id, r, pol, nil
}

func (c *Controller) bind(routerID string, req wire.Bind) (*binding, error) {
	id, _, pol, err := c.edgeContext(routerID, req.Identity)
	if err != nil {
		return nil, err
	}
	var svc store.Service
	if err := c.store.Get(store.Services, req.Service, &svc); err != nil || !pol.Allowed(store.PolicyBind, id, svc) {
		return nil, fmt.Errorf("bind %q: %w", req.Service, wire.Refuse(wire.CodeNotAuthorized, errNoService))
	}
	c.log.Info("bound", "service", svc.Name, "identity", id.Name)
	return &binding{service: svc.ID, identity: id.ID, router: routerID}, nil
}

// dial checks the dialer's right, picks a host bound at the dialer's router and signs
// the grant.
func (c *Controller) dial(routerID string, req wire.Dial) (grant.Grant, []byte, error) {
	var g grant.Grant
	dialer, _, pol, err := c.edgeContext(routerID, req.Identity)
	if err != nil {
		return g, nil, err
	}
	var svc store.Service
	if err := c.store.Get(store.Services, req.Service, &svc); err != nil || !pol.Allowed(store.PolicyDial, dialer, svc) {
		return g, nil, wire.Refuse(wire.CodeNotAuthorized, errNoService)
	}
	if proto, _, _ := strings.Cut(svc.Host, ":"); svc.Host != "" && proto != req.Proto {
		return g, nil, wire.Refuse(wire.CodeBadRequest, fmt.Sprintf("service %q is %s, not %s", svc.Name, proto, req.Proto))
	}
	host, path, err := c.pickHost(svc, req.Host, routerID, pol)
	if err != nil {
		return g, nil, err
	}
	g = grant.Grant{
		Circuit: newID(), Op: grant.OpDial, Service: svc.ID, ServiceName: svc.Name, Proto: req.Proto,
		Dialer: dialer.ID, Host: host, Routers: path,
		Expires: c.cfg.Now().Add(grant.Lifetime).Unix(),
	}
	signed, err := grant.Sign(g, c.ca.SignerKey())
	if err != nil {
		return g, nil, err
	}
	c.log.Info("circuit granted", "service", svc.Name, "dialer", dialer.Name, "circuit", g.Circuit)
	return g, signed, nil
}

// pickHost finds an identity bound to svc (named hostName, or with that id, if given)
// that may still bind it, and the cheapest path to it from routerID through the mesh:
// a host bound at routerID itself needs no relay.
func (c *Controller) pickHost(svc store.Service, hostName, routerID string, pol *policy.Policies) (string, []string, error) {
	c.mu.Lock()
	var candidates []*binding
	for b := range c.bindings {
		if b.service == svc.ID {
			candidates = append(candidates, b)
		}
	}
	c.mu.Unlock()
	hosts := map[string][]string{} // router id → hosting identity ids
	for _, b := range candidates {
		host, err := c.identityByID(b.identity)
		if err != nil || (hostName != "" && host.Name != hostName && host.ID != hostName) || !pol.Allowed(store.PolicyBind, host, svc) {
			continue
		}
		hosts[b.router] = append(hosts[b.router], host.ID)
	}
	if len(hosts) == 0 {
		if hostName != "" {
			return "", nil, fmt.Errorf("no host %q online for service %q", hostName, svc.Name)
		}
		return "", nil, fmt.Errorf("no host online for service %q", svc.Name)
	}
	pick := func(router string) string {
		ids := hosts[router]
		slices.Sort(ids)
		return ids[0]
	}
	if _, ok := hosts[routerID]; ok {
		c.metrics.paths.WithLabelValues(pathLocal).Inc()
		return pick(routerID), []string{routerID}, nil
	}
	g, err := c.graph()
	if err != nil {
		return "", nil, fmt.Errorf("mesh: %w", err)
	}
	ends := slices.Sorted(maps.Keys(hosts))
	p, err := g.Shortest(routerID, ends)
	if err != nil {
		c.metrics.paths.WithLabelValues(pathNone).Inc()
		return "", nil, fmt.Errorf("no path through the mesh to a host of service %q", svc.Name)
	}
	c.metrics.paths.WithLabelValues(pathMesh).Inc()
	return pick(p.Routers[len(p.Routers)-1]), p.Routers, nil
}

// enforce ends every binding and circuit the current records no longer allow, and tells
// every router which certificates are now revoked. It runs after every deletion.
func (c *Controller) enforce(ctx context.Context) {
	if !c.enforceHeld() {
		return
	}
	c.mu.Lock()
	var conns []*quic.Conn
	for _, st := range c.online {
		conns = append(conns, st.conn)
	}
	c.mu.Unlock()
	revs, err := c.store.Revocations()
	if err != nil || len(revs) == 0 {
		return
	}
	msg := wire.Revoke{Reason: "certificates revoked"}
	for _, r := range revs {
		msg.Serials = append(msg.Serials, r.Serial)
	}
	c.push(ctx, conns, wire.TypeRevoke, msg)
}

// enforceHeld ends the bindings and circuits this member holds that the current
// records no longer allow. It reports whether the policies loaded.
func (c *Controller) enforceHeld() bool {
	pol, err := policy.Load(c.store)
	if err != nil {
		c.log.Error("enforce: load policies", "err", err)
		return false
	}
	c.mu.Lock()
	var bs []*binding
	for b := range c.bindings {
		bs = append(bs, b)
	}
	var cs []*circuit
	for ci := range c.circuits {
		cs = append(cs, ci)
	}
	c.mu.Unlock()

	for _, b := range bs {
		if !c.stillAllowed(pol, store.PolicyBind, b.identity, b.service, b.router) {
			revokeStream(b.stream, "binding no longer authorized")
		}
	}
	for _, ci := range cs {
		if !c.circuitAllowed(pol, ci.grant) {
			c.log.Info("circuit revoked", "circuit", ci.grant.Circuit, "service", ci.grant.ServiceName)
			ci.revoke(errCircuitRevoked.Error())
		}
	}
	return true
}

// announceChanged tells every online router, and through them every agent, that records
// changed: agents ask for their services again and host, stop hosting, open and close
// intercepts as the answer says.
func (c *Controller) announceChanged(ctx context.Context) {
	c.mu.Lock()
	var conns []*quic.Conn
	for _, st := range c.online {
		conns = append(conns, st.conn)
	}
	c.mu.Unlock()
	c.push(ctx, conns, wire.TypeChanged, wire.Changed{})
}

// push sends msg on a stream of its own over each of conns, in the background.
func (c *Controller) push(ctx context.Context, conns []*quic.Conn, typ wire.Type, msg any) {
	for _, conn := range conns {
		go func() {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ctrlHelloTimeout)
			defer cancel()
			s, err := conn.OpenStreamSync(ctx)
			if err != nil {
				return
			}
			wire.Write(s, typ, msg)
			s.Close()
		}()
	}
}

// circuitAllowed reports whether the policy still lets g's dialer dial its service at
// the path's first router and its host bind it at the last.
func (c *Controller) circuitAllowed(pol *policy.Policies, g grant.Grant) bool {
	if len(g.Routers) == 0 {
		return false
	}
	return c.stillAllowed(pol, store.PolicyDial, g.Dialer, g.Service, g.Routers[0]) &&
		c.stillAllowed(pol, store.PolicyBind, g.Host, g.Service, g.Routers[len(g.Routers)-1])
}

func (c *Controller) stillAllowed(pol *policy.Policies, op, identityID, serviceID, routerID string) bool {
	id, err := c.identityByID(identityID)
	if err != nil {
		return false
	}
	var svc store.Service
	if err := c.store.GetByID(store.Services, serviceID, &svc); err != nil {
		return false
	}
	r, err := c.routerByID(routerID)
	if err != nil {
		return false
	}
	return pol.Allowed(op, id, svc) && pol.MayUseRouter(id, r)
}

func revokeStream(s *quic.Stream, reason string) {
	s.SetWriteDeadline(time.Now().Add(ctrlHelloTimeout))
	wire.Write(s, wire.TypeRevoke, wire.Revoke{Reason: reason})
	s.CancelRead(0)
}
