package controller

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/umbranet/umbra/hal/keystore"
	"github.com/umbranet/umbra/internal/api"
	"github.com/umbranet/umbra/internal/enroll"
	"github.com/umbranet/umbra/internal/identity"
	"github.com/umbranet/umbra/internal/pki"
)

// httpClient trusts the controller's root and presents cert, if any.
func (tc *testController) httpClient(t *testing.T, cert *tls.Certificate) *http.Client {
	t.Helper()
	conf := &tls.Config{RootCAs: tc.CA().Roots(), MinVersion: tls.VersionTLS13}
	if cert != nil {
		conf.Certificates = []tls.Certificate{*cert}
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: conf}, Timeout: 30 * time.Second}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// post sends body to path and returns the status and the error message of the answer.
func post(t *testing.T, c *http.Client, url string, body []byte) (int, string) {
	t.Helper()
	resp, err := c.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var e api.Error
	json.Unmarshal(data, &e)
	return resp.StatusCode, e.Error
}

// csrPEM makes a CSR signed by key.
func csrPEM(t testing.TB, key *ecdsa.PrivateKey) string {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "anything"}}, key)
	if err != nil {
		panic(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

// mismatchedCSR carries the public key of other but is signed by key.
func mismatchedCSR(t *testing.T, key, other *ecdsa.PrivateKey) string {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	mine, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	theirs, _ := x509.MarshalPKIXPublicKey(&other.PublicKey)
	forged := bytes.Replace(der, mine, theirs, 1)
	if bytes.Equal(forged, der) {
		t.Fatal("could not swap the CSR's key")
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: forged}))
}

func enrollBody(_ testing.TB, token, csr string) []byte {
	b, _ := json.Marshal(enroll.Request{Token: token, CSR: csr})
	return b
}

// tamper rewrites one claim of a JWT and keeps the original signature.
func tamper(t *testing.T, token, claim, value string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(payload, &m)
	m[claim] = value
	payload, _ = json.Marshal(m)
	parts[1] = base64.RawURLEncoding.EncodeToString(payload)
	return strings.Join(parts, ".")
}

// algNone re-signs a token's claims with "alg: none" and no signature.
func algNone(t *testing.T, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	header := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
	return header + "." + parts[1] + "."
}

