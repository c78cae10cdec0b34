package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Hosting in process: every service this agent hosts has a serviceListener, to which
// hostCircuit hands each circuit once its end-to-end handshake is done. A program's
// Listen or ListenPacket makes one; so does the agent itself for a service it delivers
// to its host address (umbra-agent's hosting, unless Config.NoAutoServices), whose
// TCP circuits it takes from the listener like any program would and splices to the
// address.
const (
	// acceptBacklog is how many TCP circuits wait for Accept at once.
	acceptBacklog = 64
	// acceptWait is how long a circuit waits in a full backlog before it is refused.
	acceptWait = dialSetupTimeout
)

// ErrNoService is the error of Listen and ListenPacket for a service that does not
// exist or that this identity may not bind: the two read the same, as for a dial.
var ErrNoService = errors.New("no such service, or this identity may not bind it")

// errListenerClosed is Accept's error once its listener is closed.
var errListenerClosed = fmt.Errorf("agent: listener closed: %w", net.ErrClosed)

// serviceListener is one hosted service's circuits on their way to whoever serves them.
type serviceListener struct {
	a       *Agent
	service string
	proto   string
	// addr is the host address the agent delivers the service to itself, "" for a
	// program's listener; guarded by a.mu (the service may move).
	addr string
	// conns carries TCP circuits to Accept; packets is a UDP listener's state.
	conns   chan *Conn
	packets *PacketListener
	// isProgram: a program's Listen made l (addr is empty and stays so).
	isProgram bool
	done      chan struct{}
	once      sync.Once
}

func newServiceListener(a *Agent, service, proto, addr string) *serviceListener {
	return &serviceListener{a: a, service: service, proto: proto, addr: addr, isProgram: addr == "", conns: make(chan *Conn, acceptBacklog), done: make(chan struct{})}
}

// program reports whether a program (not the agent's host-address delivery) serves l.
// It is fixed when l is made, so it needs no lock (addr, which a.mu guards, may move).
func (l *serviceListener) program() bool { return l.isProgram }

// deliver hands c to Accept, waiting at most acceptWait; false means c was not taken.
func (l *serviceListener) deliver(ctx context.Context, c *Conn) bool {
	t := time.NewTimer(acceptWait)
	defer t.Stop()
	select {
	case l.conns <- c:
		return true
	case <-l.done:
	case <-ctx.Done():
	case <-t.C:
	}
	return false
}

// accept waits for the next circuit.
func (l *serviceListener) accept(ctx context.Context) (*Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
	case <-ctx.Done():
	}
	// A circuit that arrived as the listener closed is not left open.
	select {
	case c := <-l.conns:
		return c, nil
	default:
	}
	return nil, errListenerClosed
}

// close stops l taking circuits and closes those waiting for Accept.
func (l *serviceListener) close() {
	l.once.Do(func() {
		close(l.done)
		for {
			select {
			case c := <-l.conns:
				c.Close()
			default:
				return
			}
		}
	})
}

// Listener is a service this program hosts: a net.Listener with no socket. Each Accept
// yields one circuit, a *Conn whose Identity is the dialer's.
type Listener struct {
	l    *serviceListener
	addr Addr
}

// Accept waits for the next circuit of the service and returns it, a *Conn.
func (ln *Listener) Accept() (net.Conn, error) {
	c, err := ln.l.accept(ln.l.a.runCtx)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Close stops hosting the service: the agent ends its binding at the router and new
// circuits are refused; circuits already accepted run on.
func (ln *Listener) Close() error {
	ln.l.a.unlisten(ln.l)
	return nil
}

// Addr is the service and this agent's identity.
func (ln *Listener) Addr() net.Addr { return &ln.addr }

// Listen hosts service in this program: the agent binds it at its router (now, and on
// every link after) and Accept yields each circuit a dialer opens to it. No socket is
// opened. Listen returns once the binding is up, or fails when ctx ends first, or at
// once with ErrNoService when the controller lists no such service for this identity to
// bind. A service the agent delivers to its host address is taken over. Only one
// listener per service at a time.
func (a *Agent) Listen(ctx context.Context, service string) (*Listener, error) {
	l, err := a.listenProgram(ctx, service, ProtoTCP)
	if err != nil {
		return nil, err
	}
	return &Listener{l: l, addr: Addr{Service: service, Identity: a.id.Name}}, nil
}

// listenProgram registers a program's listener for service and waits for its binding.
func (a *Agent) listenProgram(ctx context.Context, service, proto string) (*serviceListener, error) {
	if err := a.waitServices(ctx); err != nil {
		return nil, fmt.Errorf("agent: listen %s: %w", service, err)
	}
	a.mu.Lock()
	if s, ok := a.services[service]; !ok || !s.Bind {
		a.mu.Unlock()
		return nil, fmt.Errorf("agent: listen %s: %w", service, ErrNoService)
	}
	old := a.listeners[service]
	if old != nil && old.program() {
		a.mu.Unlock()
		return nil, fmt.Errorf("agent: listen %s: the program listens on it already", service)
	}
	l := newServiceListener(a, service, proto, "")
	if proto == ProtoUDP {
		l.packets = newPacketListener(l, nil)
	}
	a.listeners[service] = l
	a.mu.Unlock()
	if old != nil {
		old.close() // the agent's own delivery to the host address yields
	}
	a.servicesChanged()
	if err := a.waitBound(ctx, service); err != nil {
		a.unlisten(l)
		return nil, fmt.Errorf("agent: listen %s: %w", service, err)
	}
	return l, nil
}

// unlisten removes l and ends its service's binding; the next service refresh may give
// the service back to its host address.
func (a *Agent) unlisten(l *serviceListener) {
	a.mu.Lock()
	mine := a.listeners[l.service] == l
	if mine {
		delete(a.listeners, l.service)
	}
	a.mu.Unlock()
	l.close()
	if l.packets != nil {
		l.packets.closeAll()
	}
	if mine {
		a.stopHosting(l.service)
		a.servicesChanged()
	}
}

// listenerFor returns the listener circuits of service go to, nil for none.
func (a *Agent) listenerFor(service string) *serviceListener {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.listeners[service]
}

// waitServices waits until the agent has learned which services it may use.
func (a *Agent) waitServices(ctx context.Context) error {
	select {
	case <-a.servicesKnown:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("services not known yet (no router link): %w", ctx.Err())
	case <-a.runCtx.Done():
		return errAgentClosed
	}
}

// errAgentClosed is the error of calls on an agent that Close has stopped.
var errAgentClosed = fmt.Errorf("agent: closed: %w", net.ErrClosed)

// waitBound waits until service is bound at the router.
func (a *Agent) waitBound(ctx context.Context, service string) error {
	for {
		a.mu.Lock()
		h, wake := a.hosting[service], a.hostWake
		bound := h != nil && h.state == hostBound
		var last string
		if h != nil {
			last = h.err
		}
		a.mu.Unlock()
		if bound {
			return nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			if last != "" {
				return fmt.Errorf("not bound (%s): %w", last, ctx.Err())
			}
			return fmt.Errorf("not bound: %w", ctx.Err())
		case <-a.runCtx.Done():
			return errAgentClosed
		}
	}
}

// wakeHosting wakes those waiting for a binding's state to change; a.mu is held.
func (a *Agent) wakeHostingLocked() {
	close(a.hostWake)
	a.hostWake = make(chan struct{})
}

// serveHostAddress delivers each TCP circuit of l to the service's host address until
// l closes: umbra-agent's hosting, through the same listener a program would use.
func (a *Agent) serveHostAddress(l *serviceListener) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := l.accept(a.runCtx)
		if err != nil {
			return
		}
		wg.Go(func() {
			defer c.Close()
			a.mu.Lock()
			addr := l.addr
			a.mu.Unlock()
			if err := deliverTCP(a.runCtx, c, l.service, addr, func(err error) { a.noteTarget(l.service, err) }); err != nil {
				a.log.Warn("circuit", "service", l.service, "err", err)
			}
		})
	}
}

