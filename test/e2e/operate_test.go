package e2e

import (
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/umbranet/umbra/internal/identity"
)

// TestEnrollNeverDestroysAnIdentity: another identity's token aimed at a device's identity
// file is refused without --force and spends nothing; with --force the file is replaced,
// whole, once the new enrollment succeeded.
func TestEnrollNeverDestroysAnIdentity(t *testing.T) {
	m := startMesh(t)
	idFile := m.enroll("drone1", "drone")
	before, err := os.ReadFile(idFile)
	if err != nil {
		t.Fatal(err)
	}
	jwt := filepath.Join(m.dir, "spare.jwt")
	m.edge("create", "identity", "spare", "--jwt-out", jwt)

	_, errOut, err := run(t, nil, bins.agent, "enroll", "--jwt", jwt, "--out", idFile)
	if err == nil || strings.Count(strings.TrimSpace(errOut), "\n") != 0 || !strings.Contains(errOut, "--force") {
		t.Errorf("enroll over drone1's identity file: err %v, stderr %q; want one line refusing and naming --force", err, errOut)
	}
	if after, _ := os.ReadFile(idFile); string(after) != string(before) {
		t.Fatalf("a refused enrollment changed drone1's identity file")
	}

	// The token was not spent: with --force it enrolls, and the file is spare's now.
	must(t, nil, bins.agent, "enroll", "--jwt", jwt, "--out", idFile, "--force")
	id, err := identity.Load(idFile)
	if err != nil || id.Name != "spare" {
		t.Fatalf("identity file after enroll --force: %v, name %q; want spare", err, id.Name)
	}
	fi, err := os.Stat(idFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("identity file after enroll --force: mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
}

// TestEdgeGetAndUpdate: an operator reads one record, changes it in place with the
// create flags and the attribute edits, and a refused update changes nothing.
func TestEdgeGetAndUpdate(t *testing.T) {
	m := startMesh(t)
	m.edge("create", "identity", "drone1", "--attr", "drone", "--attr", "north", "--jwt-out", filepath.Join(m.dir, "d.jwt"))
	m.edge("create", "service", "mavlink", "--host", "udp:127.0.0.1:14550")
	m.edge("update", "identity", "drone1", "--add-attr", "relay", "--remove-attr", "north")
	m.edge("update", "service", "mavlink", "--host", "udp:127.0.0.1:14551", "--intercept", "udp:127.0.0.1:14560")

	get := func(kind, name string) map[string]any {
		t.Helper()
		var rec map[string]any
		out := m.edge("get", kind, name, "-o", "json")
		if err := json.Unmarshal([]byte(out), &rec); err != nil {
			t.Fatalf("get %s %s -o json: %v\n%s", kind, name, err, out)
		}
		return rec
	}
	if got := jsonText(get("identity", "drone1")["attributes"]); got != `["drone","relay"]` {
		t.Errorf("drone1's attributes = %s, want [drone relay]", got)
	}
	svc := get("service", "mavlink")
	if svc["host"] != "udp:127.0.0.1:14551" || svc["intercept"] != "udp:127.0.0.1:14560" {
		t.Errorf("mavlink = %v, want host udp:127.0.0.1:14551 and intercept udp:127.0.0.1:14560", svc)
	}
	if out := m.edge("get", "service", "mavlink"); !strings.Contains(out, "host: udp:127.0.0.1:14551") {
		t.Errorf("get service mavlink (table) = %q, want a host line", out)
	}

	refusals := []struct {
		name string
		args []string
		want string
	}{
		{"unknown-name", []string{"update", "service", "nothing", "--host", "tcp:127.0.0.1:1"}, "not found"},
		{"unknown-kind", []string{"update", "gadget", "x"}, "want one of"},
		{"unknown-flag", []string{"update", "service", "mavlink", "--colour", "red"}, "unknown flag"},
		{"bad-address", []string{"update", "service", "mavlink", "--host", "tcp:nowhere"}, "host"},
		{"bad-role", []string{"update", "identity", "drone1", "--add-attr", "#x"}, "attribute"},
		{"nothing-to-update", []string{"update", "service", "mavlink"}, "nothing to update"},
		{"unknown-get-kind", []string{"get", "gadget", "x"}, "want one of"},
		{"unknown-edge-command", []string{"frobnicate"}, "want one of"},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			before := m.edge("get", "service", "mavlink", "-o", "json") + m.edge("get", "identity", "drone1", "-o", "json")
			_, errOut, err := run(t, m.env, bins.umbra, append([]string{"edge"}, tt.args...)...)
			if err == nil || strings.Count(strings.TrimSpace(errOut), "\n") != 0 || !strings.Contains(errOut, tt.want) {
				t.Errorf("edge %s: err %v, stderr %q; want one line with %q", strings.Join(tt.args, " "), err, errOut, tt.want)
			}
			if after := m.edge("get", "service", "mavlink", "-o", "json") + m.edge("get", "identity", "drone1", "-o", "json"); after != before {
				t.Errorf("a refused command changed the records")
			}
		})
	}
}

