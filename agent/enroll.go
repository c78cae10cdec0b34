package agent

import (
	"context"
	"fmt"
	"strings"

	"github.com/umbranet/umbra/hal/keystore"
	"github.com/umbranet/umbra/internal/enroll"
	"github.com/umbranet/umbra/internal/identity"
	"github.com/umbranet/umbra/internal/pki"
)

// KeyStore says where Enroll makes the device's private key. The zero value is a P-256
// key in the identity file itself (mode 0600).
type KeyStore struct {
	// Store is keystore.StoreFile ("file", also ""), keystore.StoreTPM ("tpm") or
	// keystore.StoreATECC608 ("atecc608").
	Store string
	// TPM is the TPM device, or tcp:HOST:PORT of swtpm (tpm store). "" means
	// keystore.DefaultTPM, /dev/tpmrm0.
	TPM string
	// I2CBus names the secure element's I2C bus by name, alias or number (atecc608
	// store). "" means the first bus; the identity file records the bus actually used.
	I2CBus string
	// I2CAddr is the secure element's 7-bit I2C address (atecc608 store). 0 means 0x60.
	I2CAddr uint16
	// Slot is the secure element's key slot (atecc608 store). Enrollment replaces the key
	// in it.
	Slot int
}

// EnrollOptions says where Enroll keeps what it makes. The zero value keeps the new
// identity, its key included, in memory only: good for a test, lost at exit.
type EnrollOptions struct {
	// Path is the identity file to write, with mode 0600; LoadIdentity reads it back and
	// the agent writes renewed certificates to it. Empty writes no file.
	Path string
	// KeyStore is where the private key is made; the zero value is the identity file.
	KeyStore KeyStore
}

// ErrWrongKind is the error, matched with errors.Is, of a token that enrolls something
// other than an identity (a router's, say).
var ErrWrongKind = enroll.ErrWrongKind

// Enroll redeems an identity's one-time token (the text of the JWT `umbra edge create
// identity` wrote; surrounding white space is ignored) with a new P-256 key made in the
// key store opts names, and writes the identity to opts.Path with mode 0600. With a
// hardware store the file holds only a reference to the key. A failed enrollment writes
// nothing and leaves an existing file as it was. A router's token is refused with
// ErrWrongKind before anything is spent: no key made, no call to the controller, the
// token still good.
func Enroll(ctx context.Context, token string, opts EnrollOptions) (*Identity, error) {
	token = strings.TrimSpace(token)
	out, ks := opts.Path, opts.KeyStore
	// A malformed token, or one of another kind, fails here, before any key is made in
	// hardware (a secure element's GenKey replaces the slot's key).
	if _, err := enroll.CheckKind(token, pki.KindIdentity); err != nil {
		return nil, err
	}
	if err := checkSlotIsFree(out, ks); err != nil {
		return nil, err
	}
	key, ref, err := newKey(ctx, ks)
	if err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	defer key.Close()
	id, err := enroll.Enroll(ctx, token, pki.KindIdentity, key)
	if err != nil {
		return nil, err
	}
	id.Key = ref
	if out != "" {
		if err := id.Save(out); err != nil {
			return nil, fmt.Errorf("enroll: %w", err)
		}
	}
	return &Identity{file: id, path: out}, nil
}

// newKey makes a key in the store ks names.
func newKey(ctx context.Context, ks KeyStore) (keystore.Key, keystore.Ref, error) {
	switch ks.Store {
	case keystore.StoreFile, "":
		return keystore.NewFileKey()
	case keystore.StoreTPM:
		return keystore.NewTPMKey(ctx, ks.TPM)
	case keystore.StoreATECC608:
		return keystore.NewATECC608Key(ctx, ks.I2CBus, ks.I2CAddr, ks.Slot)
	default:
		return nil, keystore.Ref{}, fmt.Errorf("%w %q (want %s, %s or %s)", keystore.ErrUnknownStore,
			ks.Store, keystore.StoreFile, keystore.StoreTPM, keystore.StoreATECC608)
	}
}

// checkSlotIsFree refuses to enroll into the secure-element slot that holds the key of
// the identity already at out. A TPM or file enrollment makes a key beside the old one,
// but the chip's GenKey replaces the key in the slot before the controller has answered,
// so a failed enrollment (a reused token, say) would leave out naming a key that is gone.
func checkSlotIsFree(out string, ks KeyStore) error {
	if ks.Store != keystore.StoreATECC608 {
		return nil
	}
	old, err := identity.Load(out)
	if err != nil {
		// No file, or none that names a key: no identity at out uses the slot.
		return nil
	}
	addr := ks.I2CAddr
	if addr == 0 {
		addr = keystore.DefaultATECC608Addr
	}
	if old.Key.Store == keystore.StoreATECC608 && old.Key.I2CAddr == addr && old.Key.Slot == ks.Slot {
		return fmt.Errorf("enroll: %s already uses the key in atecc608 slot %d, which a new key would destroy; "+
			"enroll into another slot, or remove %s first", out, ks.Slot, out)
	}
	return nil
}
