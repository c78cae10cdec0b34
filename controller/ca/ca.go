// Package ca is the controller's certificate authority: an offline-style P-256 root, an
// intermediate that signs identities and routers, a signer certificate for enrollment
// tokens and grants, and the controller's own server certificate. It decides what a
// certificate says; a CSR contributes only its public key.
package ca

import (
	"crypto/ecdsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/umbranet/umbra/internal/pki"
)

// Lifetimes of what the CA issues.
const (
	RootLifetime         = 20 * 365 * 24 * time.Hour
	IntermediateLifetime = 10 * 365 * 24 * time.Hour
	ServerLifetime       = 2 * 365 * 24 * time.Hour
	// IdentityLifetime is the default lifetime of an identity (device, operator) certificate.
	IdentityLifetime = 90 * 24 * time.Hour
	// RouterLifetime is the default lifetime of a router certificate.
	RouterLifetime = 365 * 24 * time.Hour
	// maxBackdate covers clock skew between the ground station and devices; short-lived
	// certificates are backdated by a tenth of their lifetime at most, so that renewal at
	// two thirds of the lifetime still comes before expiry.
	maxBackdate = 5 * time.Minute
)

// Files in the CA directory. Keys are written 0600.
const (
	rootCert   = "root.pem"
	rootKey    = "root.key"
	interCert  = "intermediate.pem"
	interKey   = "intermediate.key"
	signerCert = "signer.pem"
	signerKey  = "signer.key"
	serverCert = "server.pem"
	serverKey  = "server.key"
)

// SignerName is the CommonName of the certificate that signs tokens and grants.
const SignerName = "umbra controller signer"

// CA holds the controller's certificates and keys.
type CA struct {
	Root         *x509.Certificate
	Intermediate *x509.Certificate
	Signer       *x509.Certificate
	Server       *x509.Certificate

	rootKey, interKey, signerKey, serverKey *ecdsa.PrivateKey
}

// Create makes a new CA in dir (which must not hold one yet). hosts are the DNS names
// and IP addresses the controller's server certificate is valid for.
func Create(dir string, hosts []string, now time.Time) (*CA, error) {
	if _, err := os.Stat(filepath.Join(dir, rootCert)); err == nil {
		return nil, fmt.Errorf("ca: %s already holds a CA", dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	c := &CA{}
	var err error
	keys := []**ecdsa.PrivateKey{&c.rootKey, &c.interKey, &c.signerKey, &c.serverKey}
	for _, k := range keys {
		if *k, err = pki.NewKey(); err != nil {
			return nil, err
		}
	}
	root, err := template("umbra root CA", now, RootLifetime)
	if err != nil {
		return nil, err
	}
	root.IsCA, root.BasicConstraintsValid, root.MaxPathLen = true, true, 1
	root.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	if c.Root, err = pki.Issue(root, nil, &c.rootKey.PublicKey, c.rootKey); err != nil {
		return nil, err
	}
	inter, err := template("umbra intermediate CA", now, IntermediateLifetime)
	if err != nil {
		return nil, err
	}
	inter.IsCA, inter.BasicConstraintsValid, inter.MaxPathLenZero = true, true, true
	inter.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	if c.Intermediate, err = pki.Issue(inter, c.Root, &c.interKey.PublicKey, c.rootKey); err != nil {
		return nil, err
	}
	signer, err := template(SignerName, now, IntermediateLifetime)
	if err != nil {
		return nil, err
	}
	signer.KeyUsage = x509.KeyUsageDigitalSignature
	signer.URIs = append(signer.URIs, pki.Subject{Kind: pki.KindController, ID: pki.SignerID}.URI())
	if c.Signer, err = pki.Issue(signer, c.Intermediate, &c.signerKey.PublicKey, c.interKey); err != nil {
		return nil, err
	}
	server, err := template("umbra controller", now, ServerLifetime)
	if err != nil {
		return nil, err
	}
	controllerCert(server, pki.Subject{Kind: pki.KindController, ID: "server"}, hosts)
	if c.Server, err = pki.Issue(server, c.Intermediate, &c.serverKey.PublicKey, c.interKey); err != nil {
		return nil, err
	}
	if err := c.save(dir); err != nil {
		return nil, err
	}
	return c, nil
}

// controllerCert makes t a controller's certificate: it serves the management API and
// dials the other members of the cluster (Raft, forwarded writes) with it.
func controllerCert(t *x509.Certificate, subj pki.Subject, hosts []string) {
	t.KeyUsage = x509.KeyUsageDigitalSignature
	t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	t.URIs = append(t.URIs, subj.URI())
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			t.IPAddresses = append(t.IPAddresses, ip)
		} else {
			t.DNSNames = append(t.DNSNames, h)
		}
	}
}

