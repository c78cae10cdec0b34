// Package atecc608 drives a Microchip ATECC608A/B secure element over I2C, so a device's
// P-256 identity key is created and used inside the chip and never leaves it. It owns the
// wire protocol (wake, command packets, CRC, status codes, polling) and exposes a slot's
// key as a crypto.Signer; it does not configure or lock the chip, which must already have
// its key slots set up for P-256 private keys.
package atecc608

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"errors"
	"fmt"
	"sync"

	"periph.io/x/conn/v3/i2c"

	"github.com/umbranet/umbra/hal/keystore/atecc608/internal/wire"
)

// DefaultAddr is the 7-bit I2C address of an ATECC608 as shipped (0xC0 in 8-bit form).
const DefaultAddr = 0x60

// NumSlots is the number of data slots; valid slot numbers are 0 to NumSlots-1.
const NumSlots = wire.NumSlots

// uncompressedPoint is the SEC 1 prefix of an uncompressed curve point.
const uncompressedPoint = 0x04

// Device is one ATECC608 on an I2C bus. Its methods are safe for concurrent use; each
// wakes the chip, runs its commands and leaves the chip idle.
type Device struct {
	mu      sync.Mutex
	dev     i2c.Dev // the chip
	wakeDev i2c.Dev // address 0x00, for the wake pulse
	busName string
	closed  bool
}

// Revision is the 4-byte answer of Info mode 0; byte 2 is 0x60 on ATECC608 parts.
type Revision [wire.RevisionSize]byte

// Open wakes the chip at addr on bus and checks its wake response. The bus stays the
// caller's: Close puts the chip to sleep but does not close the bus.
func Open(bus i2c.Bus, addr uint16) (*Device, error) {
	d := &Device{
		dev:     i2c.Dev{Bus: bus, Addr: addr},
		wakeDev: i2c.Dev{Bus: bus, Addr: 0},
		busName: bus.String(),
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.wake(); err != nil {
		return nil, err
	}
	d.idle()
	return d, nil
}

// String names the chip by bus and address.
func (d *Device) String() string { return fmt.Sprintf("atecc608 at %#x on %s", d.dev.Addr, d.busName) }

// Close puts the chip to sleep and makes further calls fail with ErrClosed.
func (d *Device) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	// A chip in idle ignores everything but a wake pulse, so wake it to send sleep.
	if err := d.wake(); err != nil {
		return err
	}
	return d.sleep()
}

// Info returns the chip's revision (Info command, mode 0).
func (d *Device) Info(ctx context.Context) (Revision, error) {
	var rev Revision
	err := d.session(ctx, "info", func() error {
		data, err := d.execute(ctx, wire.OpInfo, wire.InfoModeRevision, 0, nil)
		if err != nil {
			return err
		}
		if len(data) != wire.RevisionSize {
			return fmt.Errorf("%w: info returned %d bytes, want %d", ErrResponse, len(data), wire.RevisionSize)
		}
		copy(rev[:], data)
		return nil
	})
	return rev, err
}

// Random returns 32 bytes from the chip's RNG. Until the chip's configuration zone is
// locked it returns a fixed test pattern (FF FF 00 00 ...), by design of the chip.
func (d *Device) Random(ctx context.Context) ([]byte, error) {
	var out []byte
	err := d.session(ctx, "random", func() error {
		data, err := d.random(ctx)
		out = data
		return err
	})
	return out, err
}

// random runs the Random command; the caller holds a session.
func (d *Device) random(ctx context.Context) ([]byte, error) {
	data, err := d.execute(ctx, wire.OpRandom, wire.RandomModeSeedUpdate, 0, nil)
	if err != nil {
		return nil, err
	}
	if len(data) != wire.RandomSize {
		return nil, fmt.Errorf("%w: random returned %d bytes, want %d", ErrResponse, len(data), wire.RandomSize)
	}
	return append([]byte(nil), data...), nil
}

