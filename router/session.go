package router

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/umbranet/umbra/third_party/quic-go"

	"github.com/umbranet/umbra/internal/pki"
	"github.com/umbranet/umbra/internal/wire"
)

// Bounds of an agent's requests.
const (
	// requestTimeout bounds reading an agent's request and the controller's answer.
	requestTimeout = 15 * time.Second
	// bindRetry spaces the asks of a controller member that refuses a binding another
	// member accepted (it has not applied the records yet, or policies just changed).
	bindRetry = time.Second
)

// session is one agent's connection to this router.
type session struct {
	endpoint
	r      *Router
	peer   pki.Subject
	serial string
	leaf   []byte // the agent's certificate, DER
	// instance is the agent process's id from its Hello (wire.Hello.Instance), under
	// the router's mu; nil until then.
	instance []byte
	// helloed: the agent's Hello came on this connection, so instance says which process
	// it is (under the router's mu).
	helloed bool
	// unreachable: the agent's host answered port unreachable (under the router's mu).
	unreachable bool

	// lmu guards the QUIC counters at the last link report, which judge the loss since.
	lmu                sync.Mutex
	lastSent, lastLost uint64
	loss               float64
}

// linkState samples the agent's link for the controller's view of the fleet: QUIC's
// smoothed round trip and the share of packets lost since the last report.
func (s *session) linkState() wire.AgentLink {
	st := s.conn.ConnectionStats()
	s.lmu.Lock()
	defer s.lmu.Unlock()
	if sent := st.PacketsSent - s.lastSent; sent > 0 && st.PacketsLost >= s.lastLost {
		s.loss = float64(st.PacketsLost-s.lastLost) / float64(sent)
	}
	s.lastSent, s.lastLost = st.PacketsSent, st.PacketsLost
	return wire.AgentLink{Identity: s.peer.ID, RTTMicros: uint64(st.SmoothedRTT.Microseconds()), LossPermille: uint16(min(1000, s.loss*1000))}
}

func newSession(r *Router, conn *quic.Conn, peer pki.Subject, leaf *x509.Certificate) *session {
	s := &session{endpoint: newEndpoint(conn, 1, 1, &r.metrics.drops), r: r, peer: peer, serial: pki.SerialString(leaf), leaf: leaf.Raw}
	s.echoHeartbeats = true
	return s
}

// serve answers the streams the agent opens until the connection ends.
func (s *session) serve(ctx context.Context) {
	s.heard.Store(time.Now().UnixNano())
	go s.forwardDatagrams(ctx)
	go s.probeSilent()
	for {
		st, err := s.conn.AcceptStream(ctx)
		if err != nil {
			return
		}
		go s.serveStream(ctx, st)
	}
}

// serveStream dispatches one request of the agent.
func (s *session) serveStream(ctx context.Context, st *quic.Stream) {
	st.SetReadDeadline(time.Now().Add(requestTimeout))
	typ, body, err := wire.Read(st)
	if err != nil {
		st.CancelRead(0)
		st.Close()
		return
	}
	st.SetReadDeadline(time.Time{})
	switch typ {
	case wire.TypeHello:
		var hello wire.Hello
		if err := wire.Unmarshal(body, &hello); err != nil {
			refuse(st, wire.Refuse(wire.CodeMalformed, "malformed hello"))
			return
		}
		s.r.supersede(s, hello.Instance)
		wire.Write(st, wire.TypeHelloAck, wire.HelloAck{Version: wire.Version, Name: s.r.cfg.Identity.Name})
		st.Close()
	case wire.TypeServicesRequest:
		s.relayServices(ctx, st)
	case wire.TypeRenew:
		var req wire.Renew
		if err := wire.Unmarshal(body, &req); err != nil {
			refuse(st, wire.Refuse(wire.CodeMalformed, "malformed renew"))
			return
		}
		req.Identity, req.Cert = s.peer.ID, s.leaf
		cs, _, body, err := s.r.ask(ctx, wire.TypeRenew, req)
		if err != nil {
			refuse(st, err)
			return
		}
		cs.Close()
		var out wire.Renewed
		if err := wire.Unmarshal(body, &out); err != nil {
			refuse(st, errors.New("malformed answer from controller"))
			return
		}
		wire.Write(st, wire.TypeRenewed, out)
		st.Close()
	case wire.TypeBind:
		var req wire.Bind
		if err := wire.Unmarshal(body, &req); err != nil {
			refuse(st, wire.Refuse(wire.CodeMalformed, "malformed bind"))
			return
		}
		s.bind(ctx, st, req)
	case wire.TypeTakeOver:
		st.Close()
		st.CancelRead(0)
		s.r.takeOver(s)
	case wire.TypeDial:
		var req wire.Dial
		if err := wire.Unmarshal(body, &req); err != nil {
			refuse(st, wire.Refuse(wire.CodeMalformed, "malformed dial"))
			return
		}
		s.dial(ctx, st, req)
	default:
		refuse(st, wire.Refuse(wire.CodeMalformed, fmt.Sprintf("unexpected message type %d", typ)))
	}
}

