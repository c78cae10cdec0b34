// Package controller is the ground station's brain: it owns the CA, the store of
// identities, routers, services and policies, enrolls devices and routers with one-time
// tokens, and serves the management API to admins over HTTPS with mutual TLS. It never
// carries application data.
package controller

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/umbranet/umbra/controller/ca"
	"github.com/umbranet/umbra/controller/cluster"
	"github.com/umbranet/umbra/controller/events"
	"github.com/umbranet/umbra/controller/store"
	"github.com/umbranet/umbra/hal/keystore"
	"github.com/umbranet/umbra/internal/enroll"
	"github.com/umbranet/umbra/internal/identity"
	"github.com/umbranet/umbra/internal/pki"
	"github.com/umbranet/umbra/internal/role"
	"github.com/umbranet/umbra/internal/wire"
)

// Files in the controller's data directory.
const (
	configFile = "controller.json"
	storeFile  = "umbra.db"
	// eventsFile is the audit trail (events.log.1 beside it once rotated).
	eventsFile = "events.log"
	pkiDir     = "pki"
	// raftDir holds the Raft log and snapshots.
	raftDir = "raft"
	// AdminFile is where init writes the first admin identity.
	AdminFile = "admin.json"
)

// Server timeouts of the management API.
const (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 16 << 10
	shutdownGrace     = 3 * time.Second
)

// DefaultName names the controller Init makes: the first member of its cluster.
const DefaultName = "controller1"

// Timeouts of the short-lived Raft that Init runs: a cluster of one that contacts
// nobody elects itself at once instead of after a heartbeat timeout.
const (
	initHeartbeatTimeout = 50 * time.Millisecond
	initLeaseTimeout     = 50 * time.Millisecond
	// initLeaderWait bounds Init's wait for its own election.
	initLeaderWait = 30 * time.Second
)

// Config is what a controller needs to run. Zero durations take the defaults named.
type Config struct {
	// DataDir holds controller.json, the store and the PKI.
	DataDir string `json:"-"`
	// Name is the controller's name in its cluster (DefaultName for the controller
	// Init makes; a joining controller gets the name its token was made for).
	Name string `json:"name,omitempty"`
	// Joined is set on a controller that joined a cluster: it never bootstraps one.
	Joined bool `json:"joined,omitempty"`
	// Peers are the addresses (HOST:PORT) of the members a joined controller asks to
	// add it, on its first run.
	Peers []string `json:"peers,omitempty"`
	// RaftHeartbeatTimeout, RaftElectionTimeout and RaftLeaderLeaseTimeout tune Raft
	// (zero: Raft's defaults of 1 s, 1 s and 500 ms, fit for a LAN).
	RaftHeartbeatTimeout   time.Duration `json:"raft_heartbeat_timeout,omitempty"`
	RaftElectionTimeout    time.Duration `json:"raft_election_timeout,omitempty"`
	RaftLeaderLeaseTimeout time.Duration `json:"raft_leader_lease_timeout,omitempty"`
	// Listen is HOST:PORT of the management API.
	Listen string `json:"listen"`
	// URL is the address devices and admins reach, https://HOST:PORT; it is the
	// issuer of every token. Empty means https://Listen.
	URL string `json:"url"`
	// TokenLifetime is how long an enrollment token stays valid (enroll.DefaultTokenLifetime).
	TokenLifetime time.Duration `json:"token_lifetime,omitempty"`
	// IdentityLifetime is the lifetime of identity certificates (ca.IdentityLifetime).
	IdentityLifetime time.Duration `json:"identity_lifetime,omitempty"`
	// RouterLifetime is the lifetime of router certificates (ca.RouterLifetime).
	RouterLifetime time.Duration `json:"router_lifetime,omitempty"`
	// Logger receives the controller's logs; nil discards them.
	Logger *slog.Logger `json:"-"`
	// Now is the clock; nil means time.Now. Tests move it.
	Now func() time.Time `json:"-"`
}

