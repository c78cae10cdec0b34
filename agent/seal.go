package agent

import (
	"crypto/cipher"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"golang.org/x/crypto/chacha20poly1305"
)

// Datagram sealing: keys come from the circuit's end-to-end TLS session (RFC 8446
// exporters), one per direction, so routers carry only ciphertext and a datagram cannot
// be replayed or reflected. ChaCha20-Poly1305 because the Raspberry Pi 3 and 4 have no
// AES instructions, where it is several times faster than AES-GCM.
const (
	labelDialerToHost = "umbra datagram dialer to host"
	labelHostToDialer = "umbra datagram host to dialer"
	// seqSize is the explicit sequence number before each sealed fragment.
	seqSize = 8
	// sealOverhead is what sealing adds to a fragment: sequence number and tag.
	sealOverhead = seqSize + chacha20poly1305.Overhead
	// replayWindow is how far behind the newest sequence number a datagram may arrive
	// and still be accepted once.
	replayWindow = 1024
)

// datagramKeys derives the sealing keys of a circuit from its TLS session.
func datagramKeys(cs tls.ConnectionState, dialer bool) (send, recv cipher.AEAD, err error) {
	d2h, err := cs.ExportKeyingMaterial(labelDialerToHost, nil, chacha20poly1305.KeySize)
	if err != nil {
		return nil, nil, fmt.Errorf("datagram keys: %w", err)
	}
	h2d, err := cs.ExportKeyingMaterial(labelHostToDialer, nil, chacha20poly1305.KeySize)
	if err != nil {
		return nil, nil, fmt.Errorf("datagram keys: %w", err)
	}
	if !dialer {
		d2h, h2d = h2d, d2h
	}
	if send, err = chacha20poly1305.New(d2h); err != nil {
		return nil, nil, err
	}
	if recv, err = chacha20poly1305.New(h2d); err != nil {
		return nil, nil, err
	}
	return send, recv, nil
}

// sealer seals one direction's fragments with increasing sequence numbers.
type sealer struct {
	aead cipher.AEAD
	seq  uint64
}

// seal appends seq || Seal(fragment) to dst.
func (s *sealer) seal(dst, fragment []byte) []byte {
	s.seq++
	var nonce [chacha20poly1305.NonceSize]byte
	binary.BigEndian.PutUint64(nonce[4:], s.seq)
	dst = binary.BigEndian.AppendUint64(dst, s.seq)
	return s.aead.Seal(dst, nonce[:], fragment, nil)
}

// errReplay is returned for a datagram seen before or too old to tell.
var errReplay = errors.New("datagram replayed or too old")

// opener opens one direction's fragments and refuses replays with a sliding window.
type opener struct {
	aead cipher.AEAD
	mu   sync.Mutex
	top  uint64                    // highest sequence number accepted
	seen [replayWindow / 64]uint64 // bitmap of accepted numbers in (top-replayWindow, top]
}

// open checks and decrypts seq || sealed into dst.
func (o *opener) open(dst, b []byte) ([]byte, error) {
	if len(b) < sealOverhead {
		return nil, errors.New("datagram too short")
	}
	seq := binary.BigEndian.Uint64(b)
	if !o.fresh(seq) {
		return nil, errReplay
	}
	var nonce [chacha20poly1305.NonceSize]byte
	binary.BigEndian.PutUint64(nonce[4:], seq)
	out, err := o.aead.Open(dst, nonce[:], b[seqSize:], nil)
	if err != nil {
		return nil, errors.New("datagram does not authenticate")
	}
	o.accept(seq)
	return out, nil
}

func (o *opener) fresh(seq uint64) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch {
	case seq == 0:
		return false
	case seq > o.top:
		return true
	case o.top-seq >= replayWindow:
		return false
	}
	return o.seen[(seq/64)%uint64(len(o.seen))]&(1<<(seq%64)) == 0
}

func (o *opener) accept(seq uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if seq > o.top {
		// Clear the words the window slides past.
		for w := o.top/64 + 1; w <= seq/64 && w <= o.top/64+uint64(len(o.seen)); w++ {
			o.seen[w%uint64(len(o.seen))] = 0
		}
		o.top = seq
	}
	o.seen[(seq/64)%uint64(len(o.seen))] |= 1 << (seq % 64)
}
