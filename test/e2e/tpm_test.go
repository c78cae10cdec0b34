package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/umbranet/umbra/hal/keystore/tpm/swtpmtest"
	"github.com/umbranet/umbra/internal/identity"
)

// TestEnrollWithTPMKeyStore enrolls a device whose key lives in a TPM (swtpm standing
// in for the board's): the identity file names the key and never holds it, the router
// accepts the certificate signed inside the TPM, and once the TPM is wiped the identity
// is dead.
func TestEnrollWithTPMKeyStore(t *testing.T) {
	sw := swtpmtest.Start(t) // fails, naming scripts/setup-deps.sh, without swtpm
	dir := t.TempDir()
	qsDir := filepath.Join(dir, "qs")
	qs := start(t, bins.umbra, "quickstart", "--dir", qsDir)
	qs.waitFor(t, "ready", readyTimeout)
	q := readQuickstart(t, qsDir)
	env := []string{"UMBRA_ADMIN=" + q.Admin}

	jwt := filepath.Join(dir, "drone1.jwt")
	must(t, env, bins.umbra, "edge", "create", "identity", "drone1", "--attr", "drone", "--jwt-out", jwt)
	idFile := filepath.Join(dir, "drone1.json")

	// No TPM at the path: one clear line, no file, and the token is not spent.
	missing := filepath.Join(dir, "tpmrm0")
	_, errOut, err := run(t, nil, bins.agent, "enroll", "--jwt", jwt, "--out", idFile, "--key", "tpm", "--tpm", missing)
	if err == nil || strings.Count(strings.TrimSpace(errOut), "\n") != 0 || !strings.Contains(errOut, "open "+missing+": no such device") {
		t.Errorf("enroll with no TPM at %s: err %v, stderr %q; want one line saying there is no such device", missing, err, errOut)
	}
	if _, err := os.Stat(idFile); !os.IsNotExist(err) {
		t.Errorf("a failed enrollment left %s behind (stat: %v)", idFile, err)
	}

	must(t, nil, bins.agent, "enroll", "--jwt", jwt, "--out", idFile, "--key", "tpm", "--tpm", sw.Path())
	fi, err := os.Stat(idFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("identity file: mode %v, err %v; want 0600", fi.Mode().Perm(), err)
	}
	raw, err := os.ReadFile(idFile)
	if err != nil {
		t.Fatal(err)
	}
	var onDisk struct {
		Key map[string]any `json:"key"`
	}
	if err := json.Unmarshal(raw, &onDisk); err != nil {
		t.Fatalf("identity file: %v", err)
	}
	if strings.Contains(string(raw), "PRIVATE KEY") {
		t.Errorf("identity file holds a PEM private key; want only a reference to the TPM key")
	}
	if _, ok := onDisk.Key["pem"]; ok {
		t.Errorf("identity file key has a pem field; want none with the tpm store")
	}
	if onDisk.Key["store"] != "tpm" || onDisk.Key["tpm"] != sw.Path() || onDisk.Key["public"] == nil || onDisk.Key["private"] == nil {
		t.Errorf("identity file key = %v, want store tpm, tpm %s and both key blobs", onDisk.Key, sw.Path())
	}

	// The certificate is accepted with the key signing inside the TPM.
	drone, err := identity.Load(idFile)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cert, key, err := drone.Certificate(ctx)
	if err != nil {
		t.Fatalf("opening the TPM key of the enrolled identity: %v", err)
	}
	if err := dialRouter(t, q.Router, drone, &cert); err != nil {
		t.Errorf("TPM-backed identity dialing router1: %v, want accepted", err)
	}
	// swtpm serves one connection at a time; give it back before the wipe.
	if err := key.Close(); err != nil {
		t.Fatalf("closing the TPM key: %v", err)
	}

	// A wiped TPM (cleared, or the identity file copied to another board) has other
	// seeds: the blobs no longer load and the identity cannot prove itself.
	sw.Wipe()
	cert, key, err = drone.Certificate(ctx)
	if err == nil {
		defer key.Close()
		if err := dialRouter(t, q.Router, drone, &cert); err == nil {
			t.Fatalf("identity still accepted after its TPM was wiped")
		}
		t.Fatalf("key opened after its TPM was wiped, want a clear error from Certificate")
	}
	if !strings.Contains(err.Error(), "not made by this TPM") {
		t.Errorf("Certificate after the TPM was wiped: %v, want an error saying the key was not made by this TPM", err)
	}
	t.Logf("after wipe: %v", err)
}