func (c *Config) fill() {
	if c.URL == "" {
		c.URL = "https://" + c.Listen
	}
	if c.TokenLifetime == 0 {
		c.TokenLifetime = enroll.DefaultTokenLifetime
	}
	if c.IdentityLifetime == 0 {
		c.IdentityLifetime = ca.IdentityLifetime
	}
	if c.RouterLifetime == 0 {
		c.RouterLifetime = ca.RouterLifetime
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Name == "" {
		c.Name = DefaultName
	}
}

// Address is HOST:PORT other controllers reach this one at: the host and port of URL.
func (c *Config) Address() string {
	if u, err := url.Parse(c.URL); err == nil && u.Host != "" {
		return u.Host
	}
	return c.Listen
}

// Controller is a running controller.
type Controller struct {
	cfg     Config
	ca      *ca.CA
	store   store.Store
	node    *cluster.Node
	log     *slog.Logger
	events  *events.Log
	metrics *controllerMetrics

	mu       sync.Mutex
	online   map[string]routerState // router id → its live control link
	bindings map[*binding]struct{}
	circuits map[*circuit]struct{}
	links    map[string][]wire.LinkState // router id → its last report of its links
	seen     map[string]time.Time        // identity id → when a router last relayed for it
	present  map[string]bool             // identity ids recorded online in the event trail
	via      map[string]string           // identity id → the router that last relayed for it
	// agentLinks is each identity's link to its router, as the router last reported it.
	agentLinks map[string]wire.AgentLink
}

// Init creates a controller in cfg.DataDir: the PKI (its server certificate valid for
// hosts), an empty store, controller.json, and an admin identity named "admin" written
// to adminPath (DataDir/admin.json if empty). It refuses a directory that already holds
// a controller.
func Init(ctx context.Context, cfg Config, hosts []string, adminPath string) error {
	cfg.fill()
	if _, err := os.Stat(filepath.Join(cfg.DataDir, configFile)); err == nil {
		return fmt.Errorf("controller init: %s already holds a controller", cfg.DataDir)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("controller init: %w", err)
	}
	if _, err := ca.Create(filepath.Join(cfg.DataDir, pkiDir), hosts, cfg.Now()); err != nil {
		return fmt.Errorf("controller init: %w", err)
	}
	data, _ := json.MarshalIndent(cfg, "", "  ")
	if err := identity.WriteFileAtomic(filepath.Join(cfg.DataDir, configFile), append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("controller init: %w", err)
	}
	c, err := open(cfg, true)
	if err != nil {
		return err
	}
	defer c.Close()
	wctx, cancel := context.WithTimeout(ctx, initLeaderWait)
	defer cancel()
	if err := c.node.WaitLeader(wctx); err != nil {
		return fmt.Errorf("controller init: %w", err)
	}
	admin, err := c.IssueAdmin(ctx, "admin")
	if err != nil {
		return fmt.Errorf("controller init: %w", err)
	}
	if adminPath == "" {
		adminPath = filepath.Join(cfg.DataDir, AdminFile)
	}
	return admin.Save(adminPath)
}

// Open loads the controller in cfg.DataDir. Fields of cfg that are set override those
// saved by Init.
func Open(cfg Config) (*Controller, error) { return open(cfg, false) }

// open loads the controller; initializing runs Raft with timeouts fit only for a
// cluster of one that talks to nobody (Init's).
func open(cfg Config, initializing bool) (*Controller, error) {
	data, err := os.ReadFile(filepath.Join(cfg.DataDir, configFile))
	if err != nil {
		return nil, fmt.Errorf("controller: %w (run `umbra controller init` first)", err)
	}
	var saved Config
	if err := json.Unmarshal(data, &saved); err != nil {
		return nil, fmt.Errorf("controller: %s: %w", configFile, err)
	}
	if cfg.Listen == "" {
		cfg.Listen = saved.Listen
	}
	if cfg.URL == "" {
		cfg.URL = saved.URL
	}
	if cfg.TokenLifetime == 0 {
		cfg.TokenLifetime = saved.TokenLifetime
	}
	if cfg.IdentityLifetime == 0 {
		cfg.IdentityLifetime = saved.IdentityLifetime
	}
	if cfg.RouterLifetime == 0 {
		cfg.RouterLifetime = saved.RouterLifetime
	}
	if cfg.Name == "" {
		cfg.Name = saved.Name
	}
	cfg.Joined = cfg.Joined || saved.Joined
	if len(cfg.Peers) == 0 {
		cfg.Peers = saved.Peers
	}
	if cfg.RaftHeartbeatTimeout == 0 {
		cfg.RaftHeartbeatTimeout = saved.RaftHeartbeatTimeout
	}
	if cfg.RaftElectionTimeout == 0 {
		cfg.RaftElectionTimeout = saved.RaftElectionTimeout
	}
	if cfg.RaftLeaderLeaseTimeout == 0 {
		cfg.RaftLeaderLeaseTimeout = saved.RaftLeaderLeaseTimeout
	}
	cfg.fill()
	authority, err := ca.Load(filepath.Join(cfg.DataDir, pkiDir))
	if err != nil {
		return nil, fmt.Errorf("controller: %w", err)
	}
	st, err := store.Open(filepath.Join(cfg.DataDir, storeFile))
	if err != nil {
		return nil, fmt.Errorf("controller: %w", err)
	}
	chain, key := authority.ServerChain()
	ccfg := cluster.Config{
		Name: cfg.Name, Address: cfg.Address(), Dir: filepath.Join(cfg.DataDir, raftDir), Store: st,
		Certificate: tls.Certificate{Certificate: chain[:2], PrivateKey: key, Leaf: authority.Server},
		Roots:       authority.Roots(),
		Refused: func(leaf *x509.Certificate) error {
			if revoked, _ := st.Revoked(pki.SerialString(leaf)); revoked {
				return errors.New("controller certificate revoked (the member was deleted)")
			}
			return nil
		},
		HeartbeatTimeout: cfg.RaftHeartbeatTimeout, ElectionTimeout: cfg.RaftElectionTimeout,
		LeaderLeaseTimeout: cfg.RaftLeaderLeaseTimeout,
		Logger:             cfg.Logger,
	}
	if initializing {
		ccfg.HeartbeatTimeout, ccfg.ElectionTimeout, ccfg.LeaderLeaseTimeout = initHeartbeatTimeout, initHeartbeatTimeout, initLeaseTimeout
	}
	node, err := cluster.Open(ccfg)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("controller: %w", err)
	}
	if !cfg.Joined {
		if err := node.Bootstrap(); err != nil {
			node.Close()
			return nil, fmt.Errorf("controller: %w", err)
		}
	}
	ev, err := events.Open(filepath.Join(cfg.DataDir, eventsFile), cfg.Now)
	if err != nil {
		node.Close()
		return nil, fmt.Errorf("controller: %w", err)
	}
	c := &Controller{cfg: cfg, ca: authority, store: node, node: node, events: ev, log: cfg.Logger, online: map[string]routerState{}, links: map[string][]wire.LinkState{}, seen: map[string]time.Time{}, present: map[string]bool{}, via: map[string]string{}, agentLinks: map[string]wire.AgentLink{},
		bindings: map[*binding]struct{}{}, circuits: map[*circuit]struct{}{}}
	c.metrics = newControllerMetrics(c)
	return c, nil
}

