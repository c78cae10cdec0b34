// Package pki holds the certificate plumbing shared by controller, router and agent:
// P-256 keys, issuing and parsing certificates, PEM bundles, fingerprints, and the
// subject URI that names an identity or router inside a certificate. It keeps no state;
// the controller's CA lives in controller/ca.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"strings"
)

// Subject kinds, as carried in a certificate's umbra URI SAN.
const (
	KindIdentity   = "identity"
	KindRouter     = "router"
	KindController = "controller"
)

// SignerID is the subject id of the controller's certificate that signs tokens and
// grants.
const SignerID = "signer"

// IdentityServerName is the TLS server name an identity's certificate carries, so that
// an agent dialing through a circuit checks, by ordinary hostname verification, that the
// far end is the identity its grant names.
func IdentityServerName(id string) string { return id + ".identity.umbra" }

// RouterServerName is the TLS server name every router certificate carries; who the
// router is comes from its subject URI.
const RouterServerName = "router.umbra"

// uriScheme is the scheme of the URI SAN that names a certificate's subject:
// umbra://KIND/ID.
const uriScheme = "umbra"

// serialBits is the size of random certificate serial numbers (RFC 5280 allows 159).
const serialBits = 128

// Subject is who a certificate speaks for, as the controller recorded it.
type Subject struct {
	Kind string // KindIdentity, KindRouter or KindController
	ID   string // the stable id in the controller's store
	Name string // the unique name, also the certificate's CommonName
}

// URI is the SAN that carries the subject in a certificate.
func (s Subject) URI() *url.URL {
	return &url.URL{Scheme: uriScheme, Host: s.Kind, Path: "/" + s.ID}
}

// SubjectOf reads the subject the controller wrote into cert.
func SubjectOf(cert *x509.Certificate) (Subject, error) {
	for _, u := range cert.URIs {
		if u.Scheme != uriScheme {
			continue
		}
		id := strings.TrimPrefix(u.Path, "/")
		if u.Host == "" || id == "" {
			break
		}
		return Subject{Kind: u.Host, ID: id, Name: cert.Subject.CommonName}, nil
	}
	return Subject{}, errors.New("pki: certificate names no umbra subject")
}

// NewKey makes a P-256 ECDSA key.
func NewKey() (*ecdsa.PrivateKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: generate key: %w", err)
	}
	return k, nil
}

// NewSerial returns a random positive certificate serial number.
func NewSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), serialBits))
	if err != nil {
		return nil, fmt.Errorf("pki: serial: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

// Issue signs tmpl for pub with parent and parentKey; a nil parent self-signs.
func Issue(tmpl, parent *x509.Certificate, pub crypto.PublicKey, parentKey crypto.Signer) (*x509.Certificate, error) {
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		return nil, fmt.Errorf("pki: issue %q: %w", tmpl.Subject.CommonName, err)
	}
	return x509.ParseCertificate(der)
}

// EncodeCerts writes certificates as concatenated PEM blocks.
func EncodeCerts(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// ParseCerts reads every CERTIFICATE block of a PEM bundle; it fails on anything else.
func ParseCerts(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("pki: unexpected PEM block %q", b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("pki: parse certificate: %w", err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("pki: no certificate in PEM data")
	}
	return certs, nil
}

// EncodeKey writes a private key as a PKCS#8 PEM block.
func EncodeKey(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("pki: marshal key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParseKey reads a PKCS#8 PEM ECDSA private key.
func ParseKey(data []byte) (*ecdsa.PrivateKey, error) {
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "PRIVATE KEY" {
		return nil, errors.New("pki: no PRIVATE KEY block")
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("pki: parse key: %w", err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, errors.New("pki: key is not ECDSA")
	}
	return ek, nil
}

// Fingerprint is the lowercase hex SHA-256 of a certificate's DER encoding.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// SerialString is the canonical text form of a certificate serial (lowercase hex).
func SerialString(c *x509.Certificate) string {
	return c.SerialNumber.Text(16)
}

// Pool makes a CertPool of certs.
func Pool(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

// Verify checks that chain[0] chains through chain[1:] to one of roots for usage, and
// returns its subject.
func Verify(chain []*x509.Certificate, roots *x509.CertPool, usage x509.ExtKeyUsage) (Subject, error) {
	if len(chain) == 0 {
		return Subject{}, errors.New("pki: empty certificate chain")
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		return Subject{}, fmt.Errorf("pki: verify %q: %w", chain[0].Subject.CommonName, err)
	}
	return SubjectOf(chain[0])
}

// SameKey reports whether two public keys are equal.
func SameKey(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(x crypto.PublicKey) bool }
	ea, ok := a.(equaler)
	return ok && ea.Equal(b)
}