// IssueController signs the certificate of a controller joining the cluster: subj is
// its record, hosts the names and addresses it is reached at.
func (c *CA) IssueController(subj pki.Subject, pub any, hosts []string, now time.Time) (*x509.Certificate, error) {
	if _, ok := pub.(*ecdsa.PublicKey); !ok {
		return nil, errors.New("ca: only ECDSA public keys are accepted")
	}
	t, err := template(subj.Name, now, ServerLifetime)
	if err != nil {
		return nil, err
	}
	controllerCert(t, subj, hosts)
	return pki.Issue(t, c.Intermediate, pub, c.interKey)
}

// Material is what a joining controller needs to sign as the cluster does: the root
// (its certificate only), the intermediate and the token and grant signer, in PEM.
type Material struct {
	Root            string `json:"root"`
	Intermediate    string `json:"intermediate"`
	IntermediateKey string `json:"intermediate_key"`
	Signer          string `json:"signer"`
	SignerKey       string `json:"signer_key"`
}

// Material exports the CA for a joining controller.
func (c *CA) Material() (Material, error) {
	ik, err := pki.EncodeKey(c.interKey)
	if err != nil {
		return Material{}, err
	}
	sk, err := pki.EncodeKey(c.signerKey)
	if err != nil {
		return Material{}, err
	}
	return Material{
		Root: string(pki.EncodeCerts(c.Root)), Intermediate: string(pki.EncodeCerts(c.Intermediate)),
		IntermediateKey: string(ik), Signer: string(pki.EncodeCerts(c.Signer)), SignerKey: string(sk),
	}, nil
}

// FromMaterial is the CA that m describes, able to issue certificates; it has no
// server certificate of its own.
func FromMaterial(m Material) (*CA, error) {
	c := &CA{}
	parse := func(certPEM, keyPEM string, cert **x509.Certificate, key **ecdsa.PrivateKey) error {
		cs, err := pki.ParseCerts([]byte(certPEM))
		if err != nil {
			return err
		}
		*cert = cs[0]
		if key == nil {
			return nil
		}
		*key, err = pki.ParseKey([]byte(keyPEM))
		return err
	}
	if err := errors.Join(parse(m.Root, "", &c.Root, nil), parse(m.Intermediate, m.IntermediateKey, &c.Intermediate, &c.interKey),
		parse(m.Signer, m.SignerKey, &c.Signer, &c.signerKey)); err != nil {
		return nil, fmt.Errorf("ca: material: %w", err)
	}
	return c, nil
}

// Install writes a controller's CA directory from the cluster's material and the
// member's own certificate and key. It refuses a directory that holds a CA.
func Install(dir string, m Material, server *x509.Certificate, serverKey *ecdsa.PrivateKey) (*CA, error) {
	if _, err := os.Stat(filepath.Join(dir, rootCert)); err == nil {
		return nil, fmt.Errorf("ca: %s already holds a CA", dir)
	}
	c, err := FromMaterial(m)
	if err != nil {
		return nil, fmt.Errorf("ca: install: %w", err)
	}
	c.Server, c.serverKey = server, serverKey
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	if err := c.save(dir); err != nil {
		return nil, err
	}
	return c, nil
}

// Load reads the CA that Create wrote to dir.
func Load(dir string) (*CA, error) {
	c := &CA{}
	certs := []struct {
		file string
		cert **x509.Certificate
		key  **ecdsa.PrivateKey
		kf   string
	}{
		{rootCert, &c.Root, &c.rootKey, rootKey},
		{interCert, &c.Intermediate, &c.interKey, interKey},
		{signerCert, &c.Signer, &c.signerKey, signerKey},
		{serverCert, &c.Server, &c.serverKey, serverKey},
	}
	for _, e := range certs {
		data, err := os.ReadFile(filepath.Join(dir, e.file))
		if err != nil {
			return nil, fmt.Errorf("ca: load: %w", err)
		}
		cs, err := pki.ParseCerts(data)
		if err != nil {
			return nil, fmt.Errorf("ca: load %s: %w", e.file, err)
		}
		*e.cert = cs[0]
		kd, err := os.ReadFile(filepath.Join(dir, e.kf))
		if e.kf == rootKey && errors.Is(err, os.ErrNotExist) {
			// A joined controller holds the root's certificate, never its key.
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("ca: load: %w", err)
		}
		if *e.key, err = pki.ParseKey(kd); err != nil {
			return nil, fmt.Errorf("ca: load %s: %w", e.kf, err)
		}
	}
	if err := c.upgradeServer(dir); err != nil {
		return nil, err
	}
	return c, nil
}

