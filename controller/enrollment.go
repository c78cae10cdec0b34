package controller

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/subtle"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/umbranet/umbra/controller/events"
	"github.com/umbranet/umbra/controller/store"
	"github.com/umbranet/umbra/internal/api"
	"github.com/umbranet/umbra/internal/enroll"
	"github.com/umbranet/umbra/internal/pki"
)

// maxTokenLifetime bounds what an admin may ask for: a token is a bearer credential, and
// one that lives for years is one nobody remembers to revoke.
const maxTokenLifetime = 365 * 24 * time.Hour

// newEnrollment makes the outstanding record of a new one-time token for subject id,
// valid for lifetime.
func (c *Controller) newEnrollment(kind store.Kind, id, method string, lifetime time.Duration) *store.Enrollment {
	return &store.Enrollment{
		JTI:       newID(),
		Kind:      kind,
		SubjectID: id,
		Method:    method,
		ExpiresAt: c.cfg.Now().Add(lifetime).UTC(),
	}
}

// tokenLifetime reads an API body's "expires" (a Go duration); empty is the configured
// TokenLifetime.
func (c *Controller) tokenLifetime(expires string) (time.Duration, error) {
	if expires == "" {
		return c.cfg.TokenLifetime, nil
	}
	d, err := time.ParseDuration(expires)
	if err != nil || d <= 0 || d > maxTokenLifetime {
		return 0, fmt.Errorf("expires %q: want a duration above 0 and at most %v, such as 48h", expires, maxTokenLifetime)
	}
	return d, nil
}

// serveReissue issues a new one-time token for an existing identity or router: POST
// /v1/enrollments with an api.CreateEnrollment. Redeeming it revokes the subject's
// certificate of the time; the subject's older unused tokens stop working now.
func (c *Controller) serveReissue(w http.ResponseWriter, r *http.Request) {
	var req api.CreateEnrollment
	if !decode(w, r, &req) {
		return
	}
	life, err := c.tokenLifetime(req.Expires)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if req.Kind != "" && req.Kind != string(store.Identities) && req.Kind != string(store.Routers) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("kind %q: want identities or routers", req.Kind))
		return
	}
	kind, meta, err := c.enrollableNamed(req.Kind, req.Name)
	if err != nil {
		writeStoreError(w, err)
		return
	}
	method := enroll.MethodOTT
	if kind == store.Routers {
		method = enroll.MethodRouter
	}
	enr := c.newEnrollment(kind, meta.ID, method, life)
	jwt, err := c.token(enr)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	cmd := store.Command{Op: store.OpReissue, Enrollment: enr, At: c.cfg.Now().UTC()}
	if err := c.store.Apply(r.Context(), cmd); err != nil {
		writeStoreError(w, err)
		return
	}
	c.log.Info("enrollment issued", "kind", kind, "name", meta.Name, "expires", enr.ExpiresAt)
	c.event(events.Event{Type: events.EnrollmentIssued, Kind: store.Singular(kind), Name: meta.Name})
	writeJSON(w, http.StatusCreated, api.Created{Name: meta.Name, ID: meta.ID, JWT: jwt, ExpiresAt: &enr.ExpiresAt})
}

// enrollableNamed finds the identity or router called name; kind, when set, says which.
// A name both kinds use needs kind.
func (c *Controller) enrollableNamed(kind, name string) (store.Kind, store.Meta, error) {
	var found []store.Kind
	var meta store.Meta
	for _, k := range []store.Kind{store.Identities, store.Routers} {
		if kind != "" && kind != string(k) {
			continue
		}
		var m store.Meta
		if err := c.store.Get(k, name, &m); err == nil {
			found, meta = append(found, k), m
		}
	}
	switch {
	case len(found) == 0:
		return "", meta, fmt.Errorf("no identity or router %q: %w", name, store.ErrNotFound)
	case len(found) > 1:
		return "", meta, fmt.Errorf("both an identity and a router are called %q: say which kind: %w", name, store.ErrExists)
	}
	return found[0], meta, nil
}

// token signs the JWT that redeems e.
func (c *Controller) token(e *store.Enrollment) (string, error) {
	now := c.cfg.Now()
	return enroll.Sign(enroll.Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    c.cfg.URL,
			Subject:   e.SubjectID,
			ID:        e.JTI,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(e.ExpiresAt),
		},
		Method:          e.Method,
		RootFingerprint: c.ca.RootFingerprint(),
		Controllers:     c.ControllerURLs(),
	}, c.ca.SignerKey())
}

// errTokenRefused is the one answer for every token the controller will not redeem, so a
// caller learns nothing about which identities exist.
const errTokenRefused = "token unknown, already used or for a deleted subject"

