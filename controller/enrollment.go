package controller

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/subtle"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"umbra/controller/store"
	"umbra/internal/api"
	"umbra/internal/enroll"
	"umbra/internal/pki"
)

// newEnrollment makes the outstanding record of a new one-time token for subject id.
func (c *Controller) newEnrollment(kind store.Kind, id, method string) *store.Enrollment {
	return &store.Enrollment{
		JTI:       newID(),
		Kind:      kind,
		SubjectID: id,
		Method:    method,
		ExpiresAt: c.cfg.Now().Add(c.cfg.TokenLifetime).UTC(),
	}
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
	writeJSON(w, http.StatusOK, enroll.Response{
		Name: meta.Name, ID: meta.ID, Kind: subj.Kind,
		Cert: string(c.ca.ChainFor(cert)), CA: string(pki.EncodeCerts(c.ca.Root)),
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
