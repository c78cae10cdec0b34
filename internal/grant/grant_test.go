package grant

import (
	"errors"
	"testing"
	"time"

	"github.com/umbranet/umbra/internal/pki"
)

func sample(exp time.Time) Grant {
	return Grant{Circuit: "c1", Op: OpDial, Service: "s1", ServiceName: "mavlink", Proto: "udp",
		Dialer: "op", Host: "drone1", Routers: []string{"r1"}, Expires: exp.Unix()}
}

func TestVerify(t *testing.T) {
	key, _ := pki.NewKey()
	other, _ := pki.NewKey()
	now := time.Now()
	good, _ := Sign(sample(now.Add(time.Minute)), key)
	expired, _ := Sign(sample(now.Add(-time.Second)), key)
	foreign, _ := Sign(sample(now.Add(time.Minute)), other)
	tampered := append([]byte(nil), good...)
	tampered[20] ^= 1
	cases := []struct {
		name string
		data []byte
		want error
	}{
		{"signed-grant-verifies", good, nil},
		{"expired-grant-refused", expired, ErrExpired},
		{"grant-of-another-signer-refused", foreign, ErrSignature},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			g, err := Verify(tt.data, &key.PublicKey, now)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if tt.want == nil && (g.Host != "drone1" || g.Routers[0] != "r1") {
				t.Errorf("got %+v, want the signed grant", g)
			}
		})
	}
	if _, err := Verify(tampered, &key.PublicKey, now); err == nil {
		t.Errorf("a grant with a flipped byte verified")
	}
}

// TestVerifySignatureIgnoresExpiry: a live circuit's grant still proves what it
// allowed after it expired, and only the signer's signature does.
func TestVerifySignatureIgnoresExpiry(t *testing.T) {
	key, _ := pki.NewKey()
	other, _ := pki.NewKey()
	expired, _ := Sign(sample(time.Now().Add(-time.Hour)), key)
	if g, err := VerifySignature(expired, &key.PublicKey); err != nil || g.Circuit != "c1" {
		t.Errorf("expired grant: got %+v, %v; want it verified", g, err)
	}
	foreign, _ := Sign(sample(time.Now().Add(-time.Hour)), other)
	if _, err := VerifySignature(foreign, &key.PublicKey); !errors.Is(err, ErrSignature) {
		t.Errorf("grant of another signer: got %v, want %v", err, ErrSignature)
	}
}

// FuzzVerify: nothing but the signed grant verifies, and nothing panics.
func FuzzVerify(f *testing.F) {
	key, _ := pki.NewKey()
	good, _ := Sign(sample(time.Now().Add(time.Hour)), key)
	f.Add(good)
	f.Add([]byte{0xa0})
	f.Add(good[:len(good)/2])
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := Verify(data, &key.PublicKey, time.Now())
		if err == nil && g.Circuit != "c1" {
			t.Fatalf("a forged grant verified: %+v", g)
		}
	})
}
