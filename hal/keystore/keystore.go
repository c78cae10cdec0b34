// Package keystore holds a device's private identity key behind crypto.Signer, so TLS,
// QUIC and CSR signing use the key where it lives: a 0600 file, a TPM 2.0 or an
// ATECC608 secure element. ID.json keeps a Ref; with hardware stores the Ref names the
// key and never contains it.
package keystore

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// Store names, as written in Ref.Store and accepted by `umbra-agent enroll --key`.
const (
	StoreFile     = "file"
	StoreTPM      = "tpm"
	StoreATECC608 = "atecc608"
)

// Ref is how an identity file refers to its key. Only the fields of its Store are set.
type Ref struct {
	// Store is one of StoreFile, StoreTPM or StoreATECC608.
	Store string `json:"store"`
	// PEM is the PKCS#8 private key itself (file store only; ID.json is mode 0600).
	PEM string `json:"pem,omitempty"`
	// TPM is the TPM device path (/dev/tpmrm0) or tcp:HOST:PORT for swtpm (tpm store).
	TPM string `json:"tpm,omitempty"`
	// Public and Private are the TPM key blobs; Private is sealed by the TPM's storage
	// key and useless outside that TPM (tpm store).
	Public  []byte `json:"public,omitempty"`
	Private []byte `json:"private,omitempty"`
	// I2CBus and I2CAddr locate the secure element; Slot is its key slot (atecc608 store).
	I2CBus  string `json:"i2c_bus,omitempty"`
	I2CAddr uint16 `json:"i2c_addr,omitempty"`
	Slot    int    `json:"slot,omitempty"`
}

// Key is a private key held by a store. Close releases the device that holds it.
type Key interface {
	crypto.Signer
	Close() error
}

// ErrUnknownStore is returned for a Ref whose Store no driver handles.
var ErrUnknownStore = errors.New("keystore: unknown key store")

// NewFileKey makes a P-256 key in memory and returns it with the Ref that stores it.
func NewFileKey() (Key, Ref, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, Ref{}, fmt.Errorf("keystore: generate: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, Ref{}, fmt.Errorf("keystore: marshal: %w", err)
	}
	p := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	return fileKey{k}, Ref{Store: StoreFile, PEM: string(p)}, nil
}

// OpenFileKey parses the key a file Ref holds.
func OpenFileKey(ref Ref) (Key, error) {
	b, _ := pem.Decode([]byte(ref.PEM))
	if b == nil {
		return nil, errors.New("keystore: file key: no PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("keystore: file key: %w", err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, errors.New("keystore: file key: not an ECDSA key")
	}
	return fileKey{ek}, nil
}

// Open returns the key a Ref names, opening the device that holds it. Closing the Key
// releases that device.
func Open(ctx context.Context, ref Ref) (Key, error) {
	switch ref.Store {
	case StoreFile, "":
		return OpenFileKey(ref)
	case StoreTPM:
		return openTPMKey(ctx, ref)
	case StoreATECC608:
		return openATECC608Key(ctx, ref)
	default:
		return nil, fmt.Errorf("%w %q", ErrUnknownStore, ref.Store)
	}
}

type fileKey struct{ *ecdsa.PrivateKey }

func (fileKey) Close() error { return nil }
