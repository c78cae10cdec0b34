package tpm

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/umbranet/umbra/hal/keystore/tpm/swtpmtest"
)

const (
	// testServerName is the DNS name in the self-signed TLS test certificate.
	testServerName = "drone.umbra.test"
	// certLifetime is the validity of that certificate.
	certLifetime = time.Hour
	// concurrentSigners is how many goroutines share one key in the concurrency test.
	concurrentSigners = 8
)

var message = []byte("umbra telemetry frame")

// newTestKey opens a fresh swtpm and creates a key in it; both close on cleanup.
func newTestKey(tb testing.TB) (*swtpmtest.TPM, *TPM, *Key, []byte, []byte) {
	tb.Helper()
	sw := swtpmtest.Start(tb)
	ctx := context.Background()
	tp, err := Open(ctx, sw.Path())
	if err != nil {
		tb.Fatalf("Open(%q): %v", sw.Path(), err)
	}
	tb.Cleanup(func() { tp.Close() })
	key, pub, priv, err := tp.CreateKey(ctx)
	if err != nil {
		tb.Fatalf("CreateKey: %v", err)
	}
	tb.Cleanup(func() { key.Close() })
	return sw, tp, key, pub, priv
}

func ecdsaPublic(t *testing.T, k crypto.Signer) *ecdsa.PublicKey {
	t.Helper()
	pub, ok := k.Public().(*ecdsa.PublicKey)
	if !ok {
		t.Fatalf("Public() is %T, want *ecdsa.PublicKey", k.Public())
	}
	if pub.Curve != elliptic.P256() {
		t.Fatalf("Public() curve is %s, want P-256", pub.Curve.Params().Name)
	}
	return pub
}

func TestSignatureVerifiesWithPublicKey(t *testing.T) {
	_, _, key, _, _ := newTestKey(t)
	pub := ecdsaPublic(t, key)
	sum256 := sha256.Sum256(message)
	sum384 := sha512.Sum384(message)
	sum512 := sha512.Sum512(message)
	tests := []struct {
		name   string
		digest []byte
		opts   crypto.SignerOpts
	}{
		{"sha256", sum256[:], crypto.SHA256},
		{"sha384-truncated-like-crypto-ecdsa", sum384[:], crypto.SHA384},
		{"sha512-truncated-like-crypto-ecdsa", sum512[:], crypto.SHA512},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sig, err := key.Sign(rand.Reader, tt.digest, tt.opts)
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			if !ecdsa.VerifyASN1(pub, tt.digest, sig) {
				t.Errorf("ecdsa.VerifyASN1 = false for signature %x, want true", sig)
			}
		})
	}
}