// takeOver closes the agent's other connections to this router: s is a fresh one that
// replaced them, whose close the agent sent but a dead path may have lost. The circuits
// they carried fail at once and their agents resume them on s, rather than after the
// old connections' idle timeout.
func (r *Router) takeOver(s *session) {
	r.mu.Lock()
	var old []*session
	for _, o := range r.sessions {
		if o != s && o.peer.ID == s.peer.ID {
			old = append(old, o)
		}
	}
	r.mu.Unlock()
	for _, o := range old {
		r.log.Info("agent's replaced connection closed", "identity", s.peer.Name, "remote", o.conn.RemoteAddr().String())
		o.conn.CloseWithError(errCodeReplaced, "replaced by a fresh connection")
	}
}

// supersede records s's agent instance from its Hello and closes the connections of the
// same identity's other instances: the agent restarted, so the process that held them is
// gone and will resume nothing. Their circuits end at once at the other agents
// (StreamCircuitPeerGone) rather than after the old connections' idle timeout and the
// dialers' resume window. A Hello without an instance (an older agent) closes nothing.
func (r *Router) supersede(s *session, instance []byte) {
	r.mu.Lock()
	s.instance, s.helloed = instance, true
	var old []*session
	for _, o := range r.sessions {
		if len(instance) > 0 && o != s && o.peer.ID == s.peer.ID && len(o.instance) > 0 && !bytes.Equal(o.instance, instance) {
			old = append(old, o)
		}
	}
	r.mu.Unlock()
	for _, o := range old {
		r.log.Info("agent restarted: closing its old instance's connection", "identity", s.peer.Name, "remote", o.conn.RemoteAddr().String())
		o.conn.CloseWithError(errCodeGone, "agent restarted")
	}
}

// refuse answers a request with err, and the code of the refusal it wraps (see
// wire.ErrorOf), and closes its stream.
func refuse(st *quic.Stream, err error) {
	st.SetWriteDeadline(time.Now().Add(requestTimeout))
	wire.Write(st, wire.TypeError, wire.ErrorOf(err))
	st.Close()
	st.CancelRead(0)
}

// ask sends msg to a controller and returns the stream with the answer's type and body.
// It asks the preferred member and, when its control link fails the request, the next
// one up. The caller closes the stream.
func (r *Router) ask(ctx context.Context, typ wire.Type, msg any) (*quic.Stream, wire.Type, []byte, error) {
	cs, _, rt, body, err := r.askAny(ctx, typ, msg)
	return cs, rt, body, err
}

// askAny is ask that also returns the control link that answered.
func (r *Router) askAny(ctx context.Context, typ wire.Type, msg any) (*quic.Stream, *quic.Conn, wire.Type, []byte, error) {
	err := errNoController
	for _, conn := range r.controlConns() {
		var cs *quic.Stream
		var rt wire.Type
		var body []byte
		cs, rt, body, err = r.askOn(ctx, conn, typ, msg)
		if err == nil || !isNoController(err) || ctx.Err() != nil {
			return cs, conn, rt, body, err
		}
	}
	return nil, nil, 0, nil, err
}

// askOn is ask on one control link: an error that wraps errNoController means the link
// failed, any other is the controller's answer.
func (r *Router) askOn(ctx context.Context, conn *quic.Conn, typ wire.Type, msg any) (*quic.Stream, wire.Type, []byte, error) {
	cs, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, 0, nil, fmt.Errorf("%w: %v", errNoController, err)
	}
	cs.SetDeadline(time.Now().Add(requestTimeout))
	if err := wire.Write(cs, typ, msg); err != nil {
		cs.CancelRead(0)
		return nil, 0, nil, fmt.Errorf("%w: %v", errNoController, err)
	}
	rt, body, err := wire.Read(cs)
	if err != nil {
		cs.CancelRead(0)
		return nil, 0, nil, fmt.Errorf("%w: %v", errNoController, err)
	}
	cs.SetDeadline(time.Time{})
	if rt == wire.TypeError {
		var e wire.Error
		wire.Unmarshal(body, &e)
		cs.Close()
		return nil, rt, nil, &wire.Refusal{Code: e.Code, Message: e.Message}
	}
	return cs, rt, body, nil
}

