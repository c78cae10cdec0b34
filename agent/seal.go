package agent

import (
	"crypto/cipher"
	"crypto/tls"
	"fmt"

	"github.com/umbranet/umbra/internal/seal"
)

// End-to-end datagram keys come from the circuit's own TLS session between the two
// agents, one per direction, so routers carry only ciphertext and a datagram cannot be
// replayed or reflected (internal/seal).
const (
	labelDialerToHost = "umbra datagram dialer to host"
	labelHostToDialer = "umbra datagram host to dialer"
)

// datagramKeys derives the sealing keys of a circuit from its TLS session.
func datagramKeys(cs tls.ConnectionState, dialer bool) (send, recv cipher.AEAD, err error) {
	sendLabel, recvLabel := labelDialerToHost, labelHostToDialer
	if !dialer {
		sendLabel, recvLabel = recvLabel, sendLabel
	}
	send, recv, err = seal.Keys(cs, sendLabel, recvLabel)
	if err != nil {
		return nil, nil, fmt.Errorf("datagram keys: %w", err)
	}
	return send, recv, nil
}
