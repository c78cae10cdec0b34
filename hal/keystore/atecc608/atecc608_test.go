package atecc608_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/umbranet/umbra/hal/keystore/atecc608"
	"github.com/umbranet/umbra/hal/keystore/atecc608/atecc608sim"
)

// open returns an emulated chip and the driver opened on it.
func open(t testing.TB, cfg atecc608sim.Config) (*atecc608sim.Chip, *atecc608.Device) {
	t.Helper()
	chip := atecc608sim.New(cfg)
	dev, err := atecc608.Open(chip, atecc608.DefaultAddr)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { dev.Close() })
	return chip, dev
}

// signerIn generates a key in slot and returns its Signer.
func signerIn(t testing.TB, dev *atecc608.Device, slot int) *atecc608.Key {
	t.Helper()
	ctx := context.Background()
	if _, err := dev.GenKey(ctx, slot); err != nil {
		t.Fatalf("GenKey(%d): %v", slot, err)
	}
	key, err := dev.Signer(ctx, slot)
	if err != nil {
		t.Fatalf("Signer(%d): %v", slot, err)
	}
	return key
}

func TestGenKeyThenSignVerifies(t *testing.T) {
	for _, slot := range []int{0, 2, 4} {
		t.Run(fmt.Sprintf("slot-%d", slot), func(t *testing.T) {
			_, dev := open(t, atecc608sim.Config{})
			ctx := context.Background()
			pub, err := dev.GenKey(ctx, slot)
			if err != nil {
				t.Fatalf("GenKey: %v", err)
			}
			key, err := dev.Signer(ctx, slot)
			if err != nil {
				t.Fatalf("Signer: %v", err)
			}
			if !pub.Equal(key.Public()) {
				t.Fatalf("Signer public key differs from the one GenKey returned")
			}
			digest := sha256.Sum256([]byte("umbra identity"))
			sig, err := key.Sign(rand.Reader, digest[:], crypto.SHA256)
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			if !ecdsa.VerifyASN1(pub, digest[:], sig) {
				t.Errorf("VerifyASN1 = false, want true")
			}
			other := sha256.Sum256([]byte("something else"))
			if ecdsa.VerifyASN1(pub, other[:], sig) {
				t.Errorf("VerifyASN1 of another digest = true, want false")
			}
		})
	}
}

func TestGenKeyReplacesTheSlotKey(t *testing.T) {
	_, dev := open(t, atecc608sim.Config{})
	ctx := context.Background()
	first, err := dev.GenKey(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	second, err := dev.GenKey(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if first.Equal(second) {
		t.Errorf("second GenKey returned the first key, want a new one")
	}
	got, err := dev.PublicKey(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(second) {
		t.Errorf("PublicKey = the old key, want the newest")
	}
}

func TestSignerServesATLS13Handshake(t *testing.T) {
	_, dev := open(t, atecc608sim.Config{})
	key := signerIn(t, dev, 0)

	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "drone-1"},
		DNSNames:              []string{"drone-1"},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatalf("CreateCertificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("ParseCertificate: %v", err)
	}
	if err := cert.CheckSignatureFrom(cert); err != nil {
		t.Fatalf("self-signature: %v", err)
	}

	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		MinVersion:   tls.VersionTLS13,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	serverErr := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			serverErr <- err
			return
		}
		defer c.Close()
		if err := c.(*tls.Conn).Handshake(); err != nil {
			serverErr <- err
			return
		}
		_, err = io.Copy(c, c) // echo until the client closes
		serverErr <- err
	}()

	roots := x509.NewCertPool()
	roots.AddCert(cert)
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{
		RootCAs:    roots,
		ServerName: "drone-1",
		MinVersion: tls.VersionTLS13,
	})
	if err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	if v := conn.ConnectionState().Version; v != tls.VersionTLS13 {
		t.Errorf("TLS version = %#x, want %#x", v, tls.VersionTLS13)
	}
	msg := []byte("telemetry")
	if _, err := conn.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(conn, got); err != nil {
		t.Fatal(err)
	}
	if string(got) != string(msg) {
		t.Errorf("echo = %q, want %q", got, msg)
	}
	conn.Close()
	if err := <-serverErr; err != nil && !errors.Is(err, net.ErrClosed) {
		t.Errorf("server: %v", err)
	}
}

