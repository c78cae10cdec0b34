package keystore_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2creg"
	"periph.io/x/host/v3"

	"github.com/umbranet/umbra/hal/keystore"
	"github.com/umbranet/umbra/hal/keystore/atecc608"
	"github.com/umbranet/umbra/hal/keystore/atecc608/atecc608sim"
)

// registeredChip is an emulated chip registered as one of the host's I2C buses, the way
// periph's sysfs driver registers /dev/i2c-N, so the named-bus path runs end to end. It
// counts how often the bus is closed.
type registeredChip struct {
	*atecc608sim.Chip
	name   string
	closes *atomic.Int32
}

func (b registeredChip) String() string { return b.name }
func (b registeredChip) Close() error   { b.closes.Add(1); return nil }

// registerChip puts an emulated chip on the host's bus registry under the test's name.
func registerChip(t *testing.T, cfg atecc608sim.Config) (name string, closes *atomic.Int32) {
	t.Helper()
	if _, err := host.Init(); err != nil {
		t.Fatalf("host.Init: %v", err)
	}
	name = "sim-" + t.Name()
	closes = new(atomic.Int32)
	bus := registeredChip{Chip: atecc608sim.New(cfg), name: name, closes: closes}
	if err := i2creg.Register(name, nil, -1, func() (i2c.BusCloser, error) { return bus, nil }); err != nil {
		t.Fatalf("register bus: %v", err)
	}
	t.Cleanup(func() { i2creg.Unregister(name) })
	return name, closes
}

func TestATECC608KeyReopensFromItsRef(t *testing.T) {
	chip := atecc608sim.New(atecc608sim.Config{})
	ctx := context.Background()
	const slot = 2
	key, ref, err := keystore.NewATECC608KeyOnBus(ctx, chip, atecc608.DefaultAddr, slot)
	if err != nil {
		t.Fatalf("NewATECC608KeyOnBus: %v", err)
	}
	want := keystore.Ref{Store: keystore.StoreATECC608, I2CBus: chip.String(), I2CAddr: atecc608.DefaultAddr, Slot: slot}
	if ref.Store != want.Store || ref.I2CBus != want.I2CBus || ref.I2CAddr != want.I2CAddr || ref.Slot != want.Slot {
		t.Fatalf("Ref = %s, want %s", refJSON(t, ref), refJSON(t, want))
	}
	if j := refJSON(t, ref); strings.Contains(j, `"pem"`) || strings.Contains(j, `"private"`) {
		t.Fatalf("atecc608 Ref = %s, want no key material in it", j)
	}
	wantPub := publicKey(t, key)
	if err := key.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	digest := sha256.Sum256(message)
	if _, err := key.Sign(rand.Reader, digest[:], crypto.SHA256); !errors.Is(err, atecc608.ErrClosed) {
		t.Errorf("Sign after Close: error = %v, want ErrClosed", err)
	}

	// The caller's bus stays usable after the Key is closed.
	opened, err := keystore.OpenATECC608OnBus(ctx, chip, ref)
	if err != nil {
		t.Fatalf("OpenATECC608OnBus: %v", err)
	}
	defer opened.Close()
	sameSigner(t, opened, wantPub)
}

func TestATECC608OnNamedBusClosesTheBusWithTheKey(t *testing.T) {
	name, closes := registerChip(t, atecc608sim.Config{})
	ctx := context.Background()
	key, ref, err := keystore.NewATECC608Key(ctx, name, 0, 3)
	if err != nil {
		t.Fatalf("NewATECC608Key(%q): %v", name, err)
	}
	if ref.I2CBus != name || ref.I2CAddr != atecc608.DefaultAddr || ref.Slot != 3 {
		t.Fatalf("Ref = %s, want bus %q, address 0x60 (the default for 0), slot 3", refJSON(t, ref), name)
	}
	wantPub := publicKey(t, key)
	if n := closes.Load(); n != 0 {
		t.Fatalf("bus closed %d times while the key is open, want 0", n)
	}
	key.Close()
	key.Close()
	if n := closes.Load(); n != 1 {
		t.Fatalf("bus closed %d times after closing the new key twice, want 1", n)
	}

	opened, err := keystore.Open(ctx, ref)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	sameSigner(t, opened, wantPub)
	opened.Close()
	if n := closes.Load(); n != 2 {
		t.Fatalf("bus closed %d times after closing the opened key, want 2", n)
	}

	// A failed open gives the bus back too.
	bad := ref
	bad.Slot = 9 // not a key slot on the emulated chip
	if k, err := keystore.Open(ctx, bad); err == nil {
		k.Close()
		t.Fatal("Open of a slot that is not a key slot succeeded, want an error")
	}
	if n := closes.Load(); n != 3 {
		t.Errorf("bus closed %d times after a failed open, want 3", n)
	}
}

func TestATECC608DefaultBusIsRecordedByName(t *testing.T) {
	name, _ := registerChip(t, atecc608sim.Config{})
	if n := len(i2creg.All()); n != 1 {
		t.Skipf("this machine has %d I2C buses; the first one is not the emulated chip", n)
	}
	key, ref, err := keystore.NewATECC608Key(context.Background(), "", 0, 0)
	if err != nil {
		t.Fatalf("NewATECC608Key on the first bus: %v", err)
	}
	defer key.Close()
	if ref.I2CBus != name {
		t.Errorf("Ref.I2CBus = %q, want the bus that was opened, %q", ref.I2CBus, name)
	}
}

func TestATECC608ErrorsNameWhatIsWrong(t *testing.T) {
	name, closes := registerChip(t, atecc608sim.Config{Absent: true})
	ctx := context.Background()
	tests := []struct {
		name    string
		open    func() error
		want    string // a substring of the error
		wantErr error
	}{
		{
			name: "empty-socket",
			open: func() error {
				_, _, err := keystore.NewATECC608Key(ctx, name, 0, 0)
				return err
			},
			want:    "keystore: atecc608: no device at 0x60 on bus " + name,
			wantErr: atecc608.ErrNoDevice,
		},
		{
			name: "unknown-bus",
			open: func() error {
				_, err := keystore.Open(ctx, keystore.Ref{Store: keystore.StoreATECC608, I2CBus: "I2C42"})
				return err
			},
			want: `keystore: atecc608: no I2C bus "I2C42" (this machine has `,
		},
		{
			name: "address-wider-than-7-bits",
			open: func() error {
				_, _, err := keystore.NewATECC608KeyOnBus(ctx, atecc608sim.New(atecc608sim.Config{}), 0xc0, 0)
				return err
			},
			want: "keystore: atecc608: I2C address 0xc0 is not a 7-bit address",
		},
		{
			name: "slot-out-of-range",
			open: func() error {
				_, _, err := keystore.NewATECC608KeyOnBus(ctx, atecc608sim.New(atecc608sim.Config{}), 0, atecc608.NumSlots)
				return err
			},
			want:    "keystore: atecc608: slot out of range",
			wantErr: atecc608.ErrSlot,
		},
		{
			name: "ref-of-another-store",
			open: func() error {
				_, err := keystore.OpenATECC608OnBus(ctx, atecc608sim.New(atecc608sim.Config{}), keystore.Ref{Store: keystore.StoreTPM})
				return err
			},
			want: `keystore: atecc608: the reference is for the "tpm" store`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.open()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want one containing %q", err, tt.want)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error = %v, want errors.Is %v", err, tt.wantErr)
			}
		})
	}
	if n := closes.Load(); n != 1 {
		t.Errorf("bus of the empty socket closed %d times, want 1 (after the failed open)", n)
	}
}
