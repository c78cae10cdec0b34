package controller

import (
	"testing"
	"time"

	"github.com/umbranet/umbra/controller/store"
)

// TestIdentityOnlineAndOffline: the first request a router relays for an identity is an
// identity-online event, more requests add none, and a silence of presenceWindow is an
// identity-offline event at the next sweep.
func TestIdentityOnlineAndOffline(t *testing.T) {
	tc := startController(t)
	tc.createIdentity(t, "drone1", false, "drone")
	var id store.Identity
	if err := tc.Store().Get(store.Identities, "drone1", &id); err != nil {
		t.Fatal(err)
	}
	count := func(typ string) int {
		n := 0
		for _, e := range tc.events.Since(time.Time{}) {
			if e.Type == typ && e.Name == "drone1" {
				n++
			}
		}
		return n
	}
	tc.markSeen(id, "r1")
	tc.clock.Advance(presenceWindow / 2)
	tc.markSeen(id, "r1")
	tc.sweepPresence()
	if on, off := count("identity-online"), count("identity-offline"); on != 1 || off != 0 {
		t.Fatalf("after two requests: %d online and %d offline events, want 1 and 0", on, off)
	}
	tc.clock.Advance(presenceWindow)
	tc.sweepPresence()
	if off := count("identity-offline"); off != 1 {
		t.Fatalf("after %v of silence: %d offline events, want 1", presenceWindow, off)
	}
	tc.markSeen(id, "r1")
	if on := count("identity-online"); on != 2 {
		t.Errorf("back after going offline: %d online events, want 2", on)
	}
}
