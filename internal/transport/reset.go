package transport

import (
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/umbranet/umbra/third_party/quic-go"
)

// statelessResetInfo is HKDF's info for the stateless reset key: it keeps the key apart
// from anything else ever derived from the same secret.
const statelessResetInfo = "github.com/umbranet/umbra/quic-stateless-reset/v1"

// StatelessResetKey derives a QUIC stateless reset key (quic.Transport's
// StatelessResetKey) from a node's long-term secret, such as its private key's bytes.
// The key outlives restarts, so a node restarted on the same address answers a packet
// of a connection from before with a stateless reset, and the peer drops that
// connection at once instead of after its idle timeout. The secret never leaves this
// derivation; the reset tokens reveal nothing of it.
func StatelessResetKey(secret []byte) (*quic.StatelessResetKey, error) {
	if len(secret) == 0 {
		return nil, errors.New("transport: stateless reset key: empty secret")
	}
	var key quic.StatelessResetKey
	k, err := hkdf.Key(sha256.New, secret, nil, statelessResetInfo, len(key))
	if err != nil {
		return nil, fmt.Errorf("transport: stateless reset key: %w", err)
	}
	copy(key[:], k)
	return &key, nil
}
