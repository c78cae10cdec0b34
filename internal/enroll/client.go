package enroll

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/umbranet/umbra/internal/api"
	"github.com/umbranet/umbra/internal/identity"
	"github.com/umbranet/umbra/internal/pki"
)

// Paths the controller serves for enrollment.
const (
	PathCACerts = "/.well-known/est/cacerts"
	PathEnroll  = "/v1/enroll"
)

// Bounds of the device side of the exchange.
const (
	requestTimeout  = 30 * time.Second
	maxResponseSize = 1 << 20
)

// Request is the body of POST /v1/enroll.
type Request struct {
	Token string `json:"token"`
	CSR   string `json:"csr"`
	// Kind is the kind of subject the caller enrolls (pki.KindIdentity or
	// pki.KindRouter). The controller refuses a token of another kind without
	// spending it. "" (a client older than the field) is not checked.
	Kind string `json:"kind,omitempty"`
}

// Response is the controller's answer to an enrollment.
type Response struct {
	Name string `json:"name"`
	ID   string `json:"id"`
	Kind string `json:"kind"`
	// Cert is the PEM chain: the new certificate, then the intermediate.
	Cert string `json:"cert"`
	// CA is the PEM root.
	CA string `json:"ca"`
	// Controllers are the management URLs of every member of the controller cluster.
	Controllers []string `json:"controllers,omitempty"`
}

// Enroll redeems token with the controller that signed it, as a subject of kind
// (pki.KindIdentity or pki.KindRouter): it refuses a token of another kind before any
// call (a *WrongKindError), pins the root named by the token, verifies the token
// against the controller's signer certificate, sends a CSR signed by key and checks the
// chain it gets back. The returned file has no key reference yet; the caller sets it.
// Nothing is written anywhere.
//
// A token names every controller of the cluster that issued it: one that cannot be
// reached is left for the next.
func Enroll(ctx context.Context, token, kind string, key crypto.Signer) (*identity.File, error) {
	claims, err := CheckKind(token, kind)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(claims.Issuer)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("enroll: token issuer %q is not an https URL", claims.Issuer)
	}
	var last error
	for _, base := range claims.controllerURLs() {
		f, err := enrollAt(ctx, base, token, kind, key, claims)
		if !errors.As(err, new(*unreachableError)) {
			return f, err
		}
		last = err
	}
	return nil, last
}

// unreachableError is a failure to reach a controller at all, which another member of
// the cluster may not share.
type unreachableError struct{ err error }

func (e *unreachableError) Error() string { return e.err.Error() }
func (e *unreachableError) Unwrap() error { return e.err }

// enrollAt is Enroll with the controller at base.
func enrollAt(ctx context.Context, base, token, kind string, key crypto.Signer, claims Claims) (*identity.File, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("enroll: controller URL %q: %w", base, err)
	}
	root, err := pinRoot(ctx, u.Host, claims.RootFingerprint)
	if err != nil {
		return nil, err
	}
	client := &http.Client{
		Timeout: requestTimeout,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs:    pki.Pool(root),
			MinVersion: tls.VersionTLS13,
		}},
	}
	defer client.CloseIdleConnections()

	signer, signerChain, err := fetchSigner(ctx, client, base, root)
	if err != nil {
		return nil, err
	}
	claims, err = Verify(token, signer, time.Now())
	if err != nil {
		return nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: claims.Subject},
	}, key)
	if err != nil {
		return nil, fmt.Errorf("enroll: make CSR: %w", err)
	}
	body, _ := json.Marshal(Request{
		Token: token,
		CSR:   string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr})),
		Kind:  kind,
	})
	var resp Response
	if err := call(ctx, client, http.MethodPost, base+PathEnroll, body, &resp); err != nil {
		if errors.Is(err, errWrongKindAnswer) {
			return nil, &WrongKindError{Token: claims.Kind(), Want: kind}
		}
		return nil, err
	}
	chain, err := pki.ParseCerts([]byte(resp.Cert))
	if err != nil {
		return nil, fmt.Errorf("enroll: controller's answer: %w", err)
	}
	subj, err := pki.Verify(chain, pki.Pool(root), x509.ExtKeyUsageClientAuth)
	if err != nil {
		return nil, fmt.Errorf("enroll: controller's answer: %w", err)
	}
	if subj.ID != claims.Subject || !pki.SameKey(chain[0].PublicKey, key.Public()) {
		return nil, errors.New("enroll: controller's certificate names another subject or key")
	}
	return &identity.File{
		Name:        subj.Name,
		ID:          subj.ID,
		Kind:        subj.Kind,
		Controller:  base,
		Controllers: resp.Controllers,
		Cert:        string(pki.EncodeCerts(chain...)),
		CA:          string(pki.EncodeCerts(root)),
		Signer:      string(pki.EncodeCerts(signerChain...)),
	}, nil
}