// TestEnrollmentRefusals redeems bad tokens and bad CSRs; each gets a clear error and
// leaves the store exactly as it was, and the genuine token still works afterwards.
func TestEnrollmentRefusals(t *testing.T) {
	tc := startController(t)
	other := startController(t)
	plain := tc.httpClient(t, nil)
	url := tc.URL() + enroll.PathEnroll
	key, _ := pki.NewKey()
	otherKey, _ := pki.NewKey()

	cases := []struct {
		name    string
		request func(t *testing.T) []byte
		status  int
		wantErr string
	}{
		{"expired-token", func(t *testing.T) []byte {
			tok := tc.createIdentity(t, "late", false).JWT
			tc.clock.Advance(enroll.DefaultTokenLifetime + time.Hour)
			t.Cleanup(func() { tc.clock.Advance(-enroll.DefaultTokenLifetime - time.Hour) })
			return enrollBody(t, tok, csrPEM(t, key))
		}, http.StatusUnauthorized, "token expired"},
		{"tampered-subject", func(t *testing.T) []byte {
			a := tc.createIdentity(t, "victim", false)
			b := tc.createIdentity(t, "attacker", false)
			return enrollBody(t, tamper(t, b.JWT, "sub", a.ID), csrPEM(t, key))
		}, http.StatusUnauthorized, "signature invalid"},
		{"alg-none", func(t *testing.T) []byte {
			tok := tc.createIdentity(t, "unsigned", false).JWT
			return enrollBody(t, algNone(t, tok), csrPEM(t, key))
		}, http.StatusUnauthorized, "invalid token"},
		{"token-of-another-controller", func(t *testing.T) []byte {
			tok := other.createIdentity(t, "stranger", false).JWT
			return enrollBody(t, tok, csrPEM(t, key))
		}, http.StatusUnauthorized, "signature invalid"},
		{"token-of-deleted-identity", func(t *testing.T) []byte {
			tok := tc.createIdentity(t, "gone", false).JWT
			if err := tc.api.Delete(context.Background(), "identities", "gone"); err != nil {
				t.Fatal(err)
			}
			return enrollBody(t, tok, csrPEM(t, key))
		}, http.StatusUnauthorized, "token unknown"},
		{"csr-key-mismatch", func(t *testing.T) []byte {
			tok := tc.createIdentity(t, "forger", false).JWT
			return enrollBody(t, tok, mismatchedCSR(t, key, otherKey))
		}, http.StatusBadRequest, "signature does not match"},
		{"garbage-csr", func(t *testing.T) []byte {
			tok := tc.createIdentity(t, "garbled", false).JWT
			return enrollBody(t, tok, "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n")
		}, http.StatusBadRequest, "csr"},
		{"garbage-token", func(t *testing.T) []byte {
			return enrollBody(t, "not.a.token", csrPEM(t, key))
		}, http.StatusUnauthorized, "invalid token"},
		{"malformed-json", func(t *testing.T) []byte {
			return []byte(`{"token": `)
		}, http.StatusBadRequest, "malformed JSON"},
		{"oversized-body", func(t *testing.T) []byte {
			return []byte(`{"token": "` + strings.Repeat("A", api.MaxBodySize) + `"}`)
		}, http.StatusRequestEntityTooLarge, "larger than"},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			body := tt.request(t)
			before := tc.dump(t)
			status, msg := post(t, plain, url, body)
			if status != tt.status || !strings.Contains(msg, tt.wantErr) {
				t.Errorf("got %d %q, want %d with %q", status, msg, tt.status, tt.wantErr)
			}
			if strings.Contains(msg, "\n") || msg == "" {
				t.Errorf("error %q is not one clear line", msg)
			}
			if after := tc.dump(t); after != before {
				t.Errorf("store changed by a refused enrollment:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}

// TestFailedAttemptsDoNotSpoilToken: a CSR that does not verify and a tampered copy of
// the token are refused, and the genuine token then enrolls.
func TestFailedAttemptsDoNotSpoilToken(t *testing.T) {
	tc := startController(t)
	plain := tc.httpClient(t, nil)
	url := tc.URL() + enroll.PathEnroll
	key, _ := pki.NewKey()
	otherKey, _ := pki.NewKey()
	tok := tc.createIdentity(t, "drone1", false, "drone").JWT

	if status, _ := post(t, plain, url, enrollBody(t, tok, mismatchedCSR(t, key, otherKey))); status != http.StatusBadRequest {
		t.Fatalf("mismatched CSR: got %d, want 400", status)
	}
	if status, _ := post(t, plain, url, enrollBody(t, tamper(t, tok, "em", "router"), csrPEM(t, key))); status != http.StatusUnauthorized {
		t.Fatalf("tampered token: got %d, want 401", status)
	}
	if status, msg := post(t, plain, url, enrollBody(t, tok, csrPEM(t, key))); status != http.StatusOK {
		t.Fatalf("genuine token after failed attempts: got %d %q, want 200", status, msg)
	}
}

// TestUsedTokenRefused: the second redemption of a token fails, and the identity keeps
// the certificate of the first.
func TestUsedTokenRefused(t *testing.T) {
	tc := startController(t)
	tok := tc.createIdentity(t, "drone1", false).JWT
	key, _, _ := keystore.NewFileKey()
	first, err := enroll.Enroll(context.Background(), tok, pki.KindIdentity, key)
	if err != nil {
		t.Fatalf("first enrollment: %v", err)
	}
	before := tc.dump(t)
	key2, _, _ := keystore.NewFileKey()
	_, err = enroll.Enroll(context.Background(), tok, pki.KindIdentity, key2)
	if err == nil || !strings.Contains(err.Error(), "already used") {
		t.Fatalf("second enrollment: got %v, want an 'already used' refusal", err)
	}
	if after := tc.dump(t); after != before {
		t.Errorf("store changed by a reused token")
	}
	chain, _ := first.Chain()
	var rec struct {
		Cert struct{ Serial string } `json:"cert"`
	}
	if err := tc.Store().Get("identities", "drone1", &rec); err != nil {
		t.Fatal(err)
	}
	if got, want := rec.Cert.Serial, pki.SerialString(chain[0]); got != want {
		t.Errorf("identity's certificate serial = %s, want the first enrollment's %s", got, want)
	}
}

// TestClientRefusesForeignController: a device holding a token of controller A that is
// pointed at controller B (same address book entry, different root) refuses to go on.
func TestClientRefusesForeignController(t *testing.T) {
	a := startController(t)
	b := startController(t)
	tok := a.createIdentity(t, "drone1", false).JWT
	forged := tamper(t, tok, "iss", b.URL())
	key, _, _ := keystore.NewFileKey()
	_, err := enroll.Enroll(context.Background(), forged, pki.KindIdentity, key)
	if err == nil || !strings.Contains(err.Error(), "does not present the root CA the token pins") {
		t.Fatalf("got %v, want a refusal to trust the other controller", err)
	}
}

// TestManagementAPIRefusals: malformed and oversized bodies, calls without a client
// certificate and with a non-admin's certificate get clear errors and change nothing.
func TestManagementAPIRefusals(t *testing.T) {
	tc := startController(t)
	adminCert, adminKey, err := tc.admin.Certificate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer adminKey.Close()
	tok := tc.createIdentity(t, "pilot", false).JWT
	key, ref, _ := keystore.NewFileKey()
	pilot, err := enroll.Enroll(context.Background(), tok, pki.KindIdentity, key)
	if err != nil {
		t.Fatal(err)
	}
	pilot.Key = ref
	pilotCert, pilotKey, err := pilot.Certificate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer pilotKey.Close()

	asAdmin := tc.httpClient(t, &adminCert)
	cases := []struct {
		name    string
		client  *http.Client
		kind    string // "" is identities
		body    string
		status  int
		wantErr string
	}{
		{"malformed-json", asAdmin, "", `{"name": "x",`, http.StatusBadRequest, "malformed JSON"},
		{"wrong-type", asAdmin, "", `{"name": 7}`, http.StatusBadRequest, "malformed JSON"},
		{"unknown-field", asAdmin, "", `{"name": "x", "root": true}`, http.StatusBadRequest, "unknown field"},
		{"trailing-data", asAdmin, "", `{"name": "x"} {"name": "y"}`, http.StatusBadRequest, "trailing data"},
		{"oversized-body", asAdmin, "", `{"name": "` + strings.Repeat("x", api.MaxBodySize) + `"}`, http.StatusRequestEntityTooLarge, "larger than"},
		{"bad-name", asAdmin, "", `{"name": "a b"}`, http.StatusBadRequest, "bad name"},
		{"bad-attribute", asAdmin, "", `{"name": "x", "attributes": ["#drone"]}`, http.StatusBadRequest, "attribute"},
		{"duplicate-name", asAdmin, "", `{"name": "pilot"}`, http.StatusConflict, "already exists"},
		{"no-client-certificate", tc.httpClient(t, nil), "", `{"name": "x"}`, http.StatusUnauthorized, "client certificate"},
		{"non-admin-certificate", tc.httpClient(t, &pilotCert), "", `{"name": "x"}`, http.StatusForbidden, "no management role"},

		// Field names match exactly: encoding/json alone would take "ADMIN" for "admin".
		{"an upper-case admin field does not make an admin", asAdmin, "", `{"name":"x","ADMIN":true}`, http.StatusBadRequest, `unknown field "ADMIN"`},
		{"a capitalised name field is refused", asAdmin, "", `{"Name":"x"}`, http.StatusBadRequest, `unknown field "Name"`},
		{"a mixed-case field of a service is refused", asAdmin, "services", `{"name":"s","Host":"tcp:h:1"}`, http.StatusBadRequest, `unknown field "Host"`},
		{"a case variant inside a policy is refused", asAdmin, "service-policies", `{"name":"p","type":"dial","identities":["#all"],"services":["#all"],"TYPE":"bind"}`, http.StatusBadRequest, `unknown field "TYPE"`},
		// Duplicate keys are refused, not resolved to the last value.
		{"a repeated admin key is refused", asAdmin, "", `{"name":"x","admin":false,"admin":true}`, http.StatusBadRequest, `duplicate key "admin"`},
		{"a repeated name key is refused", asAdmin, "", `{"name":"x","name":"y"}`, http.StatusBadRequest, `duplicate key "name"`},
		{"a repeated key of a router is refused", asAdmin, "routers", `{"name":"r","attributes":[],"attributes":["a"]}`, http.StatusBadRequest, `duplicate key "attributes"`},
		// Service addresses are parsed as addresses.
		{"a host port above 65535 is refused", asAdmin, "services", `{"name":"s","host":"tcp:host:99999"}`, http.StatusBadRequest, "port"},
		{"a negative host port is refused", asAdmin, "services", `{"name":"s","host":"tcp:host:-1"}`, http.StatusBadRequest, "port"},
		{"a host port of letters is refused", asAdmin, "services", `{"name":"s","host":"tcp:host:abc"}`, http.StatusBadRequest, "port"},
		{"a host name with a space is refused", asAdmin, "services", `{"name":"s","host":"tcp:a b:1"}`, http.StatusBadRequest, "host"},
		{"a host name with a shell substitution is refused", asAdmin, "services", `{"name":"s","host":"tcp:$(id):1"}`, http.StatusBadRequest, "host"},
		{"an intercept port above 65535 is refused", asAdmin, "services", `{"name":"s","intercept":"udp:127.0.0.1:99999"}`, http.StatusBadRequest, "intercept"},
		{"an intercept with a shell substitution is refused", asAdmin, "services", `{"name":"s","intercept":"tcp:$(id):1"}`, http.StatusBadRequest, "intercept"},
		{"a bad host and a bad intercept give one line", asAdmin, "services", `{"name":"s","host":"tcp:h:0","intercept":"tcp:h:0"}`, http.StatusBadRequest, "host"},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			kind := tt.kind
			if kind == "" {
				kind = "identities"
			}
			before := tc.dump(t)
			status, msg := post(t, tt.client, tc.URL()+api.PathPrefix+kind, []byte(tt.body))
			if status != tt.status || !strings.Contains(msg, tt.wantErr) {
				t.Errorf("got %d %q, want %d with %q", status, msg, tt.status, tt.wantErr)
			}
			if strings.Contains(msg, "\n") || msg == "" {
				t.Errorf("got error %q, want one clear line", msg)
			}
			if after := tc.dump(t); after != before {
				t.Errorf("store changed by a refused request:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}

// TestBadBodiesCarryTheirCode: a refused body answers with api.CodeBadRequest, so a
// program can tell it from other refusals without reading the message.
func TestBadBodiesCarryTheirCode(t *testing.T) {
	tc := startController(t)
	adminCert, adminKey, err := tc.admin.Certificate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer adminKey.Close()
	asAdmin := tc.httpClient(t, &adminCert)
	for _, tt := range []struct{ name, kind, body string }{
		{"a case variant", "identities", `{"name":"x","ADMIN":true}`},
		{"a duplicate key", "identities", `{"name":"x","name":"y"}`},
		{"a malformed address", "services", `{"name":"s","host":"tcp:host:99999"}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := asAdmin.Post(tc.URL()+api.PathPrefix+tt.kind, "application/json", strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var e api.Error
			json.NewDecoder(resp.Body).Decode(&e)
			if resp.StatusCode != http.StatusBadRequest || e.Code != api.CodeBadRequest {
				t.Errorf("got %d code %q, want %d code %q", resp.StatusCode, e.Code, http.StatusBadRequest, api.CodeBadRequest)
			}
		})
	}
}

// TestDeletedAdminLosesAccess: once an admin identity is deleted, its certificate no
// longer opens the API.
func TestDeletedAdminLosesAccess(t *testing.T) {
	tc := startController(t)
	second, err := tc.IssueAdmin(context.Background(), "admin2")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(tc.dir, "admin2.json")
	if err := second.Save(path); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("admin file mode = %v, want 0600", fi.Mode().Perm())
	}
	c2, err := api.NewClient(context.Background(), second)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if _, err := c2.List(context.Background(), "identities"); err != nil {
		t.Fatalf("admin2 before deletion: %v", err)
	}
	if err := tc.api.Delete(context.Background(), "identities", "admin2"); err != nil {
		t.Fatal(err)
	}
	c2.Close()
	c3, _ := api.NewClient(context.Background(), second)
	defer c3.Close()
	if _, err := c3.List(context.Background(), "identities"); err == nil || !strings.Contains(err.Error(), "deleted") {
		t.Fatalf("deleted admin: got %v, want a refusal", err)
	}
	_ = identity.File{}
}

// TestWrongKindTokenNotSpent: a client that says it enrolls a router but presents an
// identity's token (and the other way round) is refused with api.CodeWrongTokenKind and
// the store unchanged; each token then enrolls as its own kind.
func TestWrongKindTokenNotSpent(t *testing.T) {
	tc := startController(t)
	plain := tc.httpClient(t, nil)
	url := tc.URL() + enroll.PathEnroll
	idTok := tc.createIdentity(t, "drone1", false).JWT
	rt, err := tc.api.Create(context.Background(), "routers", api.CreateRouter{Name: "relay1"})
	if err != nil {
		t.Fatal(err)
	}
	key, _ := pki.NewKey()
	tests := []struct {
		name, token, claim, tokenKind, text string
	}{
		{"an identity token presented as a router's is refused", idTok, pki.KindRouter, pki.KindIdentity, "this is an identity token"},
		{"a router token presented as an identity's is refused", rt.JWT, pki.KindIdentity, pki.KindRouter, "this is a router token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, _ := json.Marshal(enroll.Request{Token: tt.token, CSR: csrPEM(t, key), Kind: tt.claim})
			before := tc.dump(t)
			resp, err := plain.Post(url, "application/json", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var e api.Error
			json.NewDecoder(resp.Body).Decode(&e)
			if resp.StatusCode != http.StatusBadRequest || e.Code != api.CodeWrongTokenKind {
				t.Errorf("got %d code %q, want %d code %q", resp.StatusCode, e.Code, http.StatusBadRequest, api.CodeWrongTokenKind)
			}
			if !strings.Contains(e.Error, tt.text) {
				t.Errorf("got %q, want it to contain %q", e.Error, tt.text)
			}
			if after := tc.dump(t); after != before {
				t.Errorf("store changed by a wrong-kind enrollment:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
	for _, tt := range tests {
		k, _, _ := keystore.NewFileKey()
		if _, err := enroll.Enroll(context.Background(), tt.token, tt.tokenKind, k); err != nil {
			t.Errorf("got %v enrolling the %s token as its own kind afterwards, want success", err, tt.tokenKind)
		}
	}
}