func TestDamagedResponses(t *testing.T) {
	ops := []struct {
		name string
		run  func(*atecc608.Device, *atecc608.Key) error
	}{
		{"sign", func(_ *atecc608.Device, k *atecc608.Key) error {
			d := sha256.Sum256([]byte("x"))
			sig, err := k.Sign(nil, d[:], crypto.SHA256)
			if err == nil && !ecdsa.VerifyASN1(k.Public().(*ecdsa.PublicKey), d[:], sig) {
				return errors.New("signature after a retry does not verify")
			}
			return err
		}},
		{"genkey", func(d *atecc608.Device, _ *atecc608.Key) error {
			_, err := d.GenKey(context.Background(), 1)
			return err
		}},
		{"info", func(d *atecc608.Device, _ *atecc608.Key) error {
			_, err := d.Info(context.Background())
			return err
		}},
	}
	tests := []struct {
		name    string
		corrupt int
		wantErr error
	}{
		{"one-bad-crc-is-retried", 1, nil},
		{"two-bad-crcs-are-retried", 2, nil},
		{"persistent-bad-crc-gives-up", 1000, atecc608.ErrCRC},
	}
	for _, op := range ops {
		for _, tt := range tests {
			t.Run(op.name+"/"+tt.name, func(t *testing.T) {
				chip, dev := open(t, atecc608sim.Config{})
				key := signerIn(t, dev, 0)
				chip.CorruptResponses(tt.corrupt)
				err := op.run(dev, key)
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if err != nil && !strings.Contains(err.Error(), "atecc608: response CRC mismatch") {
					t.Errorf("err = %q, want it to say %q", err, "atecc608: response CRC mismatch")
				}
				if got := chip.Stats().CorruptedResponses; got == 0 {
					t.Errorf("corrupted responses = %d, want > 0", got)
				}
			})
		}
	}
}

func TestOpenReportsMissingDevice(t *testing.T) {
	tests := []struct {
		name    string
		cfg     atecc608sim.Config
		addr    uint16
		wantMsg string
	}{
		{"empty-socket", atecc608sim.Config{Absent: true}, 0x60, "atecc608: no device at 0x60 on bus atecc608sim"},
		{"wrong-address", atecc608sim.Config{}, 0x61, "atecc608: no device at 0x61 on bus atecc608sim"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dev, err := atecc608.Open(atecc608sim.New(tt.cfg), tt.addr)
			if !errors.Is(err, atecc608.ErrNoDevice) {
				t.Fatalf("err = %v, want %v", err, atecc608.ErrNoDevice)
			}
			if dev != nil {
				t.Errorf("device = %v, want nil", dev)
			}
			if !strings.HasPrefix(err.Error(), tt.wantMsg) {
				t.Errorf("err = %q, want prefix %q", err, tt.wantMsg)
			}
		})
	}
}

func TestDeviceThatVanishesAfterOpen(t *testing.T) {
	chip, dev := open(t, atecc608sim.Config{})
	chip.SetAbsent(true)
	_, err := dev.Info(context.Background())
	if !errors.Is(err, atecc608.ErrNoDevice) {
		t.Errorf("err = %v, want %v", err, atecc608.ErrNoDevice)
	}
}

func TestSlotErrors(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		run     func(*atecc608.Device) error
		wantErr error
	}{
		{"genkey-in-data-slot-9", func(d *atecc608.Device) error { _, err := d.GenKey(ctx, 9); return err }, atecc608.ErrExecution},
		{"signer-in-data-slot-9", func(d *atecc608.Device) error { _, err := d.Signer(ctx, 9); return err }, atecc608.ErrExecution},
		{"signer-in-empty-key-slot", func(d *atecc608.Device) error { _, err := d.Signer(ctx, 3); return err }, atecc608.ErrExecution},
		{"genkey-in-slot-16", func(d *atecc608.Device) error { _, err := d.GenKey(ctx, 16); return err }, atecc608.ErrSlot},
		{"public-key-in-slot-minus-1", func(d *atecc608.Device) error { _, err := d.PublicKey(ctx, -1); return err }, atecc608.ErrSlot},
		{"signer-in-slot-16", func(d *atecc608.Device) error { _, err := d.Signer(ctx, 16); return err }, atecc608.ErrSlot},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			chip, dev := open(t, atecc608sim.Config{})
			before := chip.Stats().Commands
			err := tt.run(dev)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			sent := chip.Stats().Commands - before
			if tt.wantErr == atecc608.ErrSlot && sent != 0 {
				t.Errorf("commands sent = %d, want 0 for an out-of-range slot", sent)
			}
			if tt.wantErr == atecc608.ErrExecution && sent != 1 {
				t.Errorf("commands sent = %d, want 1 (execution errors are not retried)", sent)
			}
		})
	}
}

