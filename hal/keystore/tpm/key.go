package tpm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"

	"github.com/google/go-tpm/tpm2"
)

const (
	// p256Size is the byte length of a P-256 coordinate, scalar and group order.
	p256Size = 32
	// uncompressedPoint is the SEC 1 prefix of an uncompressed elliptic curve point.
	uncompressedPoint = 0x04
)

// Key is an ECDSA P-256 key held in the TPM. It implements crypto.Signer with the
// signature format of crypto/ecdsa, so crypto/tls and crypto/x509 use it directly. It
// is safe for concurrent use.
type Key struct {
	tpm    *TPM
	handle tpm2.NamedHandle // guarded by tpm.mu
	public *ecdsa.PublicKey
	closed bool // guarded by tpm.mu
}

// Public returns the key's *ecdsa.PublicKey.
func (k *Key) Public() crypto.PublicKey { return k.public }

// Sign signs digest inside the TPM and returns an ASN.1 DER ECDSA signature. As in
// crypto/ecdsa, digests longer than 32 bytes are truncated to the curve order, so
// SHA-384 and SHA-512 work too; shorter digests are refused. rand is unused: the TPM
// draws its own nonce.
func (k *Key) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if h := opts.HashFunc(); h != 0 && len(digest) != h.Size() {
		return nil, fmt.Errorf("tpm: sign: digest is %d bytes, want %d for %v", len(digest), h.Size(), h)
	}
	if len(digest) < p256Size {
		return nil, fmt.Errorf("tpm: sign: digest is %d bytes, want at least %d (SHA-256 or longer)", len(digest), p256Size)
	}
	// ECDSA uses only the leftmost order-length bits of a digest, so signing the first
	// 32 bytes under the key's SHA-256 scheme yields exactly the signature
	// crypto/ecdsa would make over the whole digest.
	digest = digest[:p256Size]

	k.tpm.mu.Lock()
	defer k.tpm.mu.Unlock()
	if k.closed {
		return nil, fmt.Errorf("tpm: sign: %w", ErrClosed)
	}
	rsp, err := tpm2.Sign{
		KeyHandle: k.handle,
		Digest:    tpm2.TPM2BDigest{Buffer: digest},
		InScheme:  tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull}, // the key's own ECDSA-SHA256
		// An unrestricted key needs no proof the TPM hashed the data: a NULL ticket.
		Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck, Hierarchy: tpm2.TPMRHNull},
	}.Execute(k.tpm.tr)
	if err != nil {
		return nil, wrap("sign", err)
	}
	sig, err := rsp.Signature.Signature.ECDSA()
	if err != nil {
		return nil, fmt.Errorf("tpm: sign: %w", err)
	}
	der, err := asn1.Marshal(struct{ R, S *big.Int }{
		new(big.Int).SetBytes(sig.SignatureR.Buffer),
		new(big.Int).SetBytes(sig.SignatureS.Buffer),
	})
	if err != nil {
		return nil, fmt.Errorf("tpm: sign: encode signature: %w", err)
	}
	return der, nil
}

// Close evicts the key from the TPM and releases its hold on the connection. The
// blobs stay valid: LoadKey brings the key back.
func (k *Key) Close() error {
	k.tpm.mu.Lock()
	defer k.tpm.mu.Unlock()
	if k.closed {
		return nil
	}
	k.closed = true
	k.tpm.flushLocked(k.handle.Handle)
	return k.tpm.releaseLocked()
}

// publicKey checks that pub is a key this package made, an unrestricted P-256 signing
// key bound to its TPM, and returns its public point.
func publicKey(pub tpm2.TPM2BPublic) (*ecdsa.PublicKey, error) {
	area, err := pub.Contents()
	if err != nil {
		return nil, err
	}
	attrs := area.ObjectAttributes
	if area.Type != tpm2.TPMAlgECC || !attrs.SignEncrypt || attrs.Decrypt || attrs.Restricted ||
		!attrs.FixedTPM || !attrs.FixedParent || !attrs.SensitiveDataOrigin {
		return nil, errors.New("not a TPM-bound ECC signing key")
	}
	parms, err := area.Parameters.ECCDetail()
	if err != nil {
		return nil, err
	}
	if parms.CurveID != tpm2.TPMECCNistP256 {
		return nil, fmt.Errorf("curve %v, want NIST P-256", parms.CurveID)
	}
	point, err := area.Unique.ECC()
	if err != nil {
		return nil, err
	}
	x, y := point.X.Buffer, point.Y.Buffer
	if len(x) > p256Size || len(y) > p256Size {
		return nil, errors.New("public point too long for P-256")
	}
	// The TPM may drop leading zero bytes; SEC 1 wants fixed-width coordinates.
	b := make([]byte, 1+2*p256Size)
	b[0] = uncompressedPoint
	copy(b[1+p256Size-len(x):1+p256Size], x)
	copy(b[1+2*p256Size-len(y):], y)
	return ecdsa.ParseUncompressedPublicKey(elliptic.P256(), b)
}
