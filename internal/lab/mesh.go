package lab

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/umbranet/umbra/agent"
	"github.com/umbranet/umbra/controller"
	"github.com/umbranet/umbra/hal/keystore"
	"github.com/umbranet/umbra/internal/api"
	"github.com/umbranet/umbra/internal/enroll"
	"github.com/umbranet/umbra/internal/identity"
	"github.com/umbranet/umbra/internal/linksim"
	"github.com/umbranet/umbra/internal/pki"
	"github.com/umbranet/umbra/internal/transport"
	"github.com/umbranet/umbra/router"
)

// Names the in-process mesh gives what it makes on the controller.
const (
	// allRoutersPolicy lets every identity use every router, as a quickstart's does.
	allRoutersPolicy = "all-routers"
	// routerIdentityFile is a router's identity inside its data directory, as
	// `umbra router enroll` writes it.
	routerIdentityFile = "identity.json"
)

// Mesh is a controller, routers and agents running in this process, on loopback: the
// controller, router and agent packages used as libraries, as the programs use them.
// Everything it starts stops when the test ends.
type Mesh struct {
	t       TB
	ctx     context.Context
	dir     string
	log     *slog.Logger
	Ctrl    *controller.Controller
	API     *api.Client
	routers map[string]*Router
}

// MeshConfig tunes a Mesh; the zero value is a quiet mesh.
type MeshConfig struct {
	// Logger receives the logs of the controller, routers and agents; nil discards
	// them.
	Logger *slog.Logger
}

// NewMesh starts a controller on loopback with an admin client and the edge-router
// policy that lets every identity use every router.
func NewMesh(t TB, cfg MeshConfig) *Mesh {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Mesh{t: t, ctx: ctx, dir: t.TempDir(), log: log, routers: map[string]*Router{}}
	ln, pc, err := controller.ListenPair("127.0.0.1:0")
	if err != nil {
		t.Fatalf("lab: controller port: %v", err)
	}
	ccfg := controller.Config{DataDir: filepath.Join(m.dir, "ctrl"), Listen: ln.Addr().String(), URL: "https://" + ln.Addr().String(), Logger: log}
	if err := controller.Init(ctx, ccfg, []string{"127.0.0.1", "localhost"}, ""); err != nil {
		t.Fatalf("lab: %v", err)
	}
	c, err := controller.Open(ccfg)
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Serve(ctx, ln, pc) }()
	// Cleanups run last-in first-out: the controller stops after everything started on it.
	t.Cleanup(func() {
		cancel()
		<-done
		c.Close()
	})
	admin, err := identity.Load(filepath.Join(ccfg.DataDir, controller.AdminFile))
	if err != nil {
		t.Fatalf("lab: admin: %v", err)
	}
	client, err := api.NewClient(ctx, admin)
	if err != nil {
		t.Fatalf("lab: admin client: %v", err)
	}
	t.Cleanup(func() { client.Close() })
	m.Ctrl, m.API = c, client
	m.create("edge-router-policies", api.CreateEdgeRouterPolicy{Name: allRoutersPolicy, Identities: []string{"#all"}, Routers: []string{"#all"}})
	return m
}

// Dir is the mesh's temporary directory.
func (m *Mesh) Dir() string { return m.dir }

func (m *Mesh) create(kind string, body any) api.Created {
	m.t.Helper()
	out, err := m.API.Create(m.ctx, kind, body)
	if err != nil {
		m.t.Fatalf("lab: create %s: %v", kind, err)
	}
	return out
}

// Delete deletes the record kind/name ("identities", "services", "service-policies",
// "routers", ...), as `umbra edge delete` does.
func (m *Mesh) Delete(kind, name string) {
	m.t.Helper()
	if err := m.API.Delete(m.ctx, kind, name); err != nil {
		m.t.Fatalf("lab: delete %s %s: %v", kind, name, err)
	}
}