// echoFleet creates service echo (a TCP echo greeting "drone1"), policies letting
// "#drone" host it and "#operator" dial it, and runs drone1 hosting it (with droneArgs) and
// op dialing it at the returned loopback address, both up.
func (m *mesh) echoFleet(t *testing.T, droneArgs ...string) (listen string, drone, op *agentProc) {
	t.Helper()
	m.edge("create", "service", "echo", "--host", "tcp:"+echoServer(t, "drone1"))
	m.edge("create", "service-policy", "b", "--type", "bind", "--identities", "#drone", "--services", "@echo")
	m.edge("create", "service-policy", "d", "--type", "dial", "--identities", "#operator", "--services", "@echo")
	listen = freeTCP(t)
	drone = m.agent("drone1", m.enroll("drone1", "drone"), droneArgs...)
	op = m.agent("op", m.enroll("op", "operator"), "--dial", "echo=tcp:"+listen)
	drone.waitHosting(t, "echo")
	op.waitLinkUp(t)
	return listen, drone, op
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestReissueReplacesADevice: a drone is lost; the operator issues a new token for its
// identity, a replacement board enrolls with it and hosts the drone's service, and the
// lost board's certificate is refused from then on.
func TestReissueReplacesADevice(t *testing.T) {
	m := startMesh(t)
	m.edge("create", "service", "echo", "--host", "tcp:"+echoServer(t, "drone1"))
	m.edge("create", "service-policy", "b", "--type", "bind", "--identities", "#drone", "--services", "@echo")
	m.edge("create", "service-policy", "d", "--type", "dial", "--identities", "#operator", "--services", "@echo")
	lostFile := m.enroll("drone1", "drone")
	lost, err := identity.Load(lostFile)
	if err != nil {
		t.Fatal(err)
	}
	lostCert, lostKey, err := lost.Certificate(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer lostKey.Close()
	if err := dialRouter(t, m.q.Router, lost, &lostCert); err != nil {
		t.Fatalf("drone1's first certificate before the re-issue: %v, want accepted", err)
	}

	jwt := filepath.Join(m.dir, "drone1-again.jwt")
	out := m.edge("create", "enrollment", "drone1", "--jwt-out", jwt, "--expires", "1h")
	if !strings.Contains(out, "expires") {
		t.Errorf("create enrollment printed %q, want the token's expiry", out)
	}
	if got := m.edge("get", "identity", "drone1"); !strings.Contains(got, "enrollment_expires_at") {
		t.Errorf("get identity drone1 = %q, want the outstanding token's expiry", got)
	}
	// Until the new token is used, the lost board still works.
	if err := dialRouter(t, m.q.Router, lost, &lostCert); err != nil {
		t.Errorf("drone1's first certificate before the new token is used: %v, want accepted", err)
	}
	spareFile := filepath.Join(m.dir, "spare.json")
	must(t, nil, bins.agent, "enroll", "--jwt", jwt, "--out", spareFile)

	listen := freeTCP(t)
	spare := m.agent("spare", spareFile)
	op := m.agent("op", m.enroll("op", "operator"), "--dial", "echo=tcp:"+listen)
	spare.waitHosting(t, "echo")
	op.waitLinkUp(t)
	if got, err := dialGreeting(listen); err != nil || got != "drone1" {
		t.Errorf("dial echo after the replacement enrolled: %q (%v), want drone1", got, err)
	}
	if err := dialRouter(t, m.q.Router, lost, &lostCert); err == nil {
		t.Errorf("the lost board's certificate is still accepted after the replacement enrolled")
	}
	// The token is one-time, and a bad lifetime or an unknown name is refused.
	for _, args := range [][]string{
		{"create", "enrollment", "nobody", "--jwt-out", filepath.Join(m.dir, "x.jwt")},
		{"create", "enrollment", "drone1", "--jwt-out", filepath.Join(m.dir, "x.jwt"), "--expires", "-1h"},
		{"create", "enrollment", "drone1", "--jwt-out", filepath.Join(m.dir, "x.jwt"), "--kind", "service"},
	} {
		if _, errOut, err := run(t, m.env, bins.umbra, append([]string{"edge"}, args...)...); err == nil || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Errorf("edge %s: err %v, stderr %q; want a one-line refusal", strings.Join(args, " "), err, errOut)
		}
	}
	if _, err := os.Stat(filepath.Join(m.dir, "x.jwt")); err == nil {
		t.Errorf("a refused create enrollment wrote a token file")
	}
}

// TestPolicyAdvisorNamesTheReason: for each reason a dial fails, policy-advisor names it
// on a FAIL line and exits 1; once everything is in place it exits 0.
func TestPolicyAdvisorNamesTheReason(t *testing.T) {
	m := startMesh(t)
	m.edge("create", "service", "echo", "--host", "tcp:"+echoServer(t, "drone1"))
	droneID := m.enroll("drone1", "drone")
	m.enroll("op", "operator")
	advise := func(wantOK bool, wantLine string) {
		t.Helper()
		out, errOut, err := run(t, m.env, bins.umbra, "edge", "policy-advisor", "op", "echo")
		if (err == nil) != wantOK {
			t.Errorf("policy-advisor op echo: err %v, want success %v\n%s%s", err, wantOK, out, errOut)
		}
		if !strings.Contains(out, wantLine) {
			t.Errorf("policy-advisor op echo printed:\n%s\nwant a line with %q", out, wantLine)
		}
	}
	advise(false, "FAIL  dial policy")
	m.edge("create", "service-policy", "d", "--type", "dial", "--identities", "#operator", "--services", "@echo")
	advise(false, "FAIL  bind policy")
	m.edge("create", "service-policy", "b", "--type", "bind", "--identities", "#drone", "--services", "@echo")
	advise(false, "FAIL  host online")
	drone := m.agent("drone1", droneID)
	drone.waitHosting(t, "echo")
	advise(true, "ok    path")

	m.edge("update", "edge-router-policy", "all-routers", "--identities", "@drone1")
	advise(false, "FAIL  edge routers")
	m.edge("update", "edge-router-policy", "all-routers", "--identities", "#all")
	advise(true, "ok    edge routers")

	if _, errOut, err := run(t, m.env, bins.umbra, "edge", "policy-advisor", "nobody", "echo"); err == nil || !strings.Contains(errOut, "would fail") {
		t.Errorf("policy-advisor for an unknown identity: err %v, stderr %q; want exit 1", err, errOut)
	}
	// The lists say who is enrolled and online, and what each router runs.
	ids := listJSON(t, m.env, "identities")
	if d := find(ids, "drone1"); d == nil || d["enrolled"] != true || d["online"] != true || d["cert_expires"] == nil || d["last_seen"] == nil || d["router"] != "router1" {
		t.Errorf("drone1 in list identities = %v, want enrolled, online over router1, with its certificate expiry and last seen", d)
	}
	if r := find(listJSON(t, m.env, "routers"), "router1"); r == nil || r["online"] != true || r["version"] == nil || r["advertise"] == nil {
		t.Errorf("router1 in list routers = %v, want online with its address and version", r)
	}
	if out := m.edge("list", "links"); !strings.Contains(out, "STATE") || !strings.Contains(out, "RTT_MS") || !strings.Contains(out, "LOSS") {
		t.Errorf("list links = %q, want state, RTT and loss columns", out)
	}

	// A policy naming nobody is stored, with a warning.
	_, errOut, err := run(t, m.env, bins.umbra, "edge", "create", "service-policy", "typo", "--type", "dial", "--identities", "@opp", "--services", "@echo")
	if err != nil || !strings.Contains(errOut, "warning: role @opp matches no identity") {
		t.Errorf("create a policy naming @opp: err %v, stderr %q; want success with a warning naming @opp", err, errOut)
	}
}

// TestEventsFollowShowsTheFleet: `edge events --follow` prints, in order, the router
// coming online, records created, a device hosting, a circuit opened and closed, an
// update and a deletion, each a JSON line with time, type and name.
func TestEventsFollowShowsTheFleet(t *testing.T) {
	m := startMesh(t)
	follow := start(t, bins.umbra, "edge", "--admin", m.q.Admin, "events", "--follow", "-o", "json")
	listen, _, _ := m.echoFleet(t)
	if got, err := dialGreeting(listen); err != nil || got != "drone1" {
		t.Fatalf("dial echo: %q (%v), want drone1", got, err)
	}
	m.edge("update", "service", "echo", "--add-attr", "video")
	m.edge("delete", "service-policy", "d")
	if _, _, err := run(t, nil, bins.agent, "enroll", "--jwt", filepath.Join(m.dir, "op.jwt"), "--out", filepath.Join(m.dir, "again.json")); err == nil {
		t.Fatalf("enrolling with op's used token succeeded")
	}

	want := []struct{ typ, name string }{
		{"router-online", "router1"},
		{"created", "echo"},
		{"created", "drone1"},
		{"enrolled", "drone1"},
		{"identity-online", "drone1"},
		{"hosting", "echo"},
		{"circuit-opened", "echo"},
		{"circuit-closed", "echo"},
		{"updated", "echo"},
		{"deleted", "d"},
		{"enrollment-refused", "127.0.0.1"},
	}
	var got []map[string]any
	waitUntil(t, readyTimeout, "every event in the followed trail", func() bool {
		got = nil
		for _, line := range strings.Split(follow.output(), "\n") {
			var e map[string]any
			if json.Unmarshal([]byte(line), &e) == nil {
				got = append(got, e)
			}
		}
		i := 0
		for _, e := range got {
			if i < len(want) && e["type"] == want[i].typ && e["name"] == want[i].name {
				i++
			}
		}
		return i == len(want)
	})
	for _, e := range got {
		if _, ok := e["time"].(string); !ok || e["type"] == "" || e["name"] == "" {
			t.Errorf("event %v lacks a time, type or name", e)
		}
		if e["type"] == "circuit-opened" && (e["identity"] != "op" || e["path"] == nil) {
			t.Errorf("circuit event %v, want the dialing identity op and the path", e)
		}
	}
	// Without --follow the trail is printed once; --since bounds it.
	out := m.edge("events", "--since", "1h")
	if n := strings.Count(out, "\n"); n < len(want) {
		t.Errorf("events --since 1h printed %d lines, want at least %d", n, len(want))
	}
	if _, errOut, err := run(t, m.env, bins.umbra, "edge", "events", "-o", "yaml"); err == nil || !strings.Contains(errOut, "want json") {
		t.Errorf("events -o yaml: err %v, stderr %q; want a refusal naming json", err, errOut)
	}
}

// changeFollowed bounds how long a running agent may take to follow a change in this
// test: CONTRACT.md promises 2 s; the bound is generous for a loaded machine, yet half
// the agent's own 10 s service refresh, so only a pushed change passes. The time measured
// is logged.
const changeFollowed = 5 * time.Second

// waitFollowed polls cond until it holds and logs how long the agents took.
func waitFollowed(t *testing.T, what string, cond func() bool) {
	t.Helper()
	start := time.Now()
	waitUntil(t, changeFollowed, what, cond)
	t.Logf("%s: after %v", what, time.Since(start).Round(time.Millisecond))
}

// hostingState is the state the agent reports for service, or "" when it hosts none.
func (a *agentProc) hostingState(t *testing.T, service string) string {
	st, err := a.status(t)
	if err != nil {
		return "unreadable"
	}
	for _, h := range st.Hosting {
		if h.Service == service {
			return h.State
		}
	}
	return ""
}

// TestChangesReachRunningAgents: running agents follow updates without a restart: a new
// host address takes the next circuit, an attribute a bind policy matched is removed and
// the drone stops hosting, an attribute a dial policy matches is added and the operator's
// intercept listener opens, and an agent that was offline during a change catches up.
func TestChangesReachRunningAgents(t *testing.T) {
	m := startMesh(t)
	first, second := echoServer(t, "first"), echoServer(t, "second")
	intercept := freeTCP(t)
	m.edge("create", "service", "echo", "--host", "tcp:"+first, "--intercept", "tcp:"+intercept)
	m.edge("create", "service-policy", "b", "--type", "bind", "--identities", "#drone", "--services", "@echo")
	m.edge("create", "service-policy", "d", "--type", "dial", "--identities", "#operator", "--services", "@echo")
	droneID := m.enroll("drone1", "drone")
	drone := m.agent("drone1", droneID)
	op := m.agent("op", m.enroll("op", "pilot"))
	drone.waitHosting(t, "echo")
	op.waitLinkUp(t)

	t.Run("intercept-opens-when-a-dial-policy-matches", func(t *testing.T) {
		if _, err := dialGreeting(intercept); err == nil {
			t.Fatalf("the intercept answers before op may dial echo")
		}
		m.edge("update", "identity", "op", "--add-attr", "operator")
		waitFollowed(t, "op's intercept listener carries echo", func() bool {
			got, err := dialGreeting(intercept)
			return err == nil && got == "first"
		})
	})
	t.Run("new-host-address-takes-the-next-circuit", func(t *testing.T) {
		m.edge("update", "service", "echo", "--host", "tcp:"+second)
		waitFollowed(t, "a new circuit reaches the new host address", func() bool {
			got, err := dialGreeting(intercept)
			return err == nil && got == "second"
		})
	})
	t.Run("hosting-stops-when-the-bind-policy-no-longer-matches", func(t *testing.T) {
		m.edge("update", "identity", "drone1", "--remove-attr", "drone")
		waitFollowed(t, "drone1 stops hosting echo", func() bool { return drone.hostingState(t, "echo") == "" })
		if got, err := dialGreeting(intercept); err == nil && got != "" {
			t.Errorf("dial after drone1 stopped hosting: %q, want no answer", got)
		}
	})
	t.Run("an-agent-offline-during-a-change-catches-up", func(t *testing.T) {
		drone.stop(t)
		m.edge("update", "identity", "drone1", "--add-attr", "drone")
		m.edge("update", "service", "echo", "--host", "tcp:"+first)
		drone = m.agent("drone1", droneID)
		drone.waitHosting(t, "echo")
		waitFollowed(t, "a circuit reaches the host address set while drone1 was offline", func() bool {
			got, err := dialGreeting(intercept)
			return err == nil && got == "first"
		})
	})
	t.Run("intercept-closes-when-op-may-no-longer-dial", func(t *testing.T) {
		m.edge("update", "identity", "op", "--remove-attr", "operator")
		waitFollowed(t, "op's intercept listener closes", func() bool {
			c, err := net.DialTimeout("tcp", intercept, time.Second)
			if err == nil {
				c.Close()
			}
			return err != nil
		})
	})
}

// TestStatusSaysWhereAFailureIs: `umbra-agent status` names each failure where it is: an
// intercept address another program holds, a hosted service whose local address refuses,
// and an identity the routers refuse once it is deleted; the readable summary says the
// same.
func TestStatusSaysWhereAFailureIs(t *testing.T) {
	m := startMesh(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	refusing := freeTCP(t) // nothing listens there
	m.edge("create", "service", "web", "--host", "tcp:"+refusing, "--intercept", "tcp:"+taken.Addr().String())
	m.edge("create", "service-policy", "b", "--type", "bind", "--identities", "#drone", "--services", "@web")
	m.edge("create", "service-policy", "d", "--type", "dial", "--identities", "#drone", "--services", "@web")
	drone := m.agent("drone1", m.enroll("drone1", "drone"))
	drone.waitHosting(t, "web")

	var st agentStatus
	waitUntil(t, readyTimeout, "status names the refusing target and the taken intercept", func() bool {
		st, err = drone.status(t)
		return err == nil && len(st.Hosting) == 1 && strings.HasPrefix(st.Hosting[0].Target, "unreachable: ") &&
			len(st.Dialing) == 1 && strings.HasPrefix(st.Dialing[0].State, "bind failed: ")
	})
	if st.IdentityState != "ok" || st.Version == "" || st.CertExpires == "" || len(st.Links) != 1 || st.Links[0].BytesSent == 0 {
		t.Errorf("status = %+v, want identity ok, a version, a certificate expiry and an up link's byte counts", st)
	}
	text := must(t, nil, bins.agent, "status", "--status-socket", drone.socket)
	for _, want := range []string{"drone1 (ok)", "target unreachable: ", "bind failed: ", "certificate"} {
		if !strings.Contains(text, want) {
			t.Errorf("status summary lacks %q:\n%s", want, text)
		}
	}

	m.edge("delete", "identity", "drone1")
	waitUntil(t, readyTimeout, "status says the identity is revoked", func() bool {
		st, err = drone.status(t)
		return err == nil && st.IdentityState == "revoked"
	})
	if text := must(t, nil, bins.agent, "status", "--status-socket", drone.socket); !strings.Contains(text, "REVOKED") {
		t.Errorf("status summary after the identity was deleted lacks REVOKED:\n%s", text)
	}
	// Slow retries: in the next few seconds the agent tries the router a handful of times
	// at most, not every 100 ms-2 s.
	before := strings.Count(drone.output(), "router link failed")
	time.Sleep(4 * time.Second) // observe the retry rate over a fixed span
	if n := strings.Count(drone.output(), "router link failed") - before; n > 2 {
		t.Errorf("a revoked agent retried %d times in 4 s, want at most 2 (it waits 5 s and more between tries)", n)
	}
}

// scrape reads a Prometheus text exposition with client_golang's own parser.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: %s", url, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("scrape %s: not the text format: %v", url, err)
	}
	return fams
}

