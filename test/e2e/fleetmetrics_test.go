package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// agentMetric is the value of one of a's metrics (`umbra-agent metrics`, parsed with
// expfmt), or -1 when it is missing.
func agentMetric(t *testing.T, a *agentProc, name string, labels map[string]string) float64 {
	t.Helper()
	out := must(t, nil, bins.agent, "metrics", "--status-socket", a.socket)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(out))
	if err != nil {
		t.Fatalf("umbra-agent metrics is not the text format: %v\n%s", err, out)
	}
	return metricValue(fams, name, labels)
}

// TestFleetMetrics (issue 15): with a circuit running, the router counts it,
// the controller counts the path it chose, the agents count their key store's
// signatures, every heartbeat-missed counter is exported, and the controller lists each
// online identity with its link's round trip and loss as its router measures them.
func TestFleetMetrics(t *testing.T) {
	m := startMesh(t)
	url := m.metricsURL(t)
	listen, drone, op := m.echoFleet(t)
	c := dialGreeted(t, listen, "drone1") // held open: a running circuit
	echoOnce(t, c)

	fams := scrape(t, url)
	if active := metricValue(fams, "umbra_router_circuits_active", nil); active < 1 {
		t.Errorf("umbra_router_circuits_active = %v with a circuit open, want at least 1", active)
	}
	for _, ch := range []struct {
		name   string
		labels map[string]string
		min    float64
	}{
		{"umbra_controller_path_computations_total", map[string]string{"result": "local"}, 1},
		{"umbra_controller_path_computations_total", map[string]string{"result": "mesh"}, 0},
		{"umbra_controller_path_computations_total", map[string]string{"result": "no_path"}, 0},
		{"umbra_router_control_heartbeats_missed_total", nil, 0},
	} {
		if got := metricValue(fams, ch.name, ch.labels); got < ch.min {
			t.Errorf("%s%v = %v, want at least %v (-1: missing)", ch.name, ch.labels, got, ch.min)
		}
	}
	for name, a := range map[string]*agentProc{"drone1": drone, "op": op} {
		if got := agentMetric(t, a, "umbra_agent_keystore_signatures_total", map[string]string{"store": "file"}); got < 1 {
			t.Errorf("%s: umbra_agent_keystore_signatures_total{store=file} = %v after its link's handshake, want at least 1", name, got)
		}
	}

	// The fleet's links, as `edge list identities -o json` (and the console) show them.
	var drone1 map[string]any
	waitUntil(t, readyTimeout, "drone1 listed with its link's round trip", func() bool {
		drone1 = find(listJSON(t, m.env, "identities"), "drone1")
		_, ok := drone1["link_rtt_ms"].(float64)
		return ok
	})
	rtt, _ := drone1["link_rtt_ms"].(float64)
	loss, lossOK := drone1["link_loss_pct"].(float64)
	if rtt <= 0 || rtt > 1000 || !lossOK || loss < 0 || loss > 100 {
		t.Errorf("drone1 listed with link_rtt_ms %v and link_loss_pct %v (%v), want a loopback round trip in (0, 1000] ms and a loss in [0, 100] %%", rtt, loss, lossOK)
	}
	t.Logf("drone1's link as its router reports it: %.2f ms, %.1f %% lost", rtt, loss)
}

// linkGap is how long the router link's radio goes black: several heartbeat intervals
// (200 ms), under the second that declares the link dead.
const linkGap = 700 * time.Millisecond

// TestRouterLinkHeartbeatsMissed blacks out the radio between two routers for 700 ms:
// the link stays up, and the dialing router's metrics count the heartbeats it missed.
func TestRouterLinkHeartbeatsMissed(t *testing.T) {
	m := newRelayMesh(t)
	// The routers pick their ports: one chosen ahead was taken by another program while
	// r2 started and r1 enrolled, once in 20 runs on a busy machine.
	m.startRouter("r2", "127.0.0.1:0")
	radio, proxy := newRadio(t, m.addrs["r2"])
	m.startRouterArgs([]string{bins.umbra}, []string{"--metrics", "127.0.0.1:0"}, "r1", "127.0.0.1:0", proxy.Addr().String())
	metricsURL := strings.TrimPrefix(m.routers["r1"].waitFor(t, "metrics http://", readyTimeout), "metrics ")
	m.waitLinks([2]string{"r1", "r2"})
	missed := func() float64 {
		return metricValue(scrape(t, metricsURL), "umbra_router_link_heartbeats_missed_total", map[string]string{"peer": "r2"})
	}
	before := max(missed(), 0)
	radio.Blackout(linkGap)
	waitUntil(t, readyTimeout, "r1 counting heartbeats missed on its link to r2", func() bool { return missed() > before })
	t.Logf("r1 missed %v heartbeats of r2 in a %v blackout", missed()-before, linkGap)
	if l := find(listJSON(t, m.env, "links"), "r1->r2"); l == nil || l["state"] != "up" {
		t.Errorf("r1->r2 after a %v blackout = %v, want up", linkGap, l)
	}
}
