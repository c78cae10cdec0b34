// Package identity is the identity file (ID.json) that enrollment writes and every
// program loads to prove who it is: name and id, the controller's URL, the certificate
// chain, the root CA to trust, and a reference to the private key in its key store.
package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/umbranet/umbra/hal/keystore"
	"github.com/umbranet/umbra/internal/pki"
)

// fileMode is the mode of every identity file: it may hold a private key.
const fileMode = 0o600

// File is the content of an identity file.
type File struct {
	// Name and ID are the subject's name and stable id in the controller's store.
	Name string `json:"name"`
	ID   string `json:"id"`
	// Kind is pki.KindIdentity or pki.KindRouter.
	Kind string `json:"kind"`
	// Controller is the controller's management URL, https://HOST:PORT.
	Controller string `json:"controller"`
	// Controllers lists the management URLs of every member of the controller
	// cluster, as they were when the file was written or last refreshed; a program
	// fails over among Controller and these.
	Controllers []string `json:"controllers,omitempty"`
	// Cert is the PEM chain: the subject's certificate, then the intermediate.
	Cert string `json:"cert"`
	// CA is the PEM root certificate this subject trusts.
	CA string `json:"ca"`
	// Signer is the PEM chain (signer certificate, intermediate) of the controller's
	// token and grant signer, checked against CA at enrollment.
	Signer string `json:"signer"`
	// Key says where the private key lives.
	Key keystore.Ref `json:"key"`
}

// ControllerURLs is Controller followed by the other Controllers, without repeats.
func (f *File) ControllerURLs() []string {
	out := []string{f.Controller}
	for _, u := range f.Controllers {
		if u != "" && !slices.Contains(out, u) {
			out = append(out, u)
		}
	}
	return out
}

// Load reads an identity file.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	var f File
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("identity: %s: %w", path, err)
	}
	if f.Cert == "" || f.CA == "" || f.Controller == "" {
		return nil, fmt.Errorf("identity: %s: missing certificate, CA or controller", path)
	}
	return &f, nil
}

// Save writes f to path atomically with mode 0600: a failed save leaves any existing file
// as it was.
func (f *File) Save(path string) error {
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	return WriteFileAtomic(path, append(data, '\n'), fileMode)
}

// WriteFileAtomic writes data to a temporary file beside path, syncs it and renames it
// over path, so readers see the old or the new content, never a torn one.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// Chain parses the certificate chain.
func (f *File) Chain() ([]*x509.Certificate, error) {
	c, err := pki.ParseCerts([]byte(f.Cert))
	if err != nil {
		return nil, fmt.Errorf("identity: certificate: %w", err)
	}
	return c, nil
}

// Roots is the pool of trusted roots.
func (f *File) Roots() (*x509.CertPool, error) {
	c, err := pki.ParseCerts([]byte(f.CA))
	if err != nil {
		return nil, fmt.Errorf("identity: CA: %w", err)
	}
	return pki.Pool(c...), nil
}

// SignerKey returns the controller's grant-signing key, after checking its chain
// against the root.
func (f *File) SignerKey() (*ecdsa.PublicKey, error) {
	chain, err := pki.ParseCerts([]byte(f.Signer))
	if err != nil {
		return nil, fmt.Errorf("identity: signer: %w", err)
	}
	roots, err := f.Roots()
	if err != nil {
		return nil, err
	}
	subj, err := pki.Verify(chain, roots, x509.ExtKeyUsageAny)
	if err != nil || subj.Kind != pki.KindController || subj.ID != pki.SignerID {
		return nil, fmt.Errorf("identity: signer certificate does not chain to the root: %v", err)
	}
	pub, ok := chain[0].PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return nil, errors.New("identity: signer key is not ECDSA")
	}
	return pub, nil
}

// Certificate opens the key and returns the TLS certificate for this identity. The
// caller closes the key when done with it.
func (f *File) Certificate(ctx context.Context) (tls.Certificate, keystore.Key, error) {
	chain, err := f.Chain()
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	key, err := keystore.Open(ctx, f.Key)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("identity: open key: %w", err)
	}
	if !pki.SameKey(chain[0].PublicKey, key.Public()) {
		key.Close()
		return tls.Certificate{}, nil, errors.New("identity: key does not match certificate")
	}
	cert := tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, c := range chain {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	return cert, key, nil
}

// Credentials is what a running agent or router needs of its identity.
type Credentials struct {
	// Cert is the TLS certificate chain with the key that signs for it.
	Cert tls.Certificate
	// Key is the opened key; the caller closes it when done.
	Key keystore.Key
	// Roots trusts the controller's root CA.
	Roots *x509.CertPool
	// Signer is the controller's grant-signing key, checked against Roots.
	Signer *ecdsa.PublicKey
}

// Open checks the signer and root certificates and opens the key.
func (f *File) Open(ctx context.Context) (*Credentials, error) {
	signer, err := f.SignerKey()
	if err != nil {
		return nil, err
	}
	roots, err := f.Roots()
	if err != nil {
		return nil, err
	}
	cert, key, err := f.Certificate(ctx)
	if err != nil {
		return nil, err
	}
	return &Credentials{Cert: cert, Key: key, Roots: roots, Signer: signer}, nil
}