// metricValue is the value of the family's sample whose labels include want, or -1.
func metricValue(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	f := fams[name]
	if f == nil {
		return -1
	}
	for _, m := range f.GetMetric() {
		match := true
		for k, v := range want {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			match = match && found
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		}
	}
	return -1
}

// TestQuickstartMetrics: quickstart serves Prometheus metrics on loopback, named in
// quickstart.json; after a circuit carries traffic the controller's and the router's
// figures show it (bytes each way by service), and the listener answers nothing but
// /metrics.
func TestQuickstartMetrics(t *testing.T) {
	m := startMesh(t)
	q := struct{ Metrics string }{m.metricsURL(t)}
	droneMetrics := freeTCP(t)
	listen, _, op := m.echoFleet(t, "--metrics", droneMetrics)
	c := dialGreeted(t, listen, "drone1")
	echoBytes(t, c, 64<<10, nil)

	// The agent's own metrics: over its status socket, and on its loopback listener.
	out := must(t, nil, bins.agent, "metrics", "--status-socket", op.socket)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	opFams, err := parser.TextToMetricFamilies(strings.NewReader(out))
	if err != nil {
		t.Fatalf("umbra-agent metrics is not the text format: %v\n%s", err, out)
	}
	if got := metricValue(opFams, "umbra_agent_link_sent_bytes_total", map[string]string{"router": m.q.Router}); got < 64<<10 {
		t.Errorf("op's link sent %v bytes, want at least the 64 KiB it carried", got)
	}
	if got := metricValue(opFams, "umbra_agent_links_up_total", nil); got < 1 {
		t.Errorf("op's umbra_agent_links_up_total = %v, want at least 1", got)
	}
	if got := metricValue(opFams, "umbra_agent_dial_listening", map[string]string{"service": "echo"}); got != 1 {
		t.Errorf("op's dial listener for echo: umbra_agent_dial_listening = %v, want 1", got)
	}
	droneFams := scrape(t, "http://"+droneMetrics+"/metrics")
	if got := metricValue(droneFams, "umbra_agent_hosted_bound", map[string]string{"service": "echo"}); got != 1 {
		t.Errorf("drone1 hosting echo: umbra_agent_hosted_bound = %v, want 1", got)
	}
	if _, _, err := run(t, nil, bins.agent, "run", "--identity", filepath.Join(m.dir, "drone1.json"), "--metrics", "0.0.0.0:0", "--status-socket", ""); err == nil {
		t.Errorf("umbra-agent run --metrics 0.0.0.0:0 started, want a refusal: the agent opens no port to the network")
	}

	fams := scrape(t, q.Metrics)
	checks := []struct {
		name   string
		labels map[string]string
		min    float64
	}{
		{"umbra_controller_identities", map[string]string{"state": "enrolled"}, 3}, // admin, drone1, op
		{"umbra_controller_identities", map[string]string{"state": "online"}, 2},
		{"umbra_controller_routers_online", nil, 1},
		{"umbra_controller_bindings", nil, 1},
		{"umbra_controller_events_total", map[string]string{"type": "circuit-opened"}, 1},
		{"umbra_controller_api_requests_total", map[string]string{"route": "POST /v1/{kind}", "code": "201"}, 3},
		{"go_goroutines", nil, 1},
		{"umbra_router_agents_connected", nil, 2},
		{"umbra_router_control_link_up", nil, 1},
		{"umbra_router_circuits_total", map[string]string{"service": "echo"}, 1},
		{"umbra_router_circuit_bytes_total", map[string]string{"service": "echo", "direction": "toward_host"}, 64 << 10},
		{"umbra_router_circuit_bytes_total", map[string]string{"service": "echo", "direction": "toward_dialer"}, 64 << 10},
	}
	for _, ch := range checks {
		if got := metricValue(fams, ch.name, ch.labels); got < ch.min {
			t.Errorf("%s%v = %v, want at least %v", ch.name, ch.labels, got, ch.min)
		}
	}
	for _, path := range []string{"/", "/debug/pprof/", "/v1/identities"} {
		resp, err := http.Get(strings.TrimSuffix(q.Metrics, "/metrics") + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s on the metrics listener: %s, want 404", path, resp.Status)
		}
	}
}

