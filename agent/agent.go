package agent

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/umbranet/umbra/third_party/quic-go"

	"github.com/umbranet/umbra/internal/fec"
	"github.com/umbranet/umbra/internal/identity"
	"github.com/umbranet/umbra/internal/transport"
	"github.com/umbranet/umbra/internal/version"
	"github.com/umbranet/umbra/internal/wire"
)

// Agent is a running edge agent: New starts it, Close stops it. Its methods are safe for
// concurrent use.
type Agent struct {
	cfg    Config
	log    *slog.Logger
	id     *identity.File // the identity; renewal replaces its certificate, under mu
	idPath string         // where renewed certificates are written, "" for none
	// profile and udpFEC are the internal forms of cfg.LinkProfile and cfg.UDPFEC.
	profile transport.Profile
	udpFEC  fec.Config
	cert    tls.Certificate
	roots   *x509.CertPool
	signer  *ecdsa.PublicKey
	// closeKey releases the identity's key (a TPM or secure element session).
	closeKey func() error

	// runCtx and run bound everything that lives as long as the agent: links,
	// listeners, status. stop ends runCtx; closed is closed once Close has finished.
	runCtx   context.Context
	stop     context.CancelFunc
	run      sync.WaitGroup
	closing  sync.Once
	closeErr error
	// spawnMu orders goroutines a program's call starts (spawn) before Close's wait.
	spawnMu sync.Mutex
	closed  bool

	mu     sync.Mutex
	conn   *quic.Conn            // the link in use, nil while none is up
	linkUp chan struct{}         // closed and replaced whenever a link comes up
	links  map[string]*linkState // by router address
	// routerList is every router the agent may link to, in order of preference.
	routerList []string
	services   map[string]wire.ServiceInfo
	// servicesKnown is closed once the first list of services has arrived.
	servicesKnown chan struct{}
	// hostWake is closed and replaced whenever a binding's state changes.
	hostWake chan struct{}
	hosting  map[string]*hostState // by service name
	dialing  map[string]*dialState // by listen address
	// listeners are the services circuits are delivered to in process, by name: those
	// of Listen and ListenPacket, and those the agent delivers to host addresses itself.
	listeners map[string]*serviceListener
	// resumable holds the TCP circuits this agent hosts, by resumption token.
	resumable map[string]*hostedCircuit
	// changed wakes manageServices when the router says records changed.
	changed chan struct{}
	// started is when the agent began; refused, whether the routers last refused this
	// identity's certificate.
	started time.Time
	refused bool
	// linksUp and stalls count router links that came up and links found stalled.
	linksUp, stalls uint64
	// events are the subscriptions of Events.
	events map[chan Event]struct{}

	udpMu   sync.Mutex
	udpEnds map[*quic.Conn]map[uint64]*udpEnd // by link and datagram circuit id
	pongs   map[*quic.Conn]chan time.Time     // heartbeat echoes, by link
	udp     udpCounters                       // what UDP circuits carried and dropped
	early   earlyDatagrams                    // datagrams that came before their circuit's end

	// instance names this agent process to the routers (wire.Hello.Instance).
	instance []byte
	// signatures counts what the identity's key signed (TLS handshakes, renewal
	// requests).
	signatures atomic.Uint64

	// loss judges the router link by its heartbeats.
	loss lossWatch
}

// New checks cfg, opens the identity's key and starts the agent: it opens the status
// socket, metrics and dial listeners cfg asks for, learns its routers (from the
// controller unless cfg.Routers pins them) and keeps a link to one of them until Close.
// ctx bounds only this start; the agent runs until Close. Dial and Listen wait for the
// first link, so they may be called at once.
func New(ctx context.Context, cfg Config) (*Agent, error) {
	st, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	cred, err := cfg.Identity.file.Open(ctx)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	id := *cfg.Identity.file // renewal changes the agent's copy
	a := &Agent{
		cfg: cfg, log: cfg.Logger, id: &id, idPath: cfg.Identity.path, profile: st.profile, udpFEC: st.fec,
		roots: cred.Roots, signer: cred.Signer, closeKey: cred.Key.Close,
		linkUp: make(chan struct{}), links: map[string]*linkState{}, services: map[string]wire.ServiceInfo{},
		servicesKnown: make(chan struct{}), hostWake: make(chan struct{}),
		hosting: map[string]*hostState{}, dialing: map[string]*dialState{}, resumable: map[string]*hostedCircuit{},
		listeners: map[string]*serviceListener{}, events: map[chan Event]struct{}{},
		udpEnds: map[*quic.Conn]map[uint64]*udpEnd{}, pongs: map[*quic.Conn]chan time.Time{},
		changed:  make(chan struct{}, 1),
		instance: newInstance(),
	}
	a.cert = cred.Cert
	if s, ok := cred.Cert.PrivateKey.(crypto.Signer); ok {
		a.cert.PrivateKey = countingSigner{s, &a.signatures}
	}
	a.runCtx, a.stop = context.WithCancel(context.Background())
	if err := a.start(ctx); err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

// Close stops the agent: its links, listeners and every circuit end, and the identity's
// key is released. It returns once all of the agent's goroutines have ended. Calling it
// again does nothing.
func (a *Agent) Close() error {
	a.closing.Do(func() {
		a.spawnMu.Lock()
		a.closed = true
		a.spawnMu.Unlock()
		// The link closes as gone before the circuits wind down: the far agents then end
		// them at once (wire.ConnAgentGone) rather than read their closing streams as a
		// broken path to resume.
		a.closeLink()
		a.stop()
		a.run.Wait()
		a.closeEvents()
		a.closeErr = a.closeKey()
	})
	return a.closeErr
}

// countingSigner counts what the identity's key store signs, for the agent's metrics.
type countingSigner struct {
	crypto.Signer
	n *atomic.Uint64
}

func (s countingSigner) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	s.n.Add(1)
	return s.Signer.Sign(rand, digest, opts)
}