// Close closes the store and the event trail.
func (c *Controller) Close() error { return errors.Join(c.store.Close(), c.events.Close()) }

// event records e in the audit trail; a trail that cannot be written is logged, never
// a reason to fail what happened.
func (c *Controller) event(e events.Event) {
	c.metrics.events.WithLabelValues(e.Type).Inc()
	if err := c.events.Add(e); err != nil {
		c.log.Warn("event trail", "err", err)
	}
}

// Store is the controller's state, for tests and tools that inspect it.
func (c *Controller) Store() store.Store { return c.store }

// CA is the controller's certificate authority.
func (c *Controller) CA() *ca.CA { return c.ca }

// URL is the controller's advertised https URL.
func (c *Controller) URL() string { return c.cfg.URL }

// Listen opens the management API's TCP port and the control plane's UDP port, both on
// cfg.Listen.
func (c *Controller) Listen() (net.Listener, net.PacketConn, error) {
	return ListenPair(c.cfg.Listen)
}

// Serve answers the management API on ln and routers' control links on pc until ctx
// ends. pc may be nil for a controller without a control plane (tests).
func (c *Controller) Serve(ctx context.Context, ln net.Listener, pc net.PacketConn) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go c.watchPresence(ctx)
	ctrlErr := make(chan error, 1)
	if pc != nil {
		go func() { ctrlErr <- c.serveControl(ctx, pc) }()
	} else {
		ctrlErr <- nil
	}
	go c.joinCluster(ctx)
	go c.watchMembers(ctx)
	go c.watchApplied(ctx)
	srv := &http.Server{
		Handler:           c.metrics.countRequests(c.Handler()),
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(c.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	c.log.Info("management API listening", "addr", ln.Addr().String(), "url", c.cfg.URL)
	err := srv.Serve(newPortMux(ctx, ln, c.tlsConfig(), c.node.Layer(), c.checkPeerController))
	cancel()
	<-done
	if cerr := <-ctrlErr; cerr != nil {
		return cerr
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("controller: serve: %w", err)
}

// IssueAdmin creates the admin identity name (or reuses it) and issues it a certificate
// directly, without a token: the controller holds the CA, so the key is made here and
// handed over in the identity file.
func (c *Controller) IssueAdmin(ctx context.Context, name string) (*identity.File, error) {
	var rec store.Identity
	err := c.store.Get(store.Identities, name, &rec)
	if errors.Is(err, store.ErrNotFound) {
		rec = store.Identity{Meta: c.newMeta(name), Admin: true, Role: string(role.Admin), Attributes: []string{}}
		raw, _ := json.Marshal(rec)
		err = c.store.Apply(ctx, store.Command{Op: store.OpCreate, Kind: store.Identities, Record: raw, At: c.cfg.Now()})
	}
	if err != nil {
		return nil, fmt.Errorf("issue admin: %w", err)
	}
	key, ref, err := keystore.NewFileKey()
	if err != nil {
		return nil, err
	}
	defer key.Close()
	subj := pki.Subject{Kind: pki.KindIdentity, ID: rec.ID, Name: rec.Name}
	cert, err := c.ca.IssueFor(subj, key.Public(), c.cfg.IdentityLifetime, c.cfg.Now())
	if err != nil {
		return nil, fmt.Errorf("issue admin: %w", err)
	}
	err = c.store.Apply(ctx, store.Command{Op: store.OpSetCert, Kind: store.Identities, Name: name, Cert: certInfo(cert), At: c.cfg.Now()})
	if err != nil {
		return nil, fmt.Errorf("issue admin: %w", err)
	}
	return &identity.File{
		Name: rec.Name, ID: rec.ID, Kind: pki.KindIdentity, Controller: c.cfg.URL, Controllers: c.ControllerURLs(),
		Cert: string(c.ca.ChainFor(cert)), CA: string(pki.EncodeCerts(c.ca.Root)), Key: ref,
		Signer: string(pki.EncodeCerts(c.ca.Signer, c.ca.Intermediate)),
	}, nil
}

func (c *Controller) newMeta(name string) store.Meta {
	return store.Meta{ID: newID(), Name: name, CreatedAt: c.cfg.Now().UTC()}
}

// idBytes is the entropy of record ids and token ids.
const idBytes = 16

func newID() string {
	b := make([]byte, idBytes)
	rand.Read(b)
	return hex.EncodeToString(b)
}
