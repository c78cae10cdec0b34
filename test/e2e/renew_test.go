package e2e

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/umbranet/umbra/internal/identity"
	"github.com/umbranet/umbra/internal/pki"
)

// TestCertificateRenewal: with identity certificates of seconds, a running agent renews
// its certificate over its router link before expiry, keeps its key, writes the new one
// to its identity file, and still reaches its service after the first one expired.
func TestCertificateRenewal(t *testing.T) {
	const lifetime = 6 * time.Second
	dir := t.TempDir()
	qsDir := filepath.Join(dir, "qs")
	qs := start(t, bins.umbra, "quickstart", "--dir", qsDir, "--identity-lifetime", lifetime.String())
	qs.waitFor(t, "ready", readyTimeout)
	m := &mesh{t: t, dir: dir, qs: qs, q: readQuickstart(t, qsDir)}
	m.env = []string{"UMBRA_ADMIN=" + m.q.Admin}
	m.edge("create", "service", "echo", "--host", "tcp:"+echoServer(t, "drone1"))
	m.edge("create", "service-policy", "b", "--type", "bind", "--identities", "#drone", "--services", "@echo")
	m.edge("create", "service-policy", "d", "--type", "dial", "--identities", "#operator", "--services", "@echo")
	droneID := m.enroll("drone1", "drone")
	opID := m.enroll("op", "operator")
	first, err := identity.Load(droneID)
	if err != nil {
		t.Fatal(err)
	}
	firstChain, _ := first.Chain()
	listen := freeTCP(t)
	drone := m.agent("drone1", droneID)
	op := m.agent("op", opID, "--dial", "echo=tcp:"+listen)
	drone.waitHosting(t, "echo")
	op.waitLinkUp(t)

	var renewed *identity.File
	waitUntil(t, 3*lifetime, "drone1's identity file holds a renewed certificate", func() bool {
		f, err := identity.Load(droneID)
		if err != nil {
			return false
		}
		chain, err := f.Chain()
		if err != nil || chain[0].SerialNumber.Cmp(firstChain[0].SerialNumber) == 0 {
			return false
		}
		renewed = f
		return true
	})
	chain, _ := renewed.Chain()
	if !pki.SameKey(chain[0].PublicKey, firstChain[0].PublicKey) {
		t.Errorf("renewed certificate carries another key, want the same key")
	}
	if !chain[0].NotAfter.After(firstChain[0].NotAfter) {
		t.Errorf("renewed certificate expires %v, not after the first's %v", chain[0].NotAfter, firstChain[0].NotAfter)
	}
	// Past the first certificate's expiry, new circuits still work.
	time.Sleep(time.Until(firstChain[0].NotAfter.Add(time.Second))) // wait out the first certificate
	if got, err := dialGreeting(listen); err != nil || got != "drone1" {
		t.Errorf("dial after the first certificate expired: got %q (%v), want drone1", got, err)
	}
}
