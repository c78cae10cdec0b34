package keystore

import (
	"context"
	"errors"
	"fmt"

	"github.com/umbranet/umbra/hal/keystore/tpm"
)

// DefaultTPM is the TPM used when a Ref or NewTPMKey names none: the kernel's resource
// manager, which lets several programs share the TPM.
const DefaultTPM = "/dev/tpmrm0"

// NewTPMKey makes a new P-256 key inside the TPM at path (a device such as /dev/tpmrm0,
// or tcp:HOST:PORT for swtpm; "" is DefaultTPM) and returns it with the Ref that names
// it: the TPM-sealed key blobs, which are useless outside that TPM.
func NewTPMKey(ctx context.Context, path string) (Key, Ref, error) {
	if path == "" {
		path = DefaultTPM
	}
	t, err := openTPM(ctx, path)
	if err != nil {
		return nil, Ref{}, err
	}
	// The Key keeps the connection open after this hold on it is released.
	defer t.Close()
	key, public, private, err := t.CreateKey(ctx)
	if err != nil {
		return nil, Ref{}, fmt.Errorf("keystore: %w", err)
	}
	return key, Ref{Store: StoreTPM, TPM: path, Public: public, Private: private}, nil
}

// openTPMKey loads the key of a tpm Ref into the TPM it names.
func openTPMKey(ctx context.Context, ref Ref) (Key, error) {
	if len(ref.Public) == 0 || len(ref.Private) == 0 {
		return nil, errors.New("keystore: tpm key: the reference has no key blobs")
	}
	path := ref.TPM
	if path == "" {
		path = DefaultTPM
	}
	t, err := openTPM(ctx, path)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	key, err := t.LoadKey(ctx, ref.Public, ref.Private)
	if err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	return key, nil
}

func openTPM(ctx context.Context, path string) (*tpm.TPM, error) {
	t, err := tpm.Open(ctx, path)
	if errors.Is(err, tpm.ErrNoDevice) {
		return nil, fmt.Errorf("keystore: %w (is there a TPM 2.0 and is its kernel driver loaded?)", err)
	}
	if err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	return t, nil
}
