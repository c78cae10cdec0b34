package enroll

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/umbranet/umbra/internal/pki"
)

// PathJoin is where a new controller redeems its join token.
const PathJoin = "/v1/controllers/join"

// JoinRequest is the body of POST PathJoin.
type JoinRequest struct {
	Token string `json:"token"`
	CSR   string `json:"csr"`
	// Address is HOST:PORT the new controller will listen on and be reached at.
	Address string `json:"address"`
}

// JoinResponse is what a joining controller receives: its certificate and what it needs
// to sign as the cluster does. It holds private keys (the intermediate's and the
// signer's), so it travels only over the TLS connection pinned by the token.
type JoinResponse struct {
	Name string `json:"name"`
	ID   string `json:"id"`
	// Cert is the PEM chain: the controller's certificate, then the intermediate.
	Cert string `json:"cert"`
	// Root, Intermediate and Signer are PEM certificates; the keys PEM keys.
	Root            string `json:"root"`
	Intermediate    string `json:"intermediate"`
	IntermediateKey string `json:"intermediate_key"`
	Signer          string `json:"signer"`
	SignerKey       string `json:"signer_key"`
	// Peers are the addresses (HOST:PORT) of the cluster's members.
	Peers []string `json:"peers"`
}

// JoinController redeems a controller's join token: it pins the cluster's root from
// the token, verifies the token against the cluster's signer, sends a CSR signed by key
// naming address, and checks the certificate it gets back. Nothing is written.
func JoinController(ctx context.Context, token, address string, key *ecdsa.PrivateKey) (*JoinResponse, error) {
	claims, err := CheckKind(token, pki.KindController)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(claims.Issuer)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("join: token issuer %q is not an https URL", claims.Issuer)
	}
	root, err := pinRoot(ctx, u.Host, claims.RootFingerprint)
	if err != nil {
		return nil, err
	}
	client := &http.Client{
		Timeout:   requestTimeout,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.Pool(root), MinVersion: tls.VersionTLS13}},
	}
	defer client.CloseIdleConnections()
	signer, _, err := fetchSigner(ctx, client, claims.Issuer, root)
	if err != nil {
		return nil, err
	}
	if claims, err = Verify(token, signer, time.Now()); err != nil {
		return nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: claims.Subject}}, key)
	if err != nil {
		return nil, fmt.Errorf("join: make CSR: %w", err)
	}
	body, _ := json.Marshal(JoinRequest{Token: token, CSR: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr})), Address: address})
	var resp JoinResponse
	if err := call(ctx, client, http.MethodPost, claims.Issuer+PathJoin, body, &resp); err != nil {
		return nil, err
	}
	chain, err := pki.ParseCerts([]byte(resp.Cert))
	if err != nil {
		return nil, fmt.Errorf("join: cluster's answer: %w", err)
	}
	subj, err := pki.Verify(chain, pki.Pool(root), x509.ExtKeyUsageServerAuth)
	if err != nil {
		return nil, fmt.Errorf("join: cluster's answer: %w", err)
	}
	if subj.Kind != pki.KindController || subj.ID != claims.Subject || !pki.SameKey(chain[0].PublicKey, key.Public()) {
		return nil, errors.New("join: the cluster's certificate names another subject or key")
	}
	if got := pki.EncodeCerts(root); string(got) != resp.Root {
		return nil, errors.New("join: the cluster's answer carries another root than the token pins")
	}
	return &resp, nil
}