// upgradeServer reissues, with the same key, names and lifetime left, a server
// certificate made before controllers formed clusters: it lacked the client
// authentication a member needs to dial the others.
func (c *CA) upgradeServer(dir string) error {
	if slices.Contains(c.Server.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		return nil
	}
	t, err := template(c.Server.Subject.CommonName, time.Now(), time.Until(c.Server.NotAfter))
	if err != nil {
		return err
	}
	t.NotBefore = c.Server.NotBefore
	t.KeyUsage = x509.KeyUsageDigitalSignature
	t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	t.URIs, t.IPAddresses, t.DNSNames = c.Server.URIs, c.Server.IPAddresses, c.Server.DNSNames
	server, err := pki.Issue(t, c.Intermediate, &c.serverKey.PublicKey, c.interKey)
	if err != nil {
		return fmt.Errorf("ca: upgrade server certificate: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, serverCert), pki.EncodeCerts(server), 0o644); err != nil {
		return fmt.Errorf("ca: upgrade server certificate: %w", err)
	}
	c.Server = server
	return nil
}

func (c *CA) save(dir string) error {
	files := []struct {
		name string
		cert *x509.Certificate
		key  *ecdsa.PrivateKey
		kf   string
	}{
		{rootCert, c.Root, c.rootKey, rootKey},
		{interCert, c.Intermediate, c.interKey, interKey},
		{signerCert, c.Signer, c.signerKey, signerKey},
		{serverCert, c.Server, c.serverKey, serverKey},
	}
	for _, f := range files {
		if f.key == nil {
			if err := os.WriteFile(filepath.Join(dir, f.name), pki.EncodeCerts(f.cert), 0o644); err != nil {
				return fmt.Errorf("ca: save: %w", err)
			}
			continue
		}
		kp, err := pki.EncodeKey(f.key)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, f.kf), kp, 0o600); err != nil {
			return fmt.Errorf("ca: save: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dir, f.name), pki.EncodeCerts(f.cert), 0o644); err != nil {
			return fmt.Errorf("ca: save: %w", err)
		}
	}
	return nil
}

// Bundle is what /.well-known/est/cacerts serves: root, intermediate and signer, in PEM.
func (c *CA) Bundle() []byte { return pki.EncodeCerts(c.Root, c.Intermediate, c.Signer) }

// RootFingerprint is the SHA-256 fingerprint of the root, pinned by enrollment tokens.
func (c *CA) RootFingerprint() string { return pki.Fingerprint(c.Root) }

// Roots is a pool holding just the root.
func (c *CA) Roots() *x509.CertPool { return pki.Pool(c.Root) }

// SignerKey is the key that signs enrollment tokens and grants.
func (c *CA) SignerKey() *ecdsa.PrivateKey { return c.signerKey }

// ServerChain returns the controller's TLS certificate chain and key. The chain ends
// with the root so a device enrolling for the first time can pin it by fingerprint.
func (c *CA) ServerChain() ([][]byte, *ecdsa.PrivateKey) {
	return [][]byte{c.Server.Raw, c.Intermediate.Raw, c.Root.Raw}, c.serverKey
}

// IssueFor signs a certificate for subj over pub, valid for lifetime from now. Nothing of
// the CSR but its public key reaches the certificate.
func (c *CA) IssueFor(subj pki.Subject, pub any, lifetime time.Duration, now time.Time) (*x509.Certificate, error) {
	if _, ok := pub.(*ecdsa.PublicKey); !ok {
		return nil, errors.New("ca: only ECDSA public keys are accepted")
	}
	t, err := template(subj.Name, now, lifetime)
	if err != nil {
		return nil, err
	}
	t.KeyUsage = x509.KeyUsageDigitalSignature
	t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	if subj.Kind == pki.KindRouter {
		// Routers answer agents and other routers, so they serve as well as dial.
		// Agents dial routers by address, so the certificate names a fixed server name
		// and the router's identity rides in the URI SAN.
		t.ExtKeyUsage = append(t.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
		t.DNSNames = []string{pki.RouterServerName}
	}
	if subj.Kind == pki.KindIdentity {
		// Inside a circuit the hosting agent serves TLS to the dialer, which checks the
		// host's identity by server name.
		t.ExtKeyUsage = append(t.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
		t.DNSNames = []string{pki.IdentityServerName(subj.ID)}
	}
	t.URIs = []*url.URL{subj.URI()}
	return pki.Issue(t, c.Intermediate, pub, c.interKey)
}

// ServerKey is the controller's own key (its certificate is Server).
func (c *CA) ServerKey() *ecdsa.PrivateKey { return c.serverKey }

// ChainFor is the PEM chain a subject presents: its certificate and the intermediate.
func (c *CA) ChainFor(cert *x509.Certificate) []byte { return pki.EncodeCerts(cert, c.Intermediate) }

func template(cn string, now time.Time, lifetime time.Duration) (*x509.Certificate, error) {
	serial, err := pki.NewSerial()
	if err != nil {
		return nil, err
	}
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"umbra"}},
		NotBefore:    now.Add(-min(maxBackdate, lifetime/10)),
		NotAfter:     now.Add(lifetime),
	}, nil
}