// Service creates service name hosted at host ("tcp:ADDR", "udp:ADDR", or "" for one
// that programs host through Listen), bound by identities with attribute binders and
// dialed by those with attribute dialers.
func (m *Mesh) Service(name, host, binders, dialers string) {
	m.t.Helper()
	m.create("services", api.CreateService{Name: name, Host: host})
	m.create("service-policies", api.CreateServicePolicy{Name: name + "-bind", Type: "bind", Identities: []string{"#" + binders}, Services: []string{"@" + name}})
	m.create("service-policies", api.CreateServicePolicy{Name: name + "-dial", Type: "dial", Identities: []string{"#" + dialers}, Services: []string{"@" + name}})
}

// Router is a router of the mesh, running in this process.
type Router struct {
	*router.Router
	// Name and ID name it on the controller.
	Name, ID string
	// Addr is where it listens (UDP, loopback).
	Addr string
	stop context.CancelFunc
	done chan error
}

// RouterConfig says how AddRouter runs a router; the zero value is an edge router on
// a free loopback port with the LAN profile and no links.
type RouterConfig struct {
	// LinkTo lists addresses to keep router links to: other routers' Addr, or a
	// linksim proxy in front of one (Radio) for a link over a radio.
	LinkTo []string
	// Profile is the QUIC profile of its agents and links; zero means transport.LAN.
	Profile transport.Profile
}

// AddRouter creates router name on the controller, enrolls it with a file key in the
// mesh's directory, runs it and waits until the controller sees it online.
func (m *Mesh) AddRouter(name string, cfg RouterConfig) *Router {
	m.t.Helper()
	created := m.create("routers", api.CreateRouter{Name: name, Attributes: []string{"edge"}})
	data := filepath.Join(m.dir, name)
	id, err := enrollRouter(m.ctx, created.JWT, filepath.Join(data, routerIdentityFile))
	if err != nil {
		m.t.Fatalf("lab: enroll router %s: %v", name, err)
	}
	ctx, cancel := context.WithCancel(m.ctx)
	r, err := router.Listen(ctx, router.Config{Identity: id, DataDir: data, Listen: "127.0.0.1:0", LinkTo: cfg.LinkTo, Profile: cfg.Profile, Logger: m.log.With("router", name)})
	if err != nil {
		cancel()
		m.t.Fatalf("lab: router %s: %v", name, err)
	}
	rt := &Router{Router: r, Name: name, ID: id.ID, Addr: r.Addr().String(), stop: cancel, done: make(chan error, 1)}
	go func() { rt.done <- r.Serve(ctx) }()
	m.t.Cleanup(rt.Stop)
	m.routers[name] = rt
	if err := Poll(m.ctx, ReadyTimeout, "router "+name+" online", func() (bool, error) { return m.Ctrl.RouterOnline(id.ID), nil }); err != nil {
		m.t.Fatalf("lab: %v", err)
	}
	return rt
}

// Stop stops the router as a crash would end its connections: at once, unannounced to
// the controller. Calling it again does nothing.
func (r *Router) Stop() {
	if r.stop == nil {
		return
	}
	r.stop()
	<-r.done
	r.stop = nil
}

// enrollRouter redeems a router's token with a new file key and writes its identity to
// out (mode 0600), as `umbra router enroll` does.
func enrollRouter(ctx context.Context, token, out string) (*identity.File, error) {
	key, ref, err := keystore.NewFileKey()
	if err != nil {
		return nil, err
	}
	defer key.Close()
	id, err := enroll.Enroll(ctx, token, pki.KindRouter, key)
	if err != nil {
		return nil, err
	}
	id.Key = ref
	if err := os.MkdirAll(filepath.Dir(out), 0o700); err != nil {
		return nil, err
	}
	if err := id.Save(out); err != nil {
		return nil, err
	}
	return identity.Load(out)
}