// relayServices asks the controller what the agent may use and passes the answer on.
func (s *session) relayServices(ctx context.Context, st *quic.Stream) {
	cs, _, body, err := s.r.ask(ctx, wire.TypeServicesRequest, wire.ServicesRequest{Identity: s.peer.ID})
	if err != nil {
		refuse(st, err)
		return
	}
	cs.Close()
	var reply wire.ServicesReply
	if err := wire.Unmarshal(body, &reply); err != nil {
		refuse(st, errors.New("malformed answer from controller"))
		return
	}
	wire.Write(st, wire.TypeServicesReply, reply)
	st.Close()
}

// bind registers the agent as a host of req.Service for as long as its stream stays
// open. Every controller member the router has a control link to holds a lease on a
// control stream, so that each one's paths reach the host; a member whose link comes
// up later gets its lease then, and a revocation from any member ends the binding.
func (s *session) bind(ctx context.Context, st *quic.Stream, req wire.Bind) {
	req.Identity = s.peer.ID
	key := terminatorKey{service: req.Service, identity: s.peer.ID}
	agentGone := make(chan struct{})
	go func() {
		// The agent sends nothing more on a bind stream: a read ends when it closes.
		buf := make([]byte, 1)
		for {
			if _, err := st.Read(buf); err != nil {
				close(agentGone)
				return
			}
		}
	}()
	defer st.Close()
	cs, first, _, _, err := s.r.askAny(ctx, wire.TypeBind, req)
	if err != nil {
		refuse(st, fmt.Errorf("bind: %w", err))
		return
	}
	s.r.mu.Lock()
	s.r.terminators[key] = s
	s.r.mu.Unlock()
	defer func() {
		s.r.mu.Lock()
		if s.r.terminators[key] == s {
			delete(s.r.terminators, key)
		}
		s.r.mu.Unlock()
	}()
	wire.Write(st, wire.TypeBindAck, wire.BindAck{})
	s.r.log.Info("terminator bound", "service", req.Service, "identity", s.peer.Name)

	lctx, stopLeases := context.WithCancel(ctx)
	defer stopLeases()
	revoked := make(chan *wire.Revoke, 1)
	leases := map[*quic.Conn]bool{first: true}
	go s.r.holdLease(lctx, first, cs, req, revoked)
	for {
		up, _ := s.r.controlUp()
		for conn := range leases {
			if conn.Context().Err() != nil {
				delete(leases, conn)
			}
		}
		for _, conn := range s.r.controlConns() {
			if !leases[conn] {
				leases[conn] = true
				go s.r.holdLease(lctx, conn, nil, req, revoked)
			}
		}
		select {
		case <-agentGone:
			return
		case <-ctx.Done():
			return
		case rev := <-revoked:
			refuse(st, wire.Refuse(wire.CodeNotAuthorized, "bind revoked: "+rev.Reason))
			return
		case <-up:
		}
	}
}

// holdLease keeps the binding req registered with the controller on conn, starting on
// cs when that member already holds it, until ctx ends or conn drops. A member that
// refuses it (it may not have applied the records yet) is asked again every bindRetry;
// a revocation goes to revoked.
func (r *Router) holdLease(ctx context.Context, conn *quic.Conn, cs *quic.Stream, req wire.Bind, revoked chan<- *wire.Revoke) {
	for cs == nil {
		var err error
		cs, _, _, err = r.askOn(ctx, conn, wire.TypeBind, req)
		if err == nil {
			break
		}
		if isNoController(err) {
			return
		}
		r.log.Debug("bind: a controller refuses the lease; asking again", "service", req.Service, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-conn.Context().Done():
			return
		case <-time.After(bindRetry):
		}
	}
	defer releaseStream(cs)
	select {
	case <-ctx.Done():
	case rev := <-watchRevoke(cs):
		if rev != nil {
			select {
			case revoked <- rev:
			default:
			}
		}
		// Otherwise the control link dropped: the binding lives on, and the member gets
		// a new lease once its link is back.
	}
}

// watchRevoke reads a held control stream: it yields the Revoke the controller sends, or
// nil when the stream ends without one (the control link dropped).
func watchRevoke(cs *quic.Stream) <-chan *wire.Revoke {
	out := make(chan *wire.Revoke, 1)
	go func() {
		var rev wire.Revoke
		if err := wire.Expect(cs, wire.TypeRevoke, &rev); err != nil {
			out <- nil
			return
		}
		out <- &rev
	}()
	return out
}

func isNoController(err error) bool { return errors.Is(err, errNoController) }
