package keystore_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/umbranet/umbra/hal/keystore"
	"github.com/umbranet/umbra/hal/keystore/tpm"
	"github.com/umbranet/umbra/hal/keystore/tpm/swtpmtest"
)

var message = []byte("umbra telemetry frame")

// publicKey returns a key's *ecdsa.PublicKey.
func publicKey(t *testing.T, k crypto.Signer) *ecdsa.PublicKey {
	t.Helper()
	pub, ok := k.Public().(*ecdsa.PublicKey)
	if !ok {
		t.Fatalf("Public() is %T, want *ecdsa.PublicKey", k.Public())
	}
	return pub
}

// sameSigner checks that got has the public key wantPub and that its signatures verify
// against it.
func sameSigner(t *testing.T, got crypto.Signer, wantPub *ecdsa.PublicKey) {
	t.Helper()
	if !wantPub.Equal(got.Public()) {
		t.Fatalf("opened key's public key differs from the created one")
	}
	digest := sha256.Sum256(message)
	sig, err := got.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	if !ecdsa.VerifyASN1(wantPub, digest[:], sig) {
		t.Fatalf("signature of the opened key does not verify against the created key")
	}
}

// refJSON is the Ref as an identity file holds it.
func refJSON(t *testing.T, ref keystore.Ref) string {
	t.Helper()
	b, err := json.Marshal(ref)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestOpenFileKeySignsAsTheCreatedKey(t *testing.T) {
	key, ref, err := keystore.NewFileKey()
	if err != nil {
		t.Fatalf("NewFileKey: %v", err)
	}
	defer key.Close()
	if ref.Store != keystore.StoreFile || !strings.Contains(ref.PEM, "PRIVATE KEY") {
		t.Fatalf("file Ref = %s, want store file with the PEM key", refJSON(t, ref))
	}
	opened, err := keystore.Open(context.Background(), ref)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer opened.Close()
	sameSigner(t, opened, publicKey(t, key))
}

func TestOpenRefusesUnknownStore(t *testing.T) {
	_, err := keystore.Open(context.Background(), keystore.Ref{Store: "hsm"})
	if !errors.Is(err, keystore.ErrUnknownStore) {
		t.Errorf("Open(store hsm) error = %v, want ErrUnknownStore", err)
	}
}

func TestTPMKeyReopensFromItsRef(t *testing.T) {
	sw := swtpmtest.Start(t)
	ctx := context.Background()
	key, ref, err := keystore.NewTPMKey(ctx, sw.Path())
	if err != nil {
		t.Fatalf("NewTPMKey(%q): %v", sw.Path(), err)
	}
	want := publicKey(t, key)
	// swtpm serves one connection at a time (a kernel resource manager serves many), so
	// the created key gives its connection back before the Ref is opened.
	if err := key.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if ref.Store != keystore.StoreTPM || ref.TPM != sw.Path() || len(ref.Public) == 0 || len(ref.Private) == 0 {
		t.Fatalf("tpm Ref = %s, want store tpm, path %s and both blobs", refJSON(t, ref), sw.Path())
	}
	if j := refJSON(t, ref); strings.Contains(j, `"pem"`) || strings.Contains(j, "PRIVATE KEY") {
		t.Fatalf("tpm Ref = %s, want no private key in it", j)
	}

	// Twice, and after a TPM restart: each Key must give the connection back on Close.
	for _, step := range []string{"first-open", "second-open", "after-restart"} {
		if step == "after-restart" {
			sw.Restart()
		}
		opened, err := keystore.Open(ctx, ref)
		if err != nil {
			t.Fatalf("%s: Open: %v", step, err)
		}
		sameSigner(t, opened, want)
		if err := opened.Close(); err != nil {
			t.Fatalf("%s: Close: %v", step, err)
		}
	}
}

func TestTPMKeyIsGoneAfterTPMWipe(t *testing.T) {
	sw := swtpmtest.Start(t)
	ctx := context.Background()
	key, ref, err := keystore.NewTPMKey(ctx, sw.Path())
	if err != nil {
		t.Fatalf("NewTPMKey: %v", err)
	}
	key.Close()
	sw.Wipe()

	opened, err := keystore.Open(ctx, ref)
	if err == nil {
		opened.Close()
		t.Fatal("Open after the TPM was wiped succeeded, want an error")
	}
	if !errors.Is(err, tpm.ErrWrongTPM) {
		t.Errorf("Open after wipe: error = %v, want tpm.ErrWrongTPM", err)
	}
}

func TestTPMErrorsNameWhatIsWrong(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "tpmrm0")
	ctx := context.Background()
	tests := []struct {
		name    string
		open    func() error
		want    string
		wantErr error
	}{
		{
			name: "new-key-on-missing-device",
			open: func() error {
				_, _, err := keystore.NewTPMKey(ctx, missing)
				return err
			},
			want:    "keystore: tpm: open " + missing + ": no such device (is there a TPM 2.0 and is its kernel driver loaded?)",
			wantErr: tpm.ErrNoDevice,
		},
		{
			name: "open-on-missing-device",
			open: func() error {
				_, err := keystore.Open(ctx, keystore.Ref{Store: keystore.StoreTPM, TPM: missing, Public: []byte{1}, Private: []byte{1}})
				return err
			},
			want:    "keystore: tpm: open " + missing + ": no such device (is there a TPM 2.0 and is its kernel driver loaded?)",
			wantErr: tpm.ErrNoDevice,
		},
		{
			name: "ref-without-blobs",
			open: func() error {
				_, err := keystore.Open(ctx, keystore.Ref{Store: keystore.StoreTPM, TPM: missing})
				return err
			},
			want: "keystore: tpm key: the reference has no key blobs",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.open()
			if err == nil || err.Error() != tt.want {
				t.Errorf("error = %v, want %q", err, tt.want)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error = %v, want errors.Is %v", err, tt.wantErr)
			}
		})
	}
}
