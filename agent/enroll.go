// Package agent is the edge agent as a library: enrollment, the link manager, hosting and
// dialing services, and status. cmd/umbra-agent only fills its configuration from flags.
package agent

import (
	"context"
	"fmt"

	"umbra/hal/keystore"
	"umbra/internal/enroll"
	"umbra/internal/identity"
)

// Enroll redeems token with a new P-256 key in a 0600 file store and writes the identity
// to out. A failed enrollment writes nothing and leaves an existing file as it was.
func Enroll(ctx context.Context, token, out string) (*identity.File, error) {
	key, ref, err := keystore.NewFileKey()
	if err != nil {
		return nil, err
	}
	defer key.Close()
	id, err := enroll.Enroll(ctx, token, key)
	if err != nil {
		return nil, err
	}
	id.Key = ref
	if err := id.Save(out); err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	return id, nil
}
