// Package seal protects datagrams with keys exported from a TLS 1.3 session (RFC 8446
// exporters): each carries an explicit sequence number, is sealed with
// ChaCha20-Poly1305, and is accepted at most once within a sliding replay window.
// ChaCha20-Poly1305 because the Raspberry Pi 3 and 4 have no AES instructions, where it
// is several times faster than AES-GCM.
package seal

import (
	"crypto/cipher"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"golang.org/x/crypto/chacha20poly1305"
)

const (
	// seqSize is the explicit sequence number before each sealed datagram.
	seqSize = 8
	// Overhead is what sealing adds to a datagram: sequence number and tag.
	Overhead = seqSize + chacha20poly1305.Overhead
	// ReplayWindow is how far behind the newest sequence number a datagram may arrive
	// and still be accepted once.
	ReplayWindow = 1024
)

// Errors of Open. Neither says anything about the key.
var (
	// ErrReplay is a datagram seen before or too old to tell.
	ErrReplay = errors.New("seal: datagram replayed or too old")
	// ErrShort is a datagram shorter than its sequence number and tag.
	ErrShort = errors.New("seal: datagram too short")
	// ErrForged is a datagram that does not authenticate.
	ErrForged = errors.New("seal: datagram does not authenticate")
)

// Keys derives the two directions' keys from a TLS session: send from sendLabel, recv
// from recvLabel. The other end passes the same labels swapped.
func Keys(cs tls.ConnectionState, sendLabel, recvLabel string) (send, recv cipher.AEAD, err error) {
	sk, err := cs.ExportKeyingMaterial(sendLabel, nil, chacha20poly1305.KeySize)
	if err != nil {
		return nil, nil, fmt.Errorf("seal: export %q: %w", sendLabel, err)
	}
	rk, err := cs.ExportKeyingMaterial(recvLabel, nil, chacha20poly1305.KeySize)
	if err != nil {
		return nil, nil, fmt.Errorf("seal: export %q: %w", recvLabel, err)
	}
	if send, err = chacha20poly1305.New(sk); err != nil {
		return nil, nil, fmt.Errorf("seal: %w", err)
	}
	if recv, err = chacha20poly1305.New(rk); err != nil {
		return nil, nil, fmt.Errorf("seal: %w", err)
	}
	return send, recv, nil
}

// Sealer seals one direction's datagrams with increasing sequence numbers. It is safe
// for concurrent use.
type Sealer struct {
	aead cipher.AEAD
	mu   sync.Mutex
	seq  uint64
}

// NewSealer seals with aead.
func NewSealer(aead cipher.AEAD) *Sealer { return &Sealer{aead: aead} }

// Seal appends seq || Seal(plaintext) to dst, authenticating aad (which is not sent).
func (s *Sealer) Seal(dst, plaintext, aad []byte) []byte {
	s.mu.Lock()
	s.seq++
	seq := s.seq
	s.mu.Unlock()
	var nonce [chacha20poly1305.NonceSize]byte
	binary.BigEndian.PutUint64(nonce[4:], seq)
	dst = binary.BigEndian.AppendUint64(dst, seq)
	return s.aead.Seal(dst, nonce[:], plaintext, aad)
}

// Opener opens one direction's datagrams and refuses replays. It is safe for
// concurrent use.
type Opener struct {
	aead cipher.AEAD
	mu   sync.Mutex
	top  uint64                    // highest sequence number accepted
	seen [ReplayWindow / 64]uint64 // bitmap of accepted numbers in (top-ReplayWindow, top]
}

// NewOpener opens with aead.
func NewOpener(aead cipher.AEAD) *Opener { return &Opener{aead: aead} }

// Open checks and decrypts seq || sealed into dst, with the aad the sender used. newest
// reports whether the datagram carried the highest sequence number seen so far.
func (o *Opener) Open(dst, b, aad []byte) (out []byte, newest bool, err error) {
	if len(b) < Overhead {
		return nil, false, ErrShort
	}
	seq := binary.BigEndian.Uint64(b)
	if !o.fresh(seq) {
		return nil, false, ErrReplay
	}
	var nonce [chacha20poly1305.NonceSize]byte
	binary.BigEndian.PutUint64(nonce[4:], seq)
	out, err = o.aead.Open(dst, nonce[:], b[seqSize:], aad)
	if err != nil {
		return nil, false, ErrForged
	}
	accepted, newest := o.accept(seq)
	if !accepted {
		return nil, false, ErrReplay // another goroutine accepted it meanwhile
	}
	return out, newest, nil
}

func (o *Opener) fresh(seq uint64) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.freshLocked(seq)
}

func (o *Opener) freshLocked(seq uint64) bool {
	switch {
	case seq == 0:
		return false
	case seq > o.top:
		return true
	case o.top-seq >= ReplayWindow:
		return false
	}
	return o.seen[(seq/64)%uint64(len(o.seen))]&(1<<(seq%64)) == 0
}

// accept records seq as seen, unless it already was, and reports whether it is now the
// highest seen.
func (o *Opener) accept(seq uint64) (accepted, newest bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.freshLocked(seq) {
		return false, false
	}
	if seq > o.top {
		// Clear the words the window slides past.
		for w := o.top/64 + 1; w <= seq/64 && w <= o.top/64+uint64(len(o.seen)); w++ {
			o.seen[w%uint64(len(o.seen))] = 0
		}
		o.top = seq
	}
	o.seen[(seq/64)%uint64(len(o.seen))] |= 1 << (seq % 64)
	return true, seq == o.top
}
