package controller

import (
	"context"
	"crypto/ecdsa"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/umbranet/umbra/internal/api"
	"github.com/umbranet/umbra/internal/identity"
	"github.com/umbranet/umbra/internal/pki"
)

// testClock is a clock tests can move.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// testController is a controller serving HTTPS on loopback with its admin client.
type testController struct {
	*Controller
	dir   string
	clock *testClock
	admin *identity.File
	api   *api.Client
}

// startController initializes and serves a controller in a temporary directory.
func startController(t testing.TB) *testController {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ln, pc, err := ListenPair("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	clock := &testClock{now: time.Now()}
	cfg := Config{DataDir: filepath.Join(dir, "ctrl"), Listen: ln.Addr().String(), Now: clock.Now}
	if err := Init(ctx, cfg, []string{"127.0.0.1"}, ""); err != nil {
		t.Fatal(err)
	}
	c, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Serve(ctx, ln, pc) }()
	admin, err := identity.Load(filepath.Join(cfg.DataDir, AdminFile))
	if err != nil {
		t.Fatal(err)
	}
	client, err := api.NewClient(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		client.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		c.Close()
	})
	return &testController{Controller: c, dir: dir, clock: clock, admin: admin, api: client}
}

// dump is the store's whole state, to compare before and after a refused request.
func (tc *testController) dump(t testing.TB) string {
	t.Helper()
	d, err := tc.Store().Dump()
	if err != nil {
		t.Fatal(err)
	}
	return string(d)
}

// createIdentity creates an identity through the API and returns its token.
func (tc *testController) createIdentity(t testing.TB, name string, admin bool, attrs ...string) api.Created {
	t.Helper()
	out, err := tc.api.Create(context.Background(), "identities", api.CreateIdentity{Name: name, Attributes: attrs, Admin: admin})
	if err != nil {
		t.Fatalf("create identity %s: %v", name, err)
	}
	return out
}

func newTestKey() (*ecdsa.PrivateKey, error) { return pki.NewKey() }