// udpDelivery is the agent's delivery of a UDP service's circuits to its host address,
// through the service's PacketListener as a program would serve it: each circuit gets a
// connected socket of its own, so the service tells circuits apart by their source port
// and its answers go back on the circuit they belong to.
type udpDelivery struct {
	a *Agent
	l *serviceListener

	mu    sync.Mutex
	socks map[circuitKey]net.Conn
	wg    sync.WaitGroup
}

// newUDPDelivery gives l, a UDP service's listener for its host address, its
// PacketListener; serve then delivers its circuits.
func newUDPDelivery(a *Agent, l *serviceListener) *udpDelivery {
	d := &udpDelivery{a: a, l: l, socks: map[circuitKey]net.Conn{}}
	l.packets = newPacketListener(l, d.ended)
	return d
}

// serve passes each circuit's datagrams to its socket until the listener closes, and
// then ends the circuits it delivered.
func (d *udpDelivery) serve() {
	pl := d.l.packets
	defer d.wg.Wait()
	defer pl.closeAll()
	defer d.closeAll()
	buf := make([]byte, maxUDPPayload)
	for {
		n, from, err := pl.ReadFrom(buf)
		if err != nil {
			return
		}
		s := d.socket(from.(*Addr))
		if s == nil {
			continue
		}
		// An error is the service not listening yet (ICMP port unreachable), or the
		// circuit ending: the datagram is lost either way, as on a plain UDP path.
		s.Write(buf[:n])
	}
}

// socket returns the socket of the circuit at from, connecting one for its first
// datagram; nil when the circuit has ended or the address does not resolve.
func (d *udpDelivery) socket(from *Addr) net.Conn {
	key := circuitKey{from.Identity, from.Circuit}
	d.mu.Lock()
	defer d.mu.Unlock()
	if s := d.socks[key]; s != nil {
		return s
	}
	// Checked under d.mu: a circuit that ends from here on finds its socket in ended.
	if !d.l.packets.live(from) {
		return nil
	}
	d.a.mu.Lock()
	addr := d.l.addr // new circuits go where the service is now
	d.a.mu.Unlock()
	s, err := net.Dial("udp", addr)
	if err != nil {
		d.a.udp.drop(udpDropSendError, 1)
		d.a.log.Warn("circuit", "service", d.l.service, "err", fmt.Errorf("deliver to %s: %w", addr, err))
		return nil
	}
	d.socks[key] = s
	d.wg.Go(func() { d.answer(s, from) })
	return s
}

// answer sends what the service writes on s back on the circuit at to, until the
// circuit ends.
func (d *udpDelivery) answer(s net.Conn, to *Addr) {
	buf := make([]byte, maxUDPPayload)
	for {
		n, err := s.Read(buf)
		if err != nil {
			if isRefused(err) {
				continue // nothing listens yet at the service's address
			}
			return
		}
		if _, err := d.l.packets.WriteTo(buf[:n], to); err != nil {
			return
		}
	}
}

// ended closes the socket of a circuit that has ended.
func (d *udpDelivery) ended(from *Addr) {
	key := circuitKey{from.Identity, from.Circuit}
	d.mu.Lock()
	defer d.mu.Unlock()
	if s := d.socks[key]; s != nil {
		s.Close()
		delete(d.socks, key)
	}
}

// closeAll closes every circuit's socket.
func (d *udpDelivery) closeAll() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for key, s := range d.socks {
		s.Close()
		delete(d.socks, key)
	}
}