// metricsURL is the quickstart's metrics URL, as quickstart.json names it.
func (m *mesh) metricsURL(t *testing.T) string {
	t.Helper()
	var q struct {
		Metrics string `json:"metrics"`
	}
	raw, err := os.ReadFile(filepath.Join(m.dir, "qs", "quickstart.json"))
	if err != nil || json.Unmarshal(raw, &q) != nil || !strings.HasPrefix(q.Metrics, "http://127.0.0.1:") || !strings.HasSuffix(q.Metrics, "/metrics") {
		t.Fatalf("quickstart.json metrics = %q (%v), want http://127.0.0.1:PORT/metrics", q.Metrics, err)
	}
	return q.Metrics
}

// udpMetricsDatagrams is how many datagrams TestQuickstartMetricsCountDatagrams echoes
// after the first: few enough to send one at a time, each waiting for its echo.
const udpMetricsDatagrams = 50

// TestQuickstartMetricsCountDatagrams: after a UDP circuit echoes datagrams, the
// router's datagram counter for the service shows them each way, and its drop counter
// is exported with every reason, at zero for a circuit that lost nothing to the router.
func TestQuickstartMetricsCountDatagrams(t *testing.T) {
	m := startMesh(t)
	url := m.metricsURL(t)
	c, _ := m.udpEchoFleet(t)

	echoed := 0
	buf := make([]byte, 64)
	for range udpMetricsDatagrams {
		c.Write([]byte("telemetry"))
		c.SetReadDeadline(time.Now().Add(time.Second))
		if n, err := c.Read(buf); err == nil && string(buf[:n]) == "telemetry" {
			echoed++
		}
	}
	if echoed == 0 {
		t.Fatalf("none of %d datagrams came back through the circuit", udpMetricsDatagrams)
	}
	fams := scrape(t, url)
	for _, dir := range []string{"toward_host", "toward_dialer"} {
		if got := metricValue(fams, "umbra_router_circuit_datagrams_total", map[string]string{"service": "mavlink", "direction": dir}); got < float64(echoed) {
			t.Errorf("umbra_router_circuit_datagrams_total{service=mavlink,direction=%s} = %v, want at least the %d echoed", dir, got, echoed)
		}
	}
	for _, reason := range []string{"malformed", "unknown_circuit", "queue_full", "oversize", "receive_full", "stale"} {
		if got := metricValue(fams, "umbra_router_datagrams_dropped_total", map[string]string{"reason": reason}); got < 0 {
			t.Errorf("umbra_router_datagrams_dropped_total{reason=%s} missing, want it exported from the start", reason)
		}
	}
	if got := metricValue(fams, "umbra_router_datagrams_dropped_total", map[string]string{"reason": "queue_full"}); got != 0 {
		t.Errorf("umbra_router_datagrams_dropped_total{reason=queue_full} = %v after one datagram at a time, want 0", got)
	}
}
