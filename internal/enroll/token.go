// Package enroll is one-time enrollment, both ends of it: the token the controller signs
// (a JWT, ES256) and the device-side exchange that pins the controller's root CA from the
// token, verifies the token, sends a CSR signed by the device's key store and receives a
// certificate chain.
package enroll

import (
	"crypto/ecdsa"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/umbranet/umbra/internal/pki"
)

// Enrollment methods, the token's "em" claim.
const (
	MethodOTT    = "ott"    // an identity's one-time token
	MethodRouter = "router" // a router's one-time token
	// MethodController is a controller's one-time token to join a cluster.
	MethodController = "controller"
)

// DefaultTokenLifetime is how long a token stays valid when the admin does not say.
const DefaultTokenLifetime = 24 * time.Hour

// MaxTokenSize bounds a token before anything parses it.
const MaxTokenSize = 8 << 10

// leeway tolerates clock skew between controller and device on exp/iat.
const leeway = 30 * time.Second

// Claims is what an enrollment token says.
type Claims struct {
	jwt.RegisteredClaims
	// Method is "ott", "router" or "controller".
	Method string `json:"em"`
	// RootFingerprint is the hex SHA-256 of the controller's root CA certificate.
	RootFingerprint string `json:"rootfp"`
	// Controllers lists the management URLs of every member of the issuing cluster,
	// for the redeemer to try when the issuer does not answer.
	Controllers []string `json:"ctrls,omitempty"`
}

// controllerURLs is the issuer, then the token's other https controllers, without
// repeats.
func (c Claims) controllerURLs() []string {
	out := []string{c.Issuer}
	for _, s := range c.Controllers {
		u, err := url.Parse(s)
		if err != nil || u.Scheme != "https" || u.Host == "" || slices.Contains(out, s) {
			continue
		}
		out = append(out, s)
	}
	return out
}

// Sign makes a token carrying c, signed with the controller's signer key.
func Sign(c Claims, key *ecdsa.PrivateKey) (string, error) {
	s, err := jwt.NewWithClaims(jwt.SigningMethodES256, c).SignedString(key)
	if err != nil {
		return "", fmt.Errorf("enroll: sign token: %w", err)
	}
	return s, nil
}

// Peek reads a token's claims without verifying it, to learn where the controller is
// and which root to pin. Nothing it returns may be trusted before Verify.
func Peek(token string) (Claims, error) {
	var c Claims
	if len(token) > MaxTokenSize {
		return c, errors.New("enroll: token too large")
	}
	if _, _, err := jwt.NewParser().ParseUnverified(token, &c); err != nil {
		return c, fmt.Errorf("enroll: malformed token: %w", err)
	}
	if err := c.check(); err != nil {
		return c, err
	}
	return c, nil
}

// Verify checks the token's ES256 signature against pub and its expiry at now, and
// returns its claims.
func Verify(token string, pub *ecdsa.PublicKey, now time.Time) (Claims, error) {
	var c Claims
	if len(token) > MaxTokenSize {
		return c, errors.New("enroll: token too large")
	}
	unverified, _, err := jwt.NewParser().ParseUnverified(token, &Claims{})
	if err != nil {
		return c, fmt.Errorf("enroll: invalid token: %w", err)
	}
	if alg := unverified.Method.Alg(); alg != jwt.SigningMethodES256.Alg() {
		return c, fmt.Errorf("enroll: invalid token: alg %q refused, want ES256", alg)
	}
	p := jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodES256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(leeway),
		jwt.WithTimeFunc(func() time.Time { return now }),
	)
	_, err = p.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return pub, nil })
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return c, errors.New("enroll: token expired")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return c, errors.New("enroll: token signature invalid (not signed by this controller)")
	case err != nil:
		return c, fmt.Errorf("enroll: invalid token: %w", err)
	}
	if err := c.check(); err != nil {
		return c, err
	}
	return c, nil
}

// Kind is what the token enrolls: pki.KindIdentity for MethodOTT, pki.KindRouter for
// MethodRouter, "" for a method this program does not know.
func (c Claims) Kind() string {
	switch c.Method {
	case MethodOTT:
		return pki.KindIdentity
	case MethodRouter:
		return pki.KindRouter
	case MethodController:
		return pki.KindController
	}
	return ""
}

// ErrWrongKind is wrapped by every *WrongKindError.
var ErrWrongKind = errors.New("enroll: token of another kind")

// WrongKindError is the refusal of a token that enrolls another kind of subject than
// the program redeeming it: an identity's token given to a router, say. Nothing was
// spent: the token still enrolls with the right program.
type WrongKindError struct {
	// Token is the kind the token enrolls (pki.KindIdentity, pki.KindRouter).
	Token string
	// Want is the kind the program enrolls.
	Want string
}

// Error names the token's kind and the command that redeems it, on one line.
func (e *WrongKindError) Error() string {
	article, command := kindWords(e.Token)
	return fmt.Sprintf("enroll: this is %s %s token; use %s", article, e.Token, command)
}

// Unwrap returns ErrWrongKind, for errors.Is.
func (e *WrongKindError) Unwrap() error { return ErrWrongKind }

// kindWords returns the article of a kind's name and the command that enrolls it.
func kindWords(kind string) (article, command string) {
	switch kind {
	case pki.KindIdentity:
		return "an", "`umbra-agent enroll`"
	case pki.KindRouter:
		return "a", "`umbra router enroll`"
	case pki.KindController:
		return "a", "`umbra controller join`"
	}
	return "a", "the command that enrolls a " + kind
}

// CheckKind reads token's claims without verifying it (Peek) and refuses it with a
// *WrongKindError unless it enrolls want (pki.KindIdentity or pki.KindRouter). It makes
// no call and writes nothing, so a refused token is not spent.
func CheckKind(token, want string) (Claims, error) {
	c, err := Peek(token)
	if err != nil {
		return c, err
	}
	if kind := c.Kind(); kind != want {
		return c, &WrongKindError{Token: kind, Want: want}
	}
	return c, nil
}

func (c Claims) check() error {
	switch {
	case c.Method != MethodOTT && c.Method != MethodRouter && c.Method != MethodController:
		return fmt.Errorf("enroll: token has unknown enrollment method %q", c.Method)
	case c.ID == "" || c.Subject == "" || c.Issuer == "":
		return errors.New("enroll: token lacks jti, sub or iss")
	case len(c.RootFingerprint) != 64:
		return errors.New("enroll: token lacks the controller's root fingerprint")
	}
	return nil
}