// pinRoot finds the controller's root among the certificates it presents and checks it
// against the fingerprint in the token. The first handshake is made to fail (no root is
// trusted yet) so that Go reports the presented chain; nothing is sent over it.
func pinRoot(ctx context.Context, host, fingerprint string) (*x509.Certificate, error) {
	d := tls.Dialer{Config: &tls.Config{RootCAs: x509.NewCertPool(), MinVersion: tls.VersionTLS13}}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", host)
	if err == nil {
		conn.Close()
		return nil, errors.New("enroll: controller's certificate verified without a root (impossible)")
	}
	var verr *tls.CertificateVerificationError
	if !errors.As(err, &verr) {
		var nerr net.Error
		if errors.As(err, &nerr) || errors.Is(err, context.DeadlineExceeded) {
			return nil, &unreachableError{fmt.Errorf("enroll: reach controller at %s: %w", host, err)}
		}
		return nil, fmt.Errorf("enroll: controller at %s: %w", host, err)
	}
	want := []byte(fingerprint)
	for _, c := range verr.UnverifiedCertificates {
		if c.IsCA && subtle.ConstantTimeCompare([]byte(pki.Fingerprint(c)), want) == 1 {
			return c, nil
		}
	}
	return nil, fmt.Errorf("enroll: controller at %s does not present the root CA the token pins", host)
}

// fetchSigner gets the CA bundle and returns the public key of the controller's token
// signer and its chain, after checking that it chains to root.
func fetchSigner(ctx context.Context, client *http.Client, base string, root *x509.Certificate) (*ecdsa.PublicKey, []*x509.Certificate, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+PathCACerts, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("enroll: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, &unreachableError{fmt.Errorf("enroll: fetch CA bundle: %w", err)}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseSize))
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("enroll: fetch CA bundle: status %d %v", resp.StatusCode, err)
	}
	certs, err := pki.ParseCerts(data)
	if err != nil {
		return nil, nil, fmt.Errorf("enroll: CA bundle: %w", err)
	}
	var inter []*x509.Certificate
	for _, c := range certs {
		if c.IsCA {
			inter = append(inter, c)
		}
	}
	for _, c := range certs {
		if c.IsCA {
			continue
		}
		subj, err := pki.Verify(append([]*x509.Certificate{c}, inter...), pki.Pool(root), x509.ExtKeyUsageAny)
		if err != nil || subj.Kind != pki.KindController || subj.ID != pki.SignerID {
			continue
		}
		if k, ok := c.PublicKey.(*ecdsa.PublicKey); ok {
			return k, append([]*x509.Certificate{c}, nonRoot(inter, root)...), nil
		}
	}
	return nil, nil, errors.New("enroll: CA bundle holds no valid token signer certificate")
}

// nonRoot drops root from certs.
func nonRoot(certs []*x509.Certificate, root *x509.Certificate) []*x509.Certificate {
	var out []*x509.Certificate
	for _, c := range certs {
		if !c.Equal(root) {
			out = append(out, c)
		}
	}
	return out
}

// errWrongKindAnswer is call's error for the controller's api.CodeWrongTokenKind.
var errWrongKindAnswer = errors.New("enroll: controller refused the token's kind")

// call sends a JSON request and decodes a JSON answer or the controller's error.
func call(ctx context.Context, client *http.Client, method, url string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("enroll: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("enroll: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseSize))
	if err != nil {
		return fmt.Errorf("enroll: read answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e api.Error
		if json.Unmarshal(data, &e) == nil && e.Code == api.CodeWrongTokenKind {
			return errWrongKindAnswer
		}
		if e.Error != "" {
			return fmt.Errorf("enroll: controller refused: %s", e.Error)
		}
		return fmt.Errorf("enroll: controller answered %s", resp.Status)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("enroll: controller's answer: %w", err)
	}
	return nil
}
