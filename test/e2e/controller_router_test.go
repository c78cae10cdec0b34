package e2e

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/umbranet/umbra/internal/lab"
)

// onlineTimeout is how soon a started router must be listed online (CONTRACT: within a
// second of its control link coming up; generous here for a loaded machine).
const onlineTimeout = 10 * time.Second

// freePort returns a loopback port free for both TCP and UDP at the time of asking.
func freePort(t *testing.T) string {
	t.Helper()
	return lab.MustFree(t, lab.FreePort)
}

// TestSeparateControllerAndRouter runs the ground station the long way: controller init
// and run, router enroll and run as separate processes; the router comes online.
func TestSeparateControllerAndRouter(t *testing.T) {
	dir := t.TempDir()
	ctrlData := filepath.Join(dir, "ctrl")
	listen := freePort(t)
	must(t, nil, bins.umbra, "controller", "init", "--data", ctrlData, "--listen", listen)
	_, errOut, err := run(t, nil, bins.umbra, "controller", "init", "--data", ctrlData, "--listen", listen)
	if err == nil || !strings.Contains(errOut, "already holds a controller") {
		t.Errorf("second init: err %v, stderr %q; want a refusal", err, errOut)
	}
	ctrl := start(t, bins.umbra, "controller", "run", "--data", ctrlData)
	ctrl.waitFor(t, "controller listening", readyTimeout)
	env := []string{"UMBRA_ADMIN=" + filepath.Join(ctrlData, "admin.json")}

	jwt := filepath.Join(dir, "r1.jwt")
	must(t, env, bins.umbra, "edge", "create", "router", "relay1", "--attr", "relay", "--jwt-out", jwt)
	routerData := filepath.Join(dir, "relay1")
	must(t, nil, bins.umbra, "router", "enroll", "--jwt", jwt, "--data", routerData)
	if r := find(listJSON(t, env, "routers"), "relay1"); r == nil || r["online"] != false {
		t.Fatalf("enrolled but not started relay1 = %v, want listed offline", r)
	}
	router := start(t, bins.umbra, "router", "run", "--data", routerData, "--listen", "127.0.0.1:0")
	router.waitFor(t, "router relay1 listening", readyTimeout)

	deadline := time.Now().Add(onlineTimeout)
	for {
		r := find(listJSON(t, env, "routers"), "relay1")
		if r != nil && r["online"] == true {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("relay1 not online within %v: %v", onlineTimeout, r)
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}

	// The router goes offline when stopped.
	router.stop(t)
	deadline = time.Now().Add(onlineTimeout)
	for {
		r := find(listJSON(t, env, "routers"), "relay1")
		if r != nil && r["online"] == false {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("relay1 still online %v after it stopped: %v", onlineTimeout, r)
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}
}

// TestKilledRouterGoesOfflineSoon: a router that crashes (kill -9) is listed offline
// within about five seconds (the controller's routerDeadAfter), when its heartbeats stop,
// not after QUIC's 30 s idle timeout
// (asserted with the generous onlineTimeout; the measured time is logged).
func TestKilledRouterGoesOfflineSoon(t *testing.T) {
	m := newRelayMesh(t)
	m.startRouter("r1", freePort(t))
	m.waitControlLinks("r1", 1, readyTimeout)
	waitUntil(t, onlineTimeout, "r1 listed online", func() bool {
		r := find(listJSON(t, m.env, "routers"), "r1")
		return r != nil && r["online"] == true
	})

	m.routers["r1"].cmd.Process.Kill()
	killed := time.Now()
	<-m.routers["r1"].done
	waitUntil(t, onlineTimeout, "killed r1 listed offline", func() bool {
		r := find(listJSON(t, m.env, "routers"), "r1")
		return r != nil && r["online"] == false
	})
	t.Logf("killed router listed offline %v after the kill", time.Since(killed).Round(time.Millisecond))
}
