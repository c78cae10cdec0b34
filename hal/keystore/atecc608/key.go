package atecc608

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"encoding/asn1"
	"fmt"
	"io"
	"math/big"
	"sync/atomic"
	"time"

	"github.com/umbranet/umbra/hal/keystore/atecc608/internal/wire"
)

// signTimeout bounds one Sign call, which has no context of its own (crypto.Signer):
// three attempts of Random, Nonce and Sign with room to spare.
const signTimeout = 2 * time.Second

// Key is the P-256 private key in one slot of the chip, as a crypto.Signer whose
// signatures are ASN.1 DER like crypto/ecdsa's, so crypto/tls and crypto/x509 use it as is.
type Key struct {
	dev    *Device
	slot   int
	pub    *ecdsa.PublicKey
	closed atomic.Bool
}

// Signer returns the key in slot, reading its public key from the chip.
func (d *Device) Signer(ctx context.Context, slot int) (*Key, error) {
	pub, err := d.PublicKey(ctx, slot)
	if err != nil {
		return nil, err
	}
	return &Key{dev: d, slot: slot, pub: pub}, nil
}

// Public returns the key's *ecdsa.PublicKey.
func (k *Key) Public() crypto.PublicKey { return k.pub }

// Slot returns the chip slot that holds the key.
func (k *Key) Slot() int { return k.slot }

// Sign signs a SHA-256 digest inside the chip. opts must name crypto.SHA256; rand is
// ignored because the chip draws the signature nonce from its own RNG.
func (k *Key) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if k.closed.Load() {
		return nil, fmt.Errorf("%w: key in slot %d", ErrClosed, k.slot)
	}
	if opts == nil {
		return nil, fmt.Errorf("%w: got no hash", ErrHash)
	}
	if h := opts.HashFunc(); h != crypto.SHA256 {
		return nil, fmt.Errorf("%w: got %v", ErrHash, h)
	}
	if len(digest) != wire.DigestSize {
		return nil, fmt.Errorf("%w: got %d bytes, want %d", ErrDigestSize, len(digest), wire.DigestSize)
	}
	ctx, cancel := context.WithTimeout(context.Background(), signTimeout)
	defer cancel()
	rs, err := k.dev.signDigest(ctx, k.slot, digest)
	if err != nil {
		return nil, err
	}
	return asn1.Marshal(struct{ R, S *big.Int }{
		R: new(big.Int).SetBytes(rs[:wire.CoordSize]),
		S: new(big.Int).SetBytes(rs[wire.CoordSize:]),
	})
}

// Close makes the key unusable. The Device and its bus stay open for their owner.
func (k *Key) Close() error {
	k.closed.Store(true)
	return nil
}