// spawn runs f as one of the agent's goroutines, unless the agent is closed (false): a
// program's call may race Close, which must not wait for goroutines that start after it.
func (a *Agent) spawn(f func()) bool {
	a.spawnMu.Lock()
	defer a.spawnMu.Unlock()
	if a.closed {
		return false
	}
	a.run.Go(f)
	return true
}

// start opens what cfg asks for locally, learns the routers and starts the links.
func (a *Agent) start(ctx context.Context) error {
	a.mu.Lock()
	a.started = time.Now()
	a.mu.Unlock()
	if a.cfg.StatusSocket != "" {
		ln, err := listenStatus(a.cfg.StatusSocket)
		if err != nil {
			return err
		}
		a.run.Go(func() { a.serveStatus(a.runCtx, ln) })
	}
	if a.cfg.Metrics != "" {
		if err := checkLoopback(a.cfg.Metrics); err != nil {
			return fmt.Errorf("agent: metrics: %w", err)
		}
		ln, err := net.Listen("tcp", a.cfg.Metrics)
		if err != nil {
			return fmt.Errorf("agent: metrics: %w", err)
		}
		a.run.Go(func() { a.serveMetrics(ln) })
	}
	for _, d := range a.cfg.Dials {
		if err := a.startDial(d); err != nil {
			return err
		}
	}
	routers := a.cfg.Routers
	if len(routers) == 0 {
		var err error
		if routers, err = a.fetchRouters(ctx); err != nil {
			return err
		}
	}
	a.log.Info("agent starting", "identity", a.id.Name, "routers", routers)
	a.run.Go(func() { a.renewLoop(a.runCtx) })
	a.run.Go(func() { a.runLinks(a.runCtx, routers) })
	return nil
}

// closeLink closes the link in use, if any, as an agent that stops does.
func (a *Agent) closeLink() {
	a.mu.Lock()
	conn := a.conn
	a.mu.Unlock()
	if conn != nil {
		conn.CloseWithError(codeStopping, "agent stopping")
	}
}

// setConn makes conn the link in use (nil: none) and wakes those waiting for one.
func (a *Agent) setConn(conn *quic.Conn) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.conn = conn
	if conn != nil {
		close(a.linkUp)
		a.linkUp = make(chan struct{})
	}
}

// waitConn returns the link in use, waiting for one until ctx ends.
func (a *Agent) waitConn(ctx context.Context) (*quic.Conn, error) {
	for {
		a.mu.Lock()
		conn, up := a.conn, a.linkUp
		a.mu.Unlock()
		if conn != nil && conn.Context().Err() == nil {
			return conn, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("no router link: %w", ctx.Err())
		case <-up:
		}
	}
}

// Identity states, as `umbra-agent status` shows them.
const (
	identityOK      = "ok"
	identityRevoked = "revoked"
)

// Status is what `umbra-agent status` prints, and what Agent.Status returns.
type Status struct {
	// Identity is the agent's identity name.
	Identity string `json:"identity"`
	// IdentityState is "ok", or "revoked" while the routers refuse the certificate (the
	// identity was deleted or re-enrolled elsewhere); the agent then retries slowly.
	IdentityState string `json:"identity_state"`
	// CertExpires is when the certificate in use expires (it is renewed at two thirds
	// of its life); Version, the agent's build.
	CertExpires time.Time `json:"cert_expires"`
	Version     string    `json:"version"`
	// UptimeSeconds is how long the agent has run.
	UptimeSeconds float64 `json:"uptime_s"`
	// LinksUp counts router links that came up (the first, then each reconnect or fresh
	// connection that replaced a stalled one); Stalls, links found silent.
	LinksUp uint64 `json:"links_up"`
	Stalls  uint64 `json:"stalls"`
	// KeyStore is where the identity's key lives (file, tpm, atecc608) and
	// KeySignatures what it has signed since the agent started.
	KeyStore      string `json:"key_store"`
	KeySignatures uint64 `json:"key_signatures"`
	// Links, Hosting and Dialing list the router links, the hosted services and the
	// local dial listeners, each sorted.
	Links   []LinkStatus    `json:"links"`
	Hosting []HostingStatus `json:"hosting"`
	Dialing []DialingStatus `json:"dialing"`
	// Datagrams is what the UDP circuits carried, dropped and recovered.
	Datagrams DatagramStatus `json:"datagrams"`
}