// GenKey creates a new P-256 private key in slot, replacing any key there, and returns
// its public key. The slot must be configured for private keys and allow GenKey.
func (d *Device) GenKey(ctx context.Context, slot int) (*ecdsa.PublicKey, error) {
	// A retry after a damaged response runs GenKey again, so the slot ends up with a newer
	// key than the lost answer described; the key returned is always the one in the slot.
	return d.genKey(ctx, slot, wire.GenKeyModePrivate, "genkey")
}

// PublicKey computes the public key of the private key already in slot.
func (d *Device) PublicKey(ctx context.Context, slot int) (*ecdsa.PublicKey, error) {
	return d.genKey(ctx, slot, wire.GenKeyModePublic, "public key")
}

func (d *Device) genKey(ctx context.Context, slot int, mode byte, what string) (*ecdsa.PublicKey, error) {
	if err := checkSlot(slot); err != nil {
		return nil, err
	}
	what = fmt.Sprintf("%s slot %d", what, slot)
	var pub *ecdsa.PublicKey
	err := d.session(ctx, what, func() error {
		data, err := d.execute(ctx, wire.OpGenKey, mode, uint16(slot), nil)
		if err != nil {
			return err
		}
		pub, err = parsePublicKey(data)
		return err
	})
	return pub, slotHint(err)
}

// signDigest signs a 32-byte digest with the key in slot and returns R||S. The digest is
// loaded into TempKey by Nonce pass-through, then Sign external signs TempKey.
func (d *Device) signDigest(ctx context.Context, slot int, digest []byte) ([]byte, error) {
	if err := checkSlot(slot); err != nil {
		return nil, err
	}
	if len(digest) != wire.DigestSize {
		return nil, fmt.Errorf("%w: got %d bytes, want %d", ErrDigestSize, len(digest), wire.DigestSize)
	}
	var sig []byte
	err := d.session(ctx, fmt.Sprintf("sign slot %d", slot), func() error {
		// CryptoAuthLib refreshes the RNG seed before every Sign (its atcab_sign), since
		// a pass-through Nonce does not; the chip draws the signature's nonce from it.
		if _, err := d.random(ctx); err != nil {
			return err
		}
		data, err := d.execute(ctx, wire.OpNonce, wire.NonceModePassthrough, 0, digest)
		if err != nil {
			return err
		}
		if len(data) != 0 {
			return fmt.Errorf("%w: nonce returned %d bytes, want a status", ErrResponse, len(data))
		}
		data, err = d.execute(ctx, wire.OpSign, wire.SignModeExternal, uint16(slot), nil)
		if err != nil {
			return err
		}
		if len(data) != wire.SignatureSize {
			return fmt.Errorf("%w: sign returned %d bytes, want %d", ErrResponse, len(data), wire.SignatureSize)
		}
		sig = append([]byte(nil), data...)
		return nil
	})
	return sig, slotHint(err)
}

func checkSlot(slot int) error {
	if slot < 0 || slot >= NumSlots {
		return fmt.Errorf("%w: got %d, want 0..%d", ErrSlot, slot, NumSlots-1)
	}
	return nil
}

// slotHint says what an execution error most likely means for a command on a key slot.
func slotHint(err error) error {
	if errors.Is(err, ErrExecution) {
		return fmt.Errorf("%w (is the slot configured for P-256 private keys, and does it hold one?)", err)
	}
	return err
}

// parsePublicKey turns the chip's X||Y into a P-256 public key, checking it is on the curve.
func parsePublicKey(xy []byte) (*ecdsa.PublicKey, error) {
	if len(xy) != wire.PublicKeySize {
		return nil, fmt.Errorf("%w: public key is %d bytes, want %d", ErrResponse, len(xy), wire.PublicKeySize)
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append([]byte{uncompressedPoint}, xy...))
	if err != nil {
		return nil, fmt.Errorf("%w: public key: %w", ErrResponse, err)
	}
	return pub, nil
}