// serveEnroll redeems a one-time token: everything is checked before the token is
// consumed, so a bad CSR or a tampered request never spoils the genuine token.
func (c *Controller) serveEnroll(w http.ResponseWriter, r *http.Request) {
	var req enroll.Request
	if !decode(w, r, &req) {
		return
	}
	now := c.cfg.Now()
	claims, err := enroll.Verify(req.Token, &c.ca.SignerKey().PublicKey, now)
	if err != nil {
		writeError(w, http.StatusUnauthorized, err.Error())
		return
	}
	if subtle.ConstantTimeCompare([]byte(claims.RootFingerprint), []byte(c.ca.RootFingerprint())) != 1 {
		writeError(w, http.StatusUnauthorized, "token pins another controller's root")
		return
	}
	enr, err := c.store.Enrollment(claims.ID)
	if err != nil || enr.SubjectID != claims.Subject || enr.Method != claims.Method {
		writeError(w, http.StatusUnauthorized, errTokenRefused)
		return
	}
	if req.Kind != "" && req.Kind != claims.Kind() {
		// Refused before anything is spent: the token still enrolls with the right program.
		err := &enroll.WrongKindError{Token: claims.Kind(), Want: req.Kind}
		writeCodedError(w, http.StatusBadRequest, api.CodeWrongTokenKind, err.Error())
		return
	}
	csr, err := parseCSR(req.CSR)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	kind, lifetime := store.Identities, c.cfg.IdentityLifetime
	subj := pki.Subject{Kind: pki.KindIdentity, ID: enr.SubjectID}
	if enr.Kind == store.Routers {
		kind, lifetime, subj.Kind = store.Routers, c.cfg.RouterLifetime, pki.KindRouter
	}
	var meta store.Meta
	if err := c.store.GetByID(kind, enr.SubjectID, &meta); err != nil {
		writeError(w, http.StatusUnauthorized, errTokenRefused)
		return
	}
	subj.Name = meta.Name
	cert, err := c.ca.IssueFor(subj, csr.PublicKey, lifetime, now)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	cmd := store.Command{Op: store.OpEnroll, Kind: kind, JTI: claims.ID, Cert: certInfo(cert), At: now.UTC()}
	if err := c.store.Apply(r.Context(), cmd); err != nil {
		switch {
		case errors.Is(err, store.ErrTokenExpired):
			writeError(w, http.StatusUnauthorized, "enroll: token expired")
		case errors.Is(err, store.ErrTokenUnknown), errors.Is(err, store.ErrNotFound):
			writeError(w, http.StatusUnauthorized, errTokenRefused)
		default:
			writeError(w, http.StatusInternalServerError, err.Error())
		}
		return
	}
	c.log.Info("enrolled", "kind", kind, "name", meta.Name, "serial", pki.SerialString(cert))
	c.event(events.Event{Type: events.Enrolled, Kind: store.Singular(kind), Name: meta.Name})
	// A re-enrollment revoked the subject's previous certificate: routers drop it now.
	c.enforce(r.Context())
	writeJSON(w, http.StatusOK, enroll.Response{
		Name: meta.Name, ID: meta.ID, Kind: subj.Kind,
		Cert: string(c.ca.ChainFor(cert)), CA: string(pki.EncodeCerts(c.ca.Root)),
		Controllers: c.ControllerURLs(),
	})
}

// parseCSR accepts one PEM CSR over a P-256 key whose signature verifies: a CSR signed by
// another key than the one it carries is refused.
func parseCSR(data string) (*x509.CertificateRequest, error) {
	b, _ := pem.Decode([]byte(data))
	if b == nil || b.Type != "CERTIFICATE REQUEST" {
		return nil, errors.New("csr: no CERTIFICATE REQUEST PEM block")
	}
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil {
		return nil, errors.New("csr: " + err.Error())
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, errors.New("csr: signature does not match its public key")
	}
	pub, ok := csr.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, errors.New("csr: key must be ECDSA P-256")
	}
	return csr, nil
}

func certInfo(c *x509.Certificate) *store.Cert {
	return &store.Cert{Serial: pki.SerialString(c), Fingerprint: pki.Fingerprint(c), NotAfter: c.NotAfter.UTC().Truncate(time.Second)}
}

// maxRefusalBody bounds what of a refused enrollment's answer is kept to read its reason.
const maxRefusalBody = 1 << 10

// auditRefusals records every refused enrollment in the event trail, named by the
// address it came from (the token's subject is not to be trusted, or told), with the
// reason the caller was given.
func (c *Controller) auditRefusals(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rec := &refusalRecorder{ResponseWriter: w}
		h(rec, r)
		if rec.status < http.StatusBadRequest {
			return
		}
		var e api.Error
		json.Unmarshal(rec.body, &e)
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			host = r.RemoteAddr
		}
		c.event(events.Event{Type: events.EnrollmentRefused, Name: host, Reason: e.Error})
	}
}

// refusalRecorder keeps the status and the start of the body of an answer.
type refusalRecorder struct {
	http.ResponseWriter
	status int
	body   []byte
}

func (r *refusalRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *refusalRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	if room := maxRefusalBody - len(r.body); room > 0 {
		r.body = append(r.body, b[:min(room, len(b))]...)
	}
	return r.ResponseWriter.Write(b)
}
