// Package grant is the controller's signed permission for one circuit: which identity
// may reach which service on which host, through which routers, until when. Routers and
// agents verify it offline against the controller's signer certificate, so circuits keep
// working while the ground link is down; what expires, expires by time.
package grant

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/umbranet/umbra/internal/pki"
	"github.com/umbranet/umbra/internal/wire"
)

// Lifetime is how long a grant may be used to set up a circuit. An established circuit
// lives on until it ends or is revoked.
const Lifetime = 2 * time.Minute

// MaxSize caps an encoded grant before anything parses it.
const MaxSize = 4 << 10

// scalarSize is the byte length of a P-256 signature's r and s.
const scalarSize = 32

// Operations a grant allows.
const (
	OpDial = "dial"
)

// Grant is what the controller allows for one circuit.
type Grant struct {
	// Circuit is the controller's id of the circuit, unique per grant.
	Circuit string `cbor:"1,keyasint"`
	// Op is the operation granted (OpDial).
	Op string `cbor:"2,keyasint"`
	// Service is the service's id and ServiceName its name.
	Service     string `cbor:"3,keyasint"`
	ServiceName string `cbor:"4,keyasint"`
	// Proto is "tcp" or "udp".
	Proto string `cbor:"5,keyasint"`
	// Dialer and Host are the identity ids at the two ends.
	Dialer string `cbor:"6,keyasint"`
	Host   string `cbor:"7,keyasint"`
	// Routers are the router ids of the path, dialer's side first.
	Routers []string `cbor:"8,keyasint"`
	// Expires is the Unix time after which the grant sets up nothing.
	Expires int64 `cbor:"9,keyasint"`
}

// signed is the encoded form: the grant's CBOR and the signer's r||s over its SHA-256.
type signed struct {
	Payload   []byte `cbor:"1,keyasint"`
	Signature []byte `cbor:"2,keyasint"`
}

// Sign encodes g and signs it with the controller's signer key.
func Sign(g Grant, key *ecdsa.PrivateKey) ([]byte, error) {
	payload, err := wire.Marshal(g)
	if err != nil {
		return nil, fmt.Errorf("grant: encode: %w", err)
	}
	sum := sha256.Sum256(payload)
	r, s, err := ecdsa.Sign(rand.Reader, key, sum[:])
	if err != nil {
		return nil, fmt.Errorf("grant: sign: %w", err)
	}
	sig := make([]byte, 2*scalarSize)
	r.FillBytes(sig[:scalarSize])
	s.FillBytes(sig[scalarSize:])
	return wire.Marshal(signed{Payload: payload, Signature: sig})
}

// Errors a verifier may match.
var (
	ErrSignature = errors.New("grant: signature invalid")
	ErrExpired   = errors.New("grant: expired")
)

// Verify checks the grant's signature against pub and its expiry at now.
func Verify(data []byte, pub *ecdsa.PublicKey, now time.Time) (Grant, error) {
	g, err := VerifySignature(data, pub)
	if err != nil {
		return g, err
	}
	if !now.Before(time.Unix(g.Expires, 0)) {
		return g, ErrExpired
	}
	return g, nil
}

// VerifySignature checks only the grant's signature against pub: for a circuit set up
// while its grant was valid, which lives on past the grant's expiry (a controller that
// re-checks the circuits a router carries, say).
func VerifySignature(data []byte, pub *ecdsa.PublicKey) (Grant, error) {
	var g Grant
	if len(data) > MaxSize {
		return g, errors.New("grant: too large")
	}
	var sg signed
	if err := wire.Unmarshal(data, &sg); err != nil {
		return g, fmt.Errorf("grant: malformed: %w", err)
	}
	if len(sg.Signature) != 2*scalarSize {
		return g, ErrSignature
	}
	sum := sha256.Sum256(sg.Payload)
	r := new(big.Int).SetBytes(sg.Signature[:scalarSize])
	s := new(big.Int).SetBytes(sg.Signature[scalarSize:])
	if !ecdsa.Verify(pub, sum[:], r, s) {
		return g, ErrSignature
	}
	if err := wire.Unmarshal(sg.Payload, &g); err != nil {
		return g, fmt.Errorf("grant: malformed payload: %w", err)
	}
	return g, nil
}

// SignerKey checks that chain (signer certificate, then intermediates) leads to roots and
// names the controller's signer, and returns the signer's public key.
func SignerKey(chain []*x509.Certificate, roots *x509.CertPool) (*ecdsa.PublicKey, error) {
	subj, err := pki.Verify(chain, roots, x509.ExtKeyUsageAny)
	if err != nil {
		return nil, fmt.Errorf("grant: signer certificate: %w", err)
	}
	if subj.Kind != pki.KindController || subj.ID != pki.SignerID {
		return nil, errors.New("grant: certificate is not the controller's signer")
	}
	pub, ok := chain[0].PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return nil, errors.New("grant: signer key is not ECDSA")
	}
	return pub, nil
}