// WaitLinks waits until the controller lists every named router link ("r1->r2") up.
func (m *Mesh) WaitLinks(names ...string) {
	m.t.Helper()
	err := Poll(m.ctx, ReadyTimeout, "router links "+strings.Join(names, ", ")+" up", func() (bool, error) {
		recs, err := m.API.List(m.ctx, "links")
		if err != nil {
			return false, err
		}
		up := map[string]bool{}
		for _, r := range recs {
			if r["state"] == "up" {
				up[fmt.Sprint(r["name"])] = true
			}
		}
		for _, n := range names {
			if !up[n] {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		m.t.Fatalf("lab: %v", err)
	}
}

// Enroll creates identity name with attributes and enrolls it in memory (a file key,
// never written).
func (m *Mesh) Enroll(name string, attrs ...string) *agent.Identity {
	m.t.Helper()
	created := m.create("identities", api.CreateIdentity{Name: name, Attributes: attrs})
	id, err := agent.Enroll(m.ctx, created.JWT, agent.EnrollOptions{})
	if err != nil {
		m.t.Fatalf("lab: enroll %s: %v", name, err)
	}
	return id
}

// Agent starts an agent for id with cfg (its Identity and Logger filled in), closed when
// the test ends. Pin cfg.Routers to a router's Addr or a Radio in front of it.
func (m *Mesh) Agent(id *agent.Identity, cfg agent.Config) *agent.Agent {
	m.t.Helper()
	cfg.Identity = id
	if cfg.Logger == nil {
		cfg.Logger = m.log.With("agent", id.Name())
	}
	ctx, cancel := context.WithTimeout(m.ctx, ReadyTimeout)
	defer cancel()
	a, err := agent.New(ctx, cfg)
	if err != nil {
		m.t.Fatalf("lab: agent %s: %v", id.Name(), err)
	}
	m.t.Cleanup(func() { a.Close() })
	return a
}

// Radio puts a linksim link in front of the UDP address target (a router's Addr): what
// is sent to the proxy's Addr crosses link's Up direction to target, and the answers its
// Down direction; the proxy can also strand or rebind its clients. It closes with the
// test.
func (m *Mesh) Radio(target string, link *linksim.Link) *linksim.UDPProxy {
	m.t.Helper()
	p, err := linksim.NewUDPProxy(m.ctx, "127.0.0.1:0", target, link)
	if err != nil {
		m.t.Fatalf("lab: radio to %s: %v", target, err)
	}
	m.t.Cleanup(func() { p.Close() })
	return p
}

// HostEcho has agent a serve service through Listen with an echo (ServeEcho) until the test
// ends, and waits until a reports it bound at its router.
func (m *Mesh) HostEcho(a *agent.Agent, service string) {
	m.t.Helper()
	ln, err := a.Listen(m.ctx, service)
	if err != nil {
		m.t.Fatalf("lab: listen %s: %v", service, err)
	}
	s := ServeEcho(ln)
	m.t.Cleanup(s.Close)
	WaitHosting(m.t, a, service, ReadyTimeout)
}

// Dial opens a circuit from a to service for the test t, closed when the test ends. It
// tries again until ReadyTimeout: right after a binding or a router link comes up the
// controller may not have a path yet.
func Dial(t TB, a *agent.Agent, service string) *agent.Conn {
	t.Helper()
	var c *agent.Conn
	err := Poll(context.Background(), ReadyTimeout, "a circuit to "+service, func() (bool, error) {
		ctx, cancel := context.WithTimeout(context.Background(), ReadyTimeout)
		defer cancel()
		ac, err := a.Dial(ctx, service)
		if err != nil {
			return false, err
		}
		c = ac
		return true, nil
	})
	if err != nil {
		t.Fatalf("lab: dial %s: %v", service, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// WaitLink waits until a's link to one of its routers is up and returns that router.
func WaitLink(t TB, a *agent.Agent, timeout time.Duration) string {
	t.Helper()
	var up string
	WaitUntil(t, timeout, "agent link up", func() bool {
		for _, l := range a.Status().Links {
			if l.State == agent.LinkUp {
				up = l.Router
				return true
			}
		}
		return false
	})
	return up
}

// WaitHosting waits until a reports service bound at its router.
func WaitHosting(t TB, a *agent.Agent, service string, timeout time.Duration) {
	t.Helper()
	WaitUntil(t, timeout, "hosting "+service, func() bool {
		for _, h := range a.Status().Hosting {
			if h.Service == service && h.State == "bound" {
				return true
			}
		}
		return false
	})
}
