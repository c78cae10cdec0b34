package controller

import (
	"testing"
	"time"

	"github.com/umbranet/umbra/internal/grant"
	"github.com/umbranet/umbra/internal/pki"
	"github.com/umbranet/umbra/internal/wire"
)

// TestCarriedGrantChecks: a router may register again only a circuit this controller
// granted, on a path that starts at that router; a grant that expired still counts, since
// it bounded the circuit's setup, not its life.
func TestCarriedGrantChecks(t *testing.T) {
	tc := startController(t)
	other, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	g := grant.Grant{Circuit: "c1", Op: grant.OpDial, Service: "s1", ServiceName: "echo", Proto: "tcp",
		Dialer: "op", Host: "drone", Routers: []string{"r1", "r2"}, Expires: time.Now().Add(-time.Hour).Unix()}
	own, err := grant.Sign(g, tc.CA().SignerKey())
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := grant.Sign(g, other)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		router  string
		grant   []byte
		wantErr bool
	}{
		{"expired-grant-of-this-controller-from-the-first-router-checks", "r1", own, false},
		{"grant-of-another-signer-refused", "r1", foreign, true},
		{"router-not-first-on-the-path-refused", "r2", own, true},
		{"garbage-refused", "r1", []byte{1, 2, 3}, true},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tc.carried(tt.router, wire.Carry{Grant: tt.grant})
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if !tt.wantErr && got.Circuit != "c1" {
				t.Errorf("circuit = %q, want c1", got.Circuit)
			}
		})
	}
}
