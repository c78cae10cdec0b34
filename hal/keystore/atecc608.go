package keystore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2creg"
	"periph.io/x/host/v3"

	"github.com/umbranet/umbra/hal/keystore/atecc608"
)

// DefaultATECC608Addr is the secure element's factory 7-bit I2C address (0x60).
const DefaultATECC608Addr = atecc608.DefaultAddr

// maxI2CAddr is the highest 7-bit I2C address.
const maxI2CAddr = 0x7f

// ErrNoI2CBus is returned when this machine has no I2C bus for a secure element.
var ErrNoI2CBus = errors.New("no I2C bus on this machine (is the I2C interface enabled in the device tree?)")

// NewATECC608Key generates a new P-256 key in slot of the ATECC608 at addr on the I2C
// bus named bus ("" is the first bus; 0 addr is DefaultATECC608Addr) and returns it with
// the Ref that names it. Any key already in the slot is replaced and lost. Closing the
// Key puts the chip to sleep and closes the bus.
func NewATECC608Key(ctx context.Context, bus string, addr uint16, slot int) (Key, Ref, error) {
	b, err := openI2CBus(bus)
	if err != nil {
		return nil, Ref{}, err
	}
	key, ref, err := newATECC608Key(ctx, b, addr, slot)
	if err != nil {
		b.Close()
		return nil, Ref{}, err
	}
	key.bus = b
	// The Ref names the bus that was opened, not "the first one", so the key is looked
	// for on the same bus even if a bus with a lower number appears later (a USB
	// adapter, an enabled overlay).
	if bus == "" {
		ref.I2CBus = b.String()
	}
	return key, ref, nil
}

// NewATECC608KeyOnBus is NewATECC608Key on a bus the caller opened (an emulated chip in
// tests). The bus stays the caller's: closing the Key does not close it. The Ref names
// the bus by its String.
func NewATECC608KeyOnBus(ctx context.Context, bus i2c.Bus, addr uint16, slot int) (Key, Ref, error) {
	key, ref, err := newATECC608Key(ctx, bus, addr, slot)
	if err != nil {
		return nil, Ref{}, err
	}
	return key, ref, nil
}

// OpenATECC608OnBus opens the key of an atecc608 Ref on a bus the caller opened, ignoring
// ref.I2CBus. The bus stays the caller's: closing the Key does not close it.
func OpenATECC608OnBus(ctx context.Context, bus i2c.Bus, ref Ref) (Key, error) {
	if ref.Store != StoreATECC608 {
		return nil, fmt.Errorf("keystore: atecc608: the reference is for the %q store", ref.Store)
	}
	key, err := openATECC608(ctx, bus, ref.I2CAddr, ref.Slot)
	if err != nil {
		return nil, err
	}
	return key, nil
}

// openATECC608Key opens the key of an atecc608 Ref on the bus it names.
func openATECC608Key(ctx context.Context, ref Ref) (Key, error) {
	b, err := openI2CBus(ref.I2CBus)
	if err != nil {
		return nil, err
	}
	key, err := openATECC608(ctx, b, ref.I2CAddr, ref.Slot)
	if err != nil {
		b.Close()
		return nil, err
	}
	key.bus = b
	return key, nil
}

func newATECC608Key(ctx context.Context, bus i2c.Bus, addr uint16, slot int) (*atecc608Key, Ref, error) {
	addr, err := chipAddr(addr)
	if err != nil {
		return nil, Ref{}, err
	}
	dev, err := atecc608.Open(bus, addr)
	if err != nil {
		return nil, Ref{}, fmt.Errorf("keystore: %w", err)
	}
	if _, err := dev.GenKey(ctx, slot); err != nil {
		dev.Close()
		return nil, Ref{}, fmt.Errorf("keystore: %w", err)
	}
	signer, err := dev.Signer(ctx, slot)
	if err != nil {
		dev.Close()
		return nil, Ref{}, fmt.Errorf("keystore: %w", err)
	}
	ref := Ref{Store: StoreATECC608, I2CBus: bus.String(), I2CAddr: addr, Slot: slot}
	return &atecc608Key{Key: signer, dev: dev}, ref, nil
}

func openATECC608(ctx context.Context, bus i2c.Bus, addr uint16, slot int) (*atecc608Key, error) {
	addr, err := chipAddr(addr)
	if err != nil {
		return nil, err
	}
	dev, err := atecc608.Open(bus, addr)
	if err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	signer, err := dev.Signer(ctx, slot)
	if err != nil {
		dev.Close()
		return nil, fmt.Errorf("keystore: %w", err)
	}
	return &atecc608Key{Key: signer, dev: dev}, nil
}

// chipAddr checks a 7-bit address; zero, the general-call address no chip answers on,
// stands for the factory address.
func chipAddr(addr uint16) (uint16, error) {
	switch {
	case addr == 0:
		return DefaultATECC608Addr, nil
	case addr > maxI2CAddr:
		return 0, fmt.Errorf("keystore: atecc608: I2C address %#x is not a 7-bit address", addr)
	}
	return addr, nil
}

// openI2CBus opens the host's I2C bus named name, or its first bus for "".
func openI2CBus(name string) (i2c.BusCloser, error) {
	// On a machine without a driver's hardware host.Init skips that driver without an
	// error, so an absent bus only shows as an empty registry below.
	if _, err := host.Init(); err != nil {
		return nil, fmt.Errorf("keystore: atecc608: load I2C drivers: %w", err)
	}
	refs := i2creg.All()
	if len(refs) == 0 {
		return nil, fmt.Errorf("keystore: atecc608: %w", ErrNoI2CBus)
	}
	if name != "" && !knownBus(refs, name) {
		return nil, fmt.Errorf("keystore: atecc608: no I2C bus %q (this machine has %s)", name, busNames(refs))
	}
	b, err := i2creg.Open(name)
	if err != nil {
		return nil, fmt.Errorf("keystore: atecc608: open I2C bus %q: %w", name, err)
	}
	return b, nil
}

// knownBus says whether name is a bus's name, alias or number, as i2creg.Open takes it.
func knownBus(refs []*i2creg.Ref, name string) bool {
	for _, r := range refs {
		if r.Name == name || (r.Number >= 0 && strconv.Itoa(r.Number) == name) {
			return true
		}
		for _, a := range r.Aliases {
			if a == name {
				return true
			}
		}
	}
	return false
}

func busNames(refs []*i2creg.Ref) string {
	names := make([]string, 0, len(refs))
	for _, r := range refs {
		names = append(names, r.Name)
	}
	return strings.Join(names, ", ")
}

// atecc608Key is a slot's key together with the chip and, when this package opened it,
// the bus, so that closing the key releases both.
type atecc608Key struct {
	*atecc608.Key
	dev *atecc608.Device
	bus i2c.BusCloser // nil when the caller owns the bus

	closeOnce sync.Once
	closeErr  error
}

// Close makes the key unusable, puts the chip to sleep and closes the bus if this
// package opened it.
func (k *atecc608Key) Close() error {
	k.closeOnce.Do(func() {
		errs := []error{k.Key.Close(), k.dev.Close()}
		if k.bus != nil {
			errs = append(errs, k.bus.Close())
		}
		if err := errors.Join(errs...); err != nil {
			k.closeErr = fmt.Errorf("keystore: atecc608: close: %w", err)
		}
	})
	return k.closeErr
}
