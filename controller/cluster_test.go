package controller

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/umbranet/umbra/controller/store"
	"github.com/umbranet/umbra/internal/api"
)

// clusterWait bounds a joined member's first contact with the leader.
const clusterWait = 30 * time.Second

// joinController joins a new member called name to tc's cluster, in this process, and
// serves it until the test ends.
func joinController(t *testing.T, tc *testController, name string) *Controller {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	created, err := tc.api.Create(ctx, "controllers", api.CreateController{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	ln, pc, err := ListenPair("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{DataDir: filepath.Join(tc.dir, name), Listen: ln.Addr().String()}
	if err := Join(ctx, cfg, created.JWT); err != nil {
		t.Fatal(err)
	}
	c, err := Open(Config{DataDir: cfg.DataDir})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Serve(ctx, ln, pc) }()
	t.Cleanup(func() {
		cancel()
		<-done
		c.Close()
	})
	deadline := time.Now().Add(clusterWait)
	for leader, _ := c.node.Leader(); !c.node.HasState() || leader == ""; leader, _ = c.node.Leader() {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not hear from a leader within %v", name, clusterWait)
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
	return c
}

// TestFollowerForwardsWritesAndReadsThem: a write on a follower goes to the leader,
// comes back with the store's own error, and is readable on the follower at once.
func TestFollowerForwardsWritesAndReadsThem(t *testing.T) {
	tc := startController(t)
	f := joinController(t, tc, "controller2")
	if f.node.IsLeader() {
		t.Fatal("the joined member leads; want the first one to")
	}
	ctx := context.Background()
	raw, _ := json.Marshal(store.Service{Meta: store.Meta{ID: newID(), Name: "via-follower"}})
	create := store.Command{Op: store.OpCreate, Kind: store.Services, Record: raw, At: time.Now()}
	if err := f.Store().Apply(ctx, create); err != nil {
		t.Fatalf("write on the follower: %v", err)
	}
	var svc store.Service
	if err := f.Store().Get(store.Services, "via-follower", &svc); err != nil {
		t.Errorf("read on the follower right after its write: %v", err)
	}
	if err := tc.Store().Get(store.Services, "via-follower", &svc); err != nil {
		t.Errorf("read on the leader: %v", err)
	}
	raw, _ = json.Marshal(store.Service{Meta: store.Meta{ID: newID(), Name: "via-follower"}})
	create.Record = raw
	if err := f.Store().Apply(ctx, create); !errors.Is(err, store.ErrExists) {
		t.Errorf("duplicate through the follower: got %v, want store.ErrExists", err)
	}
	gone := store.Command{Op: store.OpDelete, Kind: store.Services, Name: "never", At: time.Now()}
	if err := f.Store().Apply(ctx, gone); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("delete of nothing through the follower: got %v, want store.ErrNotFound", err)
	}
	members, err := f.node.Members(ctx)
	if err != nil || len(members) != 2 {
		t.Fatalf("members = %v, %v; want two", members, err)
	}
	for _, m := range members {
		if !m.Reachable || (m.Role != "leader" && m.Role != "follower") {
			t.Errorf("member %+v: want reachable, leader or follower", m)
		}
	}
}