func TestSignRefusesDigestsItCannotSign(t *testing.T) {
	_, _, key, _, _ := newTestKey(t)
	sum1 := sha1.Sum(message)
	sum256 := sha256.Sum256(message)
	tests := []struct {
		name    string
		digest  []byte
		opts    crypto.SignerOpts
		wantErr string
	}{
		{"sha1-too-short-for-p256", sum1[:], crypto.SHA1, "want at least 32"},
		{"length-disagrees-with-hash", sum256[:], crypto.SHA384, "want 48 for SHA-384"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := key.Sign(rand.Reader, tt.digest, tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Sign error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestKeyServesTLS13HandshakeBothWays(t *testing.T) {
	_, _, key, _, _ := newTestKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: testServerName},
		DNSNames:     []string{testServerName},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(certLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatalf("x509.CreateCertificate with TPM key: %v", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := leaf.CheckSignature(leaf.SignatureAlgorithm, leaf.RawTBSCertificate, leaf.Signature); err != nil {
		t.Fatalf("self-signature does not verify: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	serverErr := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			serverErr <- err
			return
		}
		defer conn.Close()
		srv := tls.Server(conn, &tls.Config{
			Certificates: []tls.Certificate{cert},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    pool,
			MinVersion:   tls.VersionTLS13,
		})
		serverErr <- srv.HandshakeContext(t.Context())
	}()

	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ServerName:   testServerName,
		MinVersion:   tls.VersionTLS13,
	})
	if err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	defer conn.Close()
	if err := <-serverErr; err != nil {
		t.Fatalf("server handshake: %v", err)
	}
	if v := conn.ConnectionState().Version; v != tls.VersionTLS13 {
		t.Errorf("TLS version = %x, want %x (TLS 1.3)", v, tls.VersionTLS13)
	}
}

func TestLoadKeyFromBlobsSignsAsTheSameKey(t *testing.T) {
	tests := []struct {
		name    string
		between func(*swtpmtest.TPM)
	}{
		{"after-reopening-the-connection", func(*swtpmtest.TPM) {}},
		{"after-restarting-the-tpm", func(sw *swtpmtest.TPM) { sw.Restart() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sw, tp, key, pub, priv := newTestKey(t)
			want := ecdsaPublic(t, key)
			key.Close()
			tp.Close()
			tt.between(sw)

			ctx := context.Background()
			tp2, err := Open(ctx, sw.Path())
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer tp2.Close()
			key2, err := tp2.LoadKey(ctx, pub, priv)
			if err != nil {
				t.Fatalf("LoadKey: %v", err)
			}
			defer key2.Close()
			if got := ecdsaPublic(t, key2); !got.Equal(want) {
				t.Fatalf("loaded public key differs from the created one")
			}
			digest := sha256.Sum256(message)
			sig, err := key2.Sign(rand.Reader, digest[:], crypto.SHA256)
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			if !ecdsa.VerifyASN1(want, digest[:], sig) {
				t.Errorf("signature from loaded key does not verify against the created key")
			}
		})
	}
}

func TestLoadKeyFailsAfterTPMWipe(t *testing.T) {
	sw, tp, key, pub, priv := newTestKey(t)
	key.Close()
	tp.Close()
	sw.Wipe()

	tp2, err := Open(context.Background(), sw.Path())
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer tp2.Close()
	key2, err := tp2.LoadKey(context.Background(), pub, priv)
	if err == nil {
		key2.Close()
		t.Fatal("LoadKey on a wiped TPM succeeded, want an error")
	}
	if !errors.Is(err, ErrWrongTPM) {
		t.Errorf("LoadKey error = %v, want ErrWrongTPM", err)
	}
	t.Logf("LoadKey after wipe: %v", err)
}

func TestOpenNamesWhatIsWrong(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "tpmrm0")
	regular := filepath.Join(dir, "not-a-device")
	if err := os.WriteFile(regular, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()

	tests := []struct {
		name    string
		path    string
		want    string
		wantErr error
	}{
		{"missing-device", missing, "tpm: open " + missing + ": no such device", ErrNoDevice},
		{"regular-file", regular, "tpm: open " + regular + ": not a device file", nil},
		{"swtpm-not-listening", "tcp:127.0.0.1:" + closedPort, "tpm: connect 127.0.0.1:" + closedPort + ": connection refused", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tp, err := Open(context.Background(), tt.path)
			if err == nil {
				tp.Close()
				t.Fatalf("Open(%q) succeeded, want error %q", tt.path, tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("Open(%q) error = %q, want %q", tt.path, err, tt.want)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("Open(%q) error = %v, want errors.Is %v", tt.path, err, tt.wantErr)
			}
		})
	}
}

// TestKeyIsBoundToTheTPM reads the loaded key back from the TPM: the attributes that
// keep the private part inside (fixedTPM, fixedParent, sensitiveDataOrigin) must be
// set, and the public blob must be exactly what the TPM reports, with no room for a
// private part (a TPM2B_PUBLIC has none).
func TestKeyIsBoundToTheTPM(t *testing.T) {
	_, tp, key, pub, _ := newTestKey(t)
	tp.mu.Lock()
	rsp, err := tpm2.ReadPublic{ObjectHandle: key.handle.Handle}.Execute(tp.tr)
	tp.mu.Unlock()
	if err != nil {
		t.Fatalf("ReadPublic: %v", err)
	}
	if got := tpm2.Marshal(rsp.OutPublic); !bytes.Equal(got, pub) {
		t.Errorf("public blob = %x, want the TPM's public area %x", pub, got)
	}
	area, err := rsp.OutPublic.Contents()
	if err != nil {
		t.Fatal(err)
	}
	a := area.ObjectAttributes
	for _, attr := range []struct {
		name string
		got  bool
	}{
		{"fixedTPM", a.FixedTPM},
		{"fixedParent", a.FixedParent},
		{"sensitiveDataOrigin", a.SensitiveDataOrigin},
		{"sign", a.SignEncrypt},
	} {
		if !attr.got {
			t.Errorf("attribute %s = false, want true", attr.name)
		}
	}
	if a.Decrypt || a.Restricted || a.EncryptedDuplication {
		t.Errorf("decrypt, restricted, encryptedDuplication = %v, %v, %v, want all false", a.Decrypt, a.Restricted, a.EncryptedDuplication)
	}
}

func TestKeyOutlivesTPMCloseAndRefusesSigningAfterItsOwnClose(t *testing.T) {
	_, tp, key, _, _ := newTestKey(t)
	digest := sha256.Sum256(message)
	if err := tp.Close(); err != nil {
		t.Fatalf("TPM.Close: %v", err)
	}
	if _, err := key.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
		t.Fatalf("Sign after TPM.Close: %v, want the key to keep the connection open", err)
	}
	if _, err := tp.LoadKey(context.Background(), nil, nil); err == nil {
		t.Errorf("LoadKey on a closed TPM succeeded, want an error")
	}
	if err := key.Close(); err != nil {
		t.Fatalf("Key.Close: %v", err)
	}
	if _, err := key.Sign(rand.Reader, digest[:], crypto.SHA256); !errors.Is(err, ErrClosed) {
		t.Errorf("Sign after Close error = %v, want ErrClosed", err)
	}
	if err := key.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
}

func TestConcurrentSignersShareOneKey(t *testing.T) {
	_, _, key, _, _ := newTestKey(t)
	pub := ecdsaPublic(t, key)
	var wg sync.WaitGroup
	errs := make(chan error, concurrentSigners)
	for i := range concurrentSigners {
		wg.Go(func() {
			digest := sha256.Sum256(append(message, byte(i)))
			sig, err := key.Sign(rand.Reader, digest[:], crypto.SHA256)
			if err != nil {
				errs <- err
				return
			}
			if !ecdsa.VerifyASN1(pub, digest[:], sig) {
				errs <- errors.New("signature does not verify")
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("signer %v", err)
	}
}

func TestLockoutIsReportedPlainly(t *testing.T) {
	err := wrap("sign", tpm2.TPMRCLockout)
	if !errors.Is(err, ErrLockout) {
		t.Errorf("wrap(TPM_RC_LOCKOUT) = %v, want ErrLockout", err)
	}
	if want := "tpm: sign: TPM is in dictionary-attack lockout"; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("wrap(TPM_RC_LOCKOUT) = %q, want prefix %q", err, want)
	}
}

func BenchmarkSign(b *testing.B) {
	_, _, key, _, _ := newTestKey(b)
	digest := sha256.Sum256(message)
	for b.Loop() {
		if _, err := key.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
			b.Fatal(err)
		}
	}
}

// TestKeyLoadsAfterCrashedHolders: swtpm's port, like a bare /dev/tpm0, keeps the
// objects of a connection that dropped without flushing them (an agent killed mid-run),
// and has room for only a few. However many holders crashed, the next one loads its key.
func TestKeyLoadsAfterCrashedHolders(t *testing.T) {
	const crashes = 5 // more than the three objects a TPM must hold at least
	sw, tp, key, pub, priv := newTestKey(t)
	key.Close()
	tp.Close()
	ctx := context.Background()
	for i := range crashes + 1 {
		held, err := Open(ctx, sw.Path())
		if err != nil {
			t.Fatalf("Open after %d crashed holders: %v", i, err)
		}
		if _, err := held.LoadKey(ctx, pub, priv); err != nil {
			t.Fatalf("LoadKey after %d crashed holders: %v", i, err)
		}
		// A crash: the connection drops with the key still loaded.
		held.tr.Close()
	}
}