// LinkStatus is one router link.
type LinkStatus struct {
	Router string  `json:"router"`
	State  string  `json:"state"` // "up", "stalled", "connecting", "standby" or "down"
	RTTms  float64 `json:"rtt_ms"`
	// LossPercent is the share of the link's QUIC packets declared lost; BytesSent and
	// BytesReceived count what it carried each way (an up link only).
	LossPercent   float64 `json:"loss_percent"`
	BytesSent     uint64  `json:"bytes_sent"`
	BytesReceived uint64  `json:"bytes_received"`
	Error         string  `json:"error,omitempty"`
	// HeartbeatLossPct is the share of the agent's newest heartbeats (ten seconds' worth)
	// that did not come back: the link's round-trip loss.
	HeartbeatLossPct float64 `json:"heartbeat_loss_pct"`
	// Lossy is the heartbeats' verdict on the link (loss.go): while it holds, UDP
	// circuits add forward error correction unless Config.UDPFEC fixes it.
	Lossy bool `json:"lossy"`
}

// inProcess is the address status shows for a service the program serves itself.
const inProcess = "in-process"

// HostingStatus is one service this agent hosts.
type HostingStatus struct {
	// Service is the hosted service's name.
	Service string `json:"service"`
	// Address is PROTO:HOST:PORT where the agent delivers the service, or PROTO:in-process
	// for a service the program serves through Listen or ListenPacket.
	Address string `json:"address"`
	State   string `json:"state"` // "bound" or "binding"
	// Circuits counts the service's open circuits; Error is why the last binding ended.
	Circuits int `json:"circuits"`
	// Target is "reachable" or "unreachable: ERROR": whether the local address took the
	// last circuit (or the check when the binding came up); empty before either.
	Target string `json:"target,omitempty"`
	Error  string `json:"error,omitempty"`
}

// DialingStatus is one local listener for a service.
type DialingStatus struct {
	// Service is the service the listener reaches; Host, the hosting identity it asks
	// for ("" for any); Listen, PROTO:HOST:PORT it listens on.
	Service string `json:"service"`
	Host    string `json:"host,omitempty"`
	Listen  string `json:"listen"`
	// State is "listening", or "bind failed: ERROR" for an intercept address the agent
	// could not listen on (another program holds it, say).
	State string `json:"state"`
	// Circuits counts its open circuits; LastError is why the last dial failed.
	Circuits  int    `json:"circuits"`
	LastError string `json:"last_error,omitempty"`
}

// Status reports the agent's links, hosted services and dial listeners.
func (a *Agent) Status() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := Status{
		Identity: a.id.Name, IdentityState: identityOK, Version: version.Version,
		Links: []LinkStatus{}, Hosting: []HostingStatus{}, Dialing: []DialingStatus{},
	}
	if a.refused {
		st.IdentityState = identityRevoked
	}
	st.LinksUp, st.Stalls = a.linksUp, a.stalls
	st.KeySignatures = a.signatures.Load()
	st.KeyStore = a.id.Key.Store
	st.Datagrams = a.udp.status()
	if a.cert.Leaf != nil {
		st.CertExpires = a.cert.Leaf.NotAfter
	}
	if !a.started.IsZero() {
		st.UptimeSeconds = time.Since(a.started).Round(time.Second).Seconds()
	}
	for _, l := range a.links {
		ls := l.status()
		if l.conn != nil && l.state == stateUp {
			lossy, share := a.loss.state()
			ls.HeartbeatLossPct, ls.Lossy = 100*share, lossy
		}
		st.Links = append(st.Links, ls)
	}
	for _, h := range a.hosting {
		hs := HostingStatus{Service: h.service, State: h.state, Circuits: h.circuits, Target: h.target, Error: h.err}
		if l := a.listeners[h.service]; l != nil {
			hs.Address = l.proto + ":" + l.addr
			if l.program() {
				hs.Address = l.proto + ":" + inProcess
			}
		}
		st.Hosting = append(st.Hosting, hs)
	}
	for _, d := range a.dialing {
		state := dialListening
		if d.bindErr != "" {
			state = dialBindFailed + ": " + d.bindErr
		}
		st.Dialing = append(st.Dialing, DialingStatus{Service: d.spec.Service, Host: d.spec.Host, Listen: d.spec.Proto + ":" + d.spec.Listen, State: state, Circuits: d.circuits, LastError: d.lastErr})
	}
	sort.Slice(st.Links, func(i, j int) bool { return st.Links[i].Router < st.Links[j].Router })
	sort.Slice(st.Hosting, func(i, j int) bool { return st.Hosting[i].Service < st.Hosting[j].Service })
	sort.Slice(st.Dialing, func(i, j int) bool { return st.Dialing[i].Listen < st.Dialing[j].Listen })
	return st
}
