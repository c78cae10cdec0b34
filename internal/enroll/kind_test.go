package enroll

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/umbranet/umbra/internal/pki"
)

// TestWrongKindRefusedBeforeAnyCall: each kind's token is refused by the other kind's
// Enroll with one clear line naming the right command, before any call: the token's
// controller (here an address nothing answers at) is never reached.
func TestWrongKindRefusedBeforeAnyCall(t *testing.T) {
	key, _ := pki.NewKey()
	tests := []struct {
		name, method, want, text string
	}{
		{"a router token is refused by an identity's enrollment", MethodRouter, pki.KindIdentity, "enroll: this is a router token; use `umbra router enroll`"},
		{"an identity token is refused by a router's enrollment", MethodOTT, pki.KindRouter, "enroll: this is an identity token; use `umbra-agent enroll`"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := sampleClaims(time.Now().Add(time.Hour))
			c.Issuer = "https://192.0.2.1:1" // TEST-NET-1: a call would hang, then fail otherwise
			c.Method = tt.method
			tok, err := Sign(c, key)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_, err = Enroll(ctx, tok, tt.want, key)
			var wk *WrongKindError
			if !errors.As(err, &wk) || !errors.Is(err, ErrWrongKind) || wk.Want != tt.want {
				t.Fatalf("got %v, want a *WrongKindError for %s", err, tt.want)
			}
			if got := err.Error(); got != tt.text || strings.Contains(got, "\n") {
				t.Errorf("got %q, want %q", got, tt.text)
			}
			if ctx.Err() != nil {
				t.Errorf("got a refusal after the deadline, want one before any call")
			}
		})
	}
}

// TestCheckKind: the token's kind follows its method; the right kind passes.
func TestCheckKind(t *testing.T) {
	key, _ := pki.NewKey()
	for _, tt := range []struct{ method, kind string }{{MethodOTT, pki.KindIdentity}, {MethodRouter, pki.KindRouter}} {
		c := sampleClaims(time.Now().Add(time.Hour))
		c.Method = tt.method
		tok, _ := Sign(c, key)
		got, err := CheckKind(tok, tt.kind)
		if err != nil || got.Kind() != tt.kind {
			t.Errorf("got kind %q, %v for method %q, want %q", got.Kind(), err, tt.method, tt.kind)
		}
	}
}
