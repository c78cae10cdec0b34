package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/umbranet/umbra/hal/keystore"
	"github.com/umbranet/umbra/internal/enroll"
	"github.com/umbranet/umbra/internal/identity"
)

// testToken is a well-formed token for a controller that does not exist: enough to get
// past the local checks that run before a key is made.
func testToken(t *testing.T) string {
	t.Helper()
	return testTokenOf(t, enroll.MethodOTT)
}

// testTokenOf is testToken with the enrollment method (the token's kind) given.
func testTokenOf(t *testing.T, method string) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := enroll.Sign(enroll.Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			ID: "jti-1", Subject: "id-1", Issuer: "https://127.0.0.1:1",
			ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour)),
		},
		Method:          method,
		RootFingerprint: strings.Repeat("ab", 32),
	}, k)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// existingIdentity writes an identity file whose key is in atecc608 slot 0 and returns
// its path and bytes.
func existingIdentity(t *testing.T) (string, []byte) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "id.json")
	f := &identity.File{
		Name: "drone1", ID: "id-0", Controller: "https://127.0.0.1:1", Cert: "cert", CA: "ca",
		Key: keystore.Ref{Store: keystore.StoreATECC608, I2CBus: "I2C1", I2CAddr: keystore.DefaultATECC608Addr, Slot: 0},
	}
	if err := f.Save(out); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return out, data
}

func TestFailedEnrollmentWritesNothing(t *testing.T) {
	missingTPM := filepath.Join(t.TempDir(), "tpmrm0")
	tests := []struct {
		name    string
		token   string
		ks      KeyStore
		want    string // a substring of the error
		wantErr error
	}{
		{"malformed-token", "not-a-token", KeyStore{}, "enroll: malformed token", nil},
		{"unknown-store", testToken(t), KeyStore{Store: "hsm"}, `enroll: keystore: unknown key store "hsm"`, keystore.ErrUnknownStore},
		{"missing-tpm", testToken(t), KeyStore{Store: keystore.StoreTPM, TPM: missingTPM}, "enroll: keystore: tpm: open " + missingTPM + ": no such device", nil},
		{"slot-of-the-existing-identity", testToken(t), KeyStore{Store: keystore.StoreATECC608, Slot: 0}, "already uses the key in atecc608 slot 0", nil},
		{"a router token is refused before a key is made", testTokenOf(t, enroll.MethodRouter), KeyStore{Store: keystore.StoreTPM, TPM: missingTPM},
			"enroll: this is a router token; use `umbra router enroll`", enroll.ErrWrongKind},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, before := existingIdentity(t)
			_, err := Enroll(context.Background(), tt.token, EnrollOptions{Path: out, KeyStore: tt.ks})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Enroll error = %v, want one containing %q", err, tt.want)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("Enroll error = %v, want errors.Is %v", err, tt.wantErr)
			}
			if after, _ := os.ReadFile(out); string(after) != string(before) {
				t.Errorf("a failed enrollment changed the existing identity file")
			}
			if ents, _ := os.ReadDir(filepath.Dir(out)); len(ents) != 1 {
				t.Errorf("%d files beside the identity after a failed enrollment, want just it", len(ents))
			}
		})
	}
}