func TestSignRejects(t *testing.T) {
	_, dev := open(t, atecc608sim.Config{})
	key := signerIn(t, dev, 0)
	closed := signerIn(t, dev, 1)
	closed.Close()
	d32 := make([]byte, 32)
	tests := []struct {
		name    string
		key     *atecc608.Key
		digest  []byte
		opts    crypto.SignerOpts
		wantErr error
	}{
		{"short-digest", key, make([]byte, 31), crypto.SHA256, atecc608.ErrDigestSize},
		{"long-digest", key, make([]byte, 33), crypto.SHA256, atecc608.ErrDigestSize},
		{"sha384", key, make([]byte, 48), crypto.SHA384, atecc608.ErrHash},
		{"sha1-of-32-bytes", key, d32, crypto.SHA1, atecc608.ErrHash},
		{"no-opts", key, d32, nil, atecc608.ErrHash},
		{"closed-key", closed, d32, crypto.SHA256, atecc608.ErrClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sig, err := tt.key.Sign(rand.Reader, tt.digest, tt.opts)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if sig != nil {
				t.Errorf("sig = % x, want nil", sig)
			}
		})
	}
}

func TestBusyChipIsPolledUntilItAnswers(t *testing.T) {
	chip, dev := open(t, atecc608sim.Config{ExecTime: 3 * time.Millisecond})
	key := signerIn(t, dev, 0)
	digest := sha256.Sum256([]byte("busy"))
	sig, err := key.Sign(nil, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	if !ecdsa.VerifyASN1(key.Public().(*ecdsa.PublicKey), digest[:], sig) {
		t.Errorf("signature does not verify")
	}
	if got := chip.Stats().BusyNACKs; got == 0 {
		t.Errorf("busy NACKs = %d, want > 0", got)
	}
}

func TestChipBusyPastItsBudgetTimesOut(t *testing.T) {
	chip, dev := open(t, atecc608sim.Config{})
	chip.SetExecTime(time.Second) // Info's budget is 4 × 5 ms
	_, err := dev.Info(context.Background())
	if !errors.Is(err, atecc608.ErrTimeout) {
		t.Errorf("err = %v, want %v", err, atecc608.ErrTimeout)
	}
}

func TestChipPutToSleepIsWokenAgain(t *testing.T) {
	chip, dev := open(t, atecc608sim.Config{})
	key := signerIn(t, dev, 0)
	chip.Sleep()
	digest := sha256.Sum256([]byte("after sleep"))
	if _, err := key.Sign(nil, digest[:], crypto.SHA256); err != nil {
		t.Errorf("Sign after sleep: %v", err)
	}
}

func TestInfoReturnsRevision(t *testing.T) {
	want := atecc608.Revision{0x00, 0x00, 0x60, 0x02}
	_, dev := open(t, atecc608sim.Config{Revision: want})
	got, err := dev.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("revision = % x, want % x", got, want)
	}
}

func TestRandomReturns32Bytes(t *testing.T) {
	_, dev := open(t, atecc608sim.Config{})
	b, err := dev.Random(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 32 {
		t.Errorf("len = %d, want 32", len(b))
	}
}

func TestClosedDeviceRefusesWork(t *testing.T) {
	_, dev := open(t, atecc608sim.Config{})
	if err := dev.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := dev.Info(context.Background()); !errors.Is(err, atecc608.ErrClosed) {
		t.Errorf("err = %v, want %v", err, atecc608.ErrClosed)
	}
}

func TestCanceledContextStopsBeforeTheBus(t *testing.T) {
	chip, dev := open(t, atecc608sim.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	before := chip.Stats().Commands
	if _, err := dev.GenKey(ctx, 0); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want %v", err, context.Canceled)
	}
	if sent := chip.Stats().Commands - before; sent != 0 {
		t.Errorf("commands sent = %d, want 0", sent)
	}
}

func TestConcurrentSignersShareTheBus(t *testing.T) {
	_, dev := open(t, atecc608sim.Config{})
	keys := []*atecc608.Key{signerIn(t, dev, 0), signerIn(t, dev, 1)}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Go(func() {
			key := keys[i%len(keys)]
			digest := sha256.Sum256([]byte{byte(i)})
			sig, err := key.Sign(nil, digest[:], crypto.SHA256)
			if err == nil && !ecdsa.VerifyASN1(key.Public().(*ecdsa.PublicKey), digest[:], sig) {
				err = errors.New("signature does not verify")
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func BenchmarkSign(b *testing.B) {
	_, dev := open(b, atecc608sim.Config{})
	key := signerIn(b, dev, 0)
	digest := sha256.Sum256([]byte("bench"))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := key.Sign(nil, digest[:], crypto.SHA256); err != nil {
			b.Fatal(err)
		}
	}
}
