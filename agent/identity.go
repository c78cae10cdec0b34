package agent

import (
	"time"

	"github.com/umbranet/umbra/internal/identity"
)

// Identity is an enrolled identity: its name, its certificate and where its private key
// lives. Enroll makes one; LoadIdentity reads one from its file.
type Identity struct {
	file *identity.File
	path string
}

// LoadIdentity reads the identity file at path (`umbra-agent enroll --out` or
// EnrollOptions.Path wrote it). The agent writes renewed certificates back to it.
func LoadIdentity(path string) (*Identity, error) {
	f, err := identity.Load(path)
	if err != nil {
		return nil, err
	}
	return &Identity{file: f, path: path}, nil
}

// Name is the identity's unique name, as `umbra edge list identities` shows it.
func (id *Identity) Name() string { return id.file.Name }

// ID is the identity's stable id in the controller's store.
func (id *Identity) ID() string { return id.file.ID }

// Controller is the URL of the controller the identity enrolled with.
func (id *Identity) Controller() string { return id.file.Controller }

// Path is the identity's file, "" for one kept in memory.
func (id *Identity) Path() string { return id.path }

// KeyStore names the store holding the identity's private key: "file" (in the identity
// file), "tpm" or "atecc608".
func (id *Identity) KeyStore() string { return id.file.Key.Store }

// CertExpires is when the identity's certificate, as enrolled or last loaded, expires;
// a running agent renews it well before (see Status for the one in use). The zero time
// means the certificate could not be read.
func (id *Identity) CertExpires() time.Time {
	chain, err := id.file.Chain()
	if err != nil || len(chain) == 0 {
		return time.Time{}
	}
	return chain[0].NotAfter
}

// identityFile is a copy of the agent's identity file as it stands (renewal changes its
// certificate).
func (a *Agent) identityFile() *identity.File {
	a.mu.Lock()
	defer a.mu.Unlock()
	f := *a.id
	return &f
}
