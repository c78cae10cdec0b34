package enroll

import (
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/umbranet/umbra/internal/pki"
)

func sampleClaims(exp time.Time) Claims {
	return Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: "https://127.0.0.1:1280", Subject: "id1", ID: "jti1",
			IssuedAt: jwt.NewNumericDate(time.Now()), ExpiresAt: jwt.NewNumericDate(exp),
		},
		Method:          MethodOTT,
		RootFingerprint: strings.Repeat("ab", 32),
	}
}

func TestVerify(t *testing.T) {
	key, _ := pki.NewKey()
	other, _ := pki.NewKey()
	now := time.Now()
	good, err := Sign(sampleClaims(now.Add(time.Hour)), key)
	if err != nil {
		t.Fatal(err)
	}
	expired, _ := Sign(sampleClaims(now.Add(-time.Hour)), key)
	foreign, _ := Sign(sampleClaims(now.Add(time.Hour)), other)
	noMethod := sampleClaims(now.Add(time.Hour))
	noMethod.Method = "magic"
	badMethod, _ := Sign(noMethod, key)
	cases := []struct {
		name, token, wantErr string
	}{
		{"valid-token-verifies", good, ""},
		{"expired-token-refused", expired, "expired"},
		{"token-of-another-key-refused", foreign, "signature invalid"},
		{"unknown-method-refused", badMethod, "unknown enrollment method"},
		{"garbage-refused", "garbage", "invalid token"},
		{"oversized-refused", strings.Repeat("a", MaxTokenSize+1), "too large"},
		{"alg-none-refused", "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + strings.Split(good, ".")[1] + ".", `alg "none" refused`},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Verify(tt.token, &key.PublicKey, now)
			if tt.wantErr == "" {
				if err != nil || c.Subject != "id1" {
					t.Fatalf("got %v (sub %q), want valid id1", err, c.Subject)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v, want an error with %q", err, tt.wantErr)
			}
		})
	}
}

// FuzzPeek feeds arbitrary strings to the unverified token reader: it must never panic,
// and whatever it accepts must carry the claims enrollment relies on.
func FuzzPeek(f *testing.F) {
	key, _ := pki.NewKey()
	tok, _ := Sign(sampleClaims(time.Now().Add(time.Hour)), key)
	f.Add(tok)
	f.Add("")
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Peek(s)
		if err == nil && (c.Issuer == "" || c.Subject == "" || c.ID == "" || len(c.RootFingerprint) != 64) {
			t.Fatalf("Peek accepted a token without its required claims: %+v", c)
		}
	})
}

// FuzzVerify: no string but one signed by the key verifies.
func FuzzVerify(f *testing.F) {
	key, _ := pki.NewKey()
	tok, _ := Sign(sampleClaims(time.Now().Add(time.Hour)), key)
	f.Add(tok)
	f.Add(tok[:len(tok)-2])
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Verify(s, &key.PublicKey, time.Now())
		if err == nil && s != tok && c.Subject != "id1" {
			t.Fatalf("a forged token verified: %q", s)
		}
	})
}
