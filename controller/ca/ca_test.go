package ca

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/umbranet/umbra/internal/pki"
)

// TestLoadUpgradesAServerCertificateWithoutClientAuth: a controller initialized before
// clusters existed gets, on load, a server certificate with the same key and names that
// may also dial other members.
func TestLoadUpgradesAServerCertificateWithoutClientAuth(t *testing.T) {
	dir := t.TempDir()
	c, err := Create(dir, []string{"127.0.0.1", "ground"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// Rewrite the server certificate as Create made it before: server auth only.
	old, _ := template(c.Server.Subject.CommonName, time.Now(), ServerLifetime)
	old.KeyUsage = x509.KeyUsageDigitalSignature
	old.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	old.URIs, old.IPAddresses, old.DNSNames = c.Server.URIs, c.Server.IPAddresses, c.Server.DNSNames
	legacy, err := pki.Issue(old, c.Intermediate, &c.serverKey.PublicKey, c.interKey)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, serverCert), pki.EncodeCerts(legacy), 0o644)

	got, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(got.Server.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		t.Errorf("server certificate usages = %v, want client auth added", got.Server.ExtKeyUsage)
	}
	if !pki.SameKey(got.Server.PublicKey, legacy.PublicKey) || got.Server.DNSNames[0] != "ground" {
		t.Errorf("upgraded certificate changed its key or names")
	}
	if _, err := got.Server.Verify(x509.VerifyOptions{Roots: got.Roots(), Intermediates: pki.Pool(got.Intermediate), DNSName: "ground", KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("upgraded certificate does not verify for client auth: %v", err)
	}
	again, _ := Load(dir)
	if again.Server.SerialNumber.Cmp(got.Server.SerialNumber) != 0 {
		t.Errorf("a second load reissued the certificate again")
	}
}
