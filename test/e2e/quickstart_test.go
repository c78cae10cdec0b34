package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/umbranet/umbra/third_party/quic-go"

	"github.com/umbranet/umbra/controller/ca"
	"github.com/umbranet/umbra/internal/identity"
	"github.com/umbranet/umbra/internal/lab"
	"github.com/umbranet/umbra/internal/pki"
	"github.com/umbranet/umbra/internal/transport"
	"github.com/umbranet/umbra/internal/wire"
)

type quickstartJSON struct {
	Controller string `json:"controller"`
	Router     string `json:"router"`
	Admin      string `json:"admin"`
}

func readQuickstart(t *testing.T, dir string) quickstartJSON {
	t.Helper()
	s, err := lab.ReadQuickstart(dir)
	if err != nil {
		t.Fatal(err)
	}
	return quickstartJSON{Controller: s.Controller, Router: s.Router, Admin: s.Admin}
}

// dialRouter opens an edge QUIC connection to the quickstart's router with cert and
// reports the error.
func dialRouter(t *testing.T, addr string, roots *identity.File, cert *tls.Certificate) error {
	t.Helper()
	return dialRouterNamed(t, addr, "router1", roots, cert)
}

// dialRouterNamed opens an edge QUIC connection to the router named name with cert and
// reports the error.
func dialRouterNamed(t *testing.T, addr, name string, roots *identity.File, cert *tls.Certificate) error {
	t.Helper()
	pool, err := roots.Roots()
	if err != nil {
		t.Fatal(err)
	}
	conf := &tls.Config{RootCAs: pool, ServerName: pki.RouterServerName, NextProtos: []string{transport.ALPNEdge}, MinVersion: tls.VersionTLS13}
	if cert != nil {
		conf.Certificates = []tls.Certificate{*cert}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := quic.DialAddr(ctx, addr, conf, transport.LAN.QUIC())
	if err != nil {
		return err
	}
	defer conn.CloseWithError(0, "")
	// The router checks the client certificate after the client's side of the handshake
	// completes, so only an answer on a stream proves it accepted us.
	s, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return err
	}
	s.SetDeadline(time.Now().Add(10 * time.Second))
	if err := wire.Write(s, wire.TypeHello, wire.Hello{Version: wire.Version}); err != nil {
		return err
	}
	var ack wire.HelloAck
	if err := wire.Expect(s, wire.TypeHelloAck, &ack); err != nil {
		return err
	}
	if ack.Name != name {
		t.Errorf("router answered as %q, want %s", ack.Name, name)
	}
	return nil
}

// TestQuickstartEnrollListRestartDelete is an operator's first ten minutes: quickstart,
// create an identity, enroll a device, see it, restart, still there, delete, revoked.
func TestQuickstartEnrollListRestartDelete(t *testing.T) {
	dir := t.TempDir()
	qsDir := filepath.Join(dir, "qs")
	qs := start(t, bins.umbra, "quickstart", "--dir", qsDir)
	qs.waitFor(t, "ready", readyTimeout)
	first := readQuickstart(t, qsDir)
	if !strings.HasPrefix(first.Controller, "https://127.0.0.1:") || first.Router == "" || first.Admin != filepath.Join(qsDir, "admin.json") {
		t.Fatalf("quickstart.json = %+v, want controller URL, router address and DIR/admin.json", first)
	}
	for _, f := range []string{first.Admin, filepath.Join(qsDir, "router1", "identity.json")} {
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, err %v; want 0600", f, fi.Mode().Perm(), err)
		}
	}
	env := []string{"UMBRA_ADMIN=" + first.Admin}

	if r := find(listJSON(t, env, "routers"), "router1"); r == nil || r["online"] != true {
		t.Fatalf("router1 in `edge list routers` = %v, want listed and online once ready", r)
	}
	if p := find(listJSON(t, env, "edge-router-policies"), "all-routers"); p == nil {
		t.Errorf("edge-router policy #all → #all missing")
	}

	jwt := filepath.Join(dir, "drone1.jwt")
	must(t, env, bins.umbra, "edge", "create", "identity", "drone1", "--attr", "drone", "--attr", "px4", "--jwt-out", jwt)
	idFile := filepath.Join(dir, "drone1.json")
	must(t, nil, bins.agent, "enroll", "--jwt", jwt, "--out", idFile)
	fi, err := os.Stat(idFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("identity file: mode %v, err %v; want 0600", fi.Mode().Perm(), err)
	}
	drone, err := identity.Load(idFile)
	if err != nil {
		t.Fatal(err)
	}
	listed := find(listJSON(t, env, "identities"), "drone1")
	if listed == nil {
		t.Fatalf("drone1 missing from `edge list identities -o json`")
	}
	if attrs, _ := json.Marshal(listed["attributes"]); string(attrs) != `["drone","px4"]` {
		t.Errorf("drone1 attributes = %s, want [\"drone\",\"px4\"]", attrs)
	}

	// The router accepts the enrolled identity and refuses a certificate from another CA.
	cert, key, err := drone.Certificate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer key.Close()
	if err := dialRouter(t, first.Router, drone, &cert); err != nil {
		t.Errorf("enrolled identity dialing router1: %v, want accepted", err)
	}
	foreign := foreignCertificate(t)
	if err := dialRouter(t, first.Router, drone, &foreign); err == nil {
		t.Errorf("certificate from another CA: accepted, want refused at the handshake")
	}
	if err := dialRouter(t, first.Router, drone, nil); err == nil {
		t.Errorf("no client certificate: accepted, want refused at the handshake")
	}

	// Enrolling over an identity file is refused unless --force; with it, a reused token
	// fails and leaves the enrolled file as it was.
	before, _ := os.ReadFile(idFile)
	_, errOut, err := run(t, nil, bins.agent, "enroll", "--jwt", jwt, "--out", idFile)
	if err == nil || strings.Count(strings.TrimSpace(errOut), "\n") != 0 || !strings.Contains(errOut, "exists") || !strings.Contains(errOut, "--force") {
		t.Errorf("enrolling over an identity file: err %v, stderr %q; want one line saying it exists and naming --force", err, errOut)
	}
	_, errOut, err = run(t, nil, bins.agent, "enroll", "--jwt", jwt, "--out", idFile, "--force")
	if err == nil || strings.Count(strings.TrimSpace(errOut), "\n") != 0 || !strings.Contains(errOut, "already used") {
		t.Errorf("reusing the token: err %v, stderr %q; want one line saying it is used", err, errOut)
	}
	if after, _ := os.ReadFile(idFile); string(after) != string(before) {
		t.Errorf("a failed enrollment changed the existing identity file")
	}

	// Restart: same ports, same CA, same records.
	caBefore := drone.CA
	qs.stop(t)
	qs2 := start(t, bins.umbra, "quickstart", "--dir", qsDir)
	qs2.waitFor(t, "ready", readyTimeout)
	second := readQuickstart(t, qsDir)
	if second != first {
		t.Errorf("after restart quickstart.json = %+v, want %+v (same ports)", second, first)
	}
	if find(listJSON(t, env, "identities"), "drone1") == nil {
		t.Fatalf("drone1 gone after restart")
	}
	admin, _ := identity.Load(first.Admin)
	if admin.CA != caBefore {
		t.Errorf("root CA changed across restart")
	}
	if err := dialRouter(t, second.Router, drone, &cert); err != nil {
		t.Errorf("enrolled identity after restart: %v, want accepted", err)
	}

	// Delete: gone, and its serial revoked.
	must(t, env, bins.umbra, "edge", "delete", "identity", "drone1")
	if find(listJSON(t, env, "identities"), "drone1") != nil {
		t.Errorf("drone1 still listed after delete")
	}
	chain, _ := drone.Chain()
	revoked := false
	for _, r := range listJSON(t, env, "revocations") {
		if r["serial"] == pki.SerialString(chain[0]) && r["name"] == "drone1" {
			revoked = true
		}
	}
	if !revoked {
		t.Errorf("drone1's certificate serial %s is not in `edge list revocations`", pki.SerialString(chain[0]))
	}
	_, errOut, err = run(t, env, bins.umbra, "edge", "delete", "identity", "drone1")
	if err == nil || !strings.Contains(errOut, "not found") {
		t.Errorf("deleting drone1 twice: err %v, stderr %q; want a not-found error", err, errOut)
	}
}

// foreignCertificate makes an identity certificate from a CA that is not the controller's.
func foreignCertificate(t *testing.T) tls.Certificate {
	t.Helper()
	other, err := ca.Create(t.TempDir(), []string{"127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	key, _ := pki.NewKey()
	c, err := other.IssueFor(pki.Subject{Kind: pki.KindIdentity, ID: "x", Name: "intruder"}, &key.PublicKey, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{c.Raw, other.Intermediate.Raw}, PrivateKey: key}
}
